// `airlock image build` and `airlock doctor`: the agent image and the checks that an image can host
// a session. This file reads the context and the build CA; src/launcher/image.ts talks to Docker.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dockerClient } from './docker.js';
import type { Command } from 'commander';
import { BUILD_CA_NAME, buildAgentImage, buildCaProblem, formatCheck, runDoctor } from '../launcher/image.js';
import type { TarFile } from '../launcher/image.js';
import { pingDocker } from '../launcher/run.js';
import { DOCTOR_PROFILES, doctorProfile } from '../launcher/doctor-profiles.js';
import { DEFAULT_RELAY_IMAGE, describeNetworkModes } from '../launcher/relay.js';
import { collect, UsageError } from './config.js';

/** images/agent in this package (dist/cli/ and src/cli/ are both two levels below the root). */
export const AGENT_CONTEXT = fileURLToPath(new URL('../../images/agent', import.meta.url));
export const DEFAULT_TAG = 'airlock-agent:latest';
/** images/relay: the socat relay of the default network mode (src/launcher/relay.ts). */
export const RELAY_CONTEXT = fileURLToPath(new URL('../../images/relay', import.meta.url));

function readContext(dir: string): TarFile[] {
  const files: TarFile[] = [];
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) {
        const name = relative(dir, path).split('\\').join('/');
        // A build CA left in the folder is never sent: only --build-ca puts one in the context.
        if (name === BUILD_CA_NAME) continue;
        files.push({ name, content: readFileSync(path), mode: statSync(path).mode & 0o777 });
      }
    }
  };
  try {
    walk(dir);
  } catch (err) {
    throw new UsageError(`cannot read the image context ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return files;
}

function readBuildCa(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --build-ca ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const problem = buildCaProblem(text);
  if (problem) throw new UsageError(`--build-ca ${file} ${problem}`);
  return text;
}

function parseBuildArgs(entries: readonly string[]): Record<string, string> {
  const args: Record<string, string> = {};
  for (const entry of entries) {
    const cut = entry.indexOf('=');
    if (cut <= 0) throw new UsageError(`--build-arg ${JSON.stringify(entry)}: expected NAME=VALUE`);
    args[entry.slice(0, cut)] = entry.slice(cut + 1);
  }
  return args;
}

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('agent container images');
  image
    .command('build')
    .description('build the Airlock agent image (Debian, tini, git, curl, python3, Node.js, Claude Code) and the session relay image (socat)')
    .option('--tag <image>', 'name:tag of the agent image', DEFAULT_TAG)
    .option('--relay-tag <image>', 'name:tag of the relay image', DEFAULT_RELAY_IMAGE)
    .option('--only <agent|relay>', 'build only one of the two')
    .option('--engine <socket>', 'Docker-compatible engine socket (default: DOCKER_HOST, then /var/run/docker.sock)')
    .option('--build-ca <file>', "PEM CA npm must trust during the build (a TLS-inspecting network's); it stays out of the image")
    .option('--build-arg <NAME=VALUE>', 'Dockerfile build argument (repeatable), e.g. AGENT_CLI_PACKAGES="@anthropic-ai/claude-code @openai/codex"', collect, [])
    .option('--no-cache', 'do not reuse cached layers')
    .action(async (opts: { tag: string; relayTag: string; only?: string; engine?: string; buildCa?: string; buildArg: string[]; cache: boolean }) => {
      if (opts.only !== undefined && opts.only !== 'agent' && opts.only !== 'relay') throw new UsageError(`--only ${opts.only}: expected agent or relay`);
      const files = readContext(AGENT_CONTEXT);
      const buildCaPem = opts.buildCa ? readBuildCa(opts.buildCa) : undefined;
      const buildArgs = parseBuildArgs(opts.buildArg);
      const docker = await dockerClient(opts.engine);
      await pingDocker(docker);
      // The relay first: it is small, and without it the default network mode cannot run.
      if (opts.only !== 'agent') {
        const started = Date.now();
        process.stderr.write(`airlock: building ${opts.relayTag} from ${RELAY_CONTEXT}\n`);
        const relayArgs: Record<string, string> = buildArgs.BASE_IMAGE ? { BASE_IMAGE: buildArgs.BASE_IMAGE } : {};
        const relay = await buildAgentImage(docker, {
          tag: opts.relayTag,
          files: readContext(RELAY_CONTEXT),
          noCache: !opts.cache,
          buildArgs: relayArgs,
          onOutput: (text) => process.stdout.write(text),
        });
        process.stderr.write(`airlock: built ${relay.tag} (${relay.id}) in ${Math.round((Date.now() - started) / 1000)} s\n`);
      }
      if (opts.only === 'relay') return;
      const started = Date.now();
      process.stderr.write(`airlock: building ${opts.tag} from ${AGENT_CONTEXT}${buildCaPem ? ` (npm trusts ${opts.buildCa} during the build)` : ''}\n`);
      const result = await buildAgentImage(docker, {
        tag: opts.tag,
        files,
        buildCaPem,
        noCache: !opts.cache,
        buildArgs,
        onOutput: (text) => process.stdout.write(text),
      });
      process.stderr.write(`airlock: built ${result.tag} (${result.id}) in ${Math.round((Date.now() - started) / 1000)} s\n`);
    });

  program
    .command('doctor')
    .description('check that an image can host an Airlock session (runs a locked-down throwaway container)')
    .option('--image <image>', 'image to check', DEFAULT_TAG)
    .option('--user <uid:gid>', 'uid:gid the checks run as (an arbitrary non-root one, like a session)', '4242:4242')
    .option('--relay-image <image>', 'relay image `airlock run` would use', DEFAULT_RELAY_IMAGE)
    .option('--engine <socket>', 'Docker-compatible engine socket (default: DOCKER_HOST, then /var/run/docker.sock)')
    .option('--for <guide>', `also check the requirements of another launcher's image guide: ${Object.keys(DOCTOR_PROFILES).join(', ')}`)
    .action(async (opts: { image: string; user: string; relayImage: string; engine?: string; for?: string }) => {
      if (!/^\d+:\d+$/.test(opts.user) || opts.user.startsWith('0:')) {
        throw new UsageError(`--user ${JSON.stringify(opts.user)}: expected a non-root UID:GID, e.g. 4242:4242`);
      }
      const profile = opts.for === undefined ? undefined : doctorProfile(opts.for);
      if (profile && !profile.ok) throw new UsageError(`--for ${opts.for}: ${profile.problem}`);
      const docker = await dockerClient(opts.engine);
      await pingDocker(docker);
      const modes = await describeNetworkModes(docker, { relayImage: opts.relayImage, launcherUid: process.getuid?.() ?? 0 });
      for (const line of modes.lines) process.stdout.write(line + '\n');
      process.stdout.write(`airlock doctor: ${opts.image} as uid ${opts.user}, all capabilities dropped, no-new-privileges, no network${profile ? `; and ${profile.value.name}'s image guide` : ''}\n`);
      const checks = await runDoctor(docker, { image: opts.image, user: opts.user, profile: profile?.value });
      for (const check of checks) process.stdout.write(formatCheck(check) + '\n');
      const failed = checks.filter((c) => !c.ok).length;
      process.stdout.write(failed === 0 ? `all ${checks.length} checks passed\n` : `${failed} of ${checks.length} checks failed\n`);
      // The image can be fine while the default mode cannot run: said last, so it is not missed.
      if (!modes.ok) process.stdout.write(`${modes.lines[0]}\n`);
      process.exitCode = failed === 0 ? 0 : 1;
    });
}
