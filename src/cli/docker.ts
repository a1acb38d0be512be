// The Docker client, loaded only by the commands that talk to Docker: `airlock proxy` and
// `airlock exec` never do, and loading dockerode (with its ssh and tar dependencies) would cost
// them about 20 MiB of RSS for nothing.
import type Docker from 'dockerode';
import { UsageError } from './config.js';

/**
 * The engine: `--engine` (a socket path, unix://PATH or tcp://HOST:PORT), else DOCKER_HOST, else
 * the default socket. A rootless engine is reached the same way, e.g. Podman's Docker-compatible
 * socket ($XDG_RUNTIME_DIR/podman/podman.sock, from `systemctl --user start podman.socket`).
 */
export async function dockerClient(engine?: string): Promise<Docker> {
  const { default: DockerClass } = await import('dockerode');
  const where = engine ?? process.env.DOCKER_HOST;
  if (!where) return new DockerClass();
  if (where.startsWith('/')) return new DockerClass({ socketPath: where });
  if (where.startsWith('unix://')) return new DockerClass({ socketPath: where.slice('unix://'.length) });
  const url = /^tcp:\/\/([^:/]+):(\d+)\/?$/.exec(where);
  if (url) return new DockerClass({ host: url[1], port: Number(url[2]), protocol: 'http' });
  throw new UsageError(`engine ${JSON.stringify(where)}: expected a socket path, unix:///path/to.sock or tcp://host:port`);
}
