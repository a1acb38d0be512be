// The Docker client, loaded only by the commands that talk to Docker: `airlock proxy` and
// `airlock exec` never do, and loading dockerode (with its ssh and tar dependencies) would cost
// them about 20 MiB of RSS for nothing.
import type Docker from 'dockerode';

export async function dockerClient(): Promise<Docker> {
  const { default: DockerClass } = await import('dockerode');
  return new DockerClass();
}
