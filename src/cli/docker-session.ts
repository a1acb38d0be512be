// What another launcher needs to start containers in a Docker session of the daemon (`airlock
// session create --docker`): the network, an env file, the CA file, a `docker run` line and a
// docker-compose snippet.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { SessionInfo } from '../sessions/admin.js';
import { CA_PATH_IN_CONTAINER, clientEnv, CONTAINER_NO_PROXY } from '../sessions/client-env.js';
import { DEFAULT_LIMITS } from '../launcher/run.js';
import { sizeFlag } from '../policy/index.js';
import { UsageError } from './config.js';

export interface DockerSessionFiles {
  readonly session: string;
  readonly network: string;
  readonly gateway: string;
  readonly env_file: string;
  readonly ca_file: string;
  readonly compose_file: string;
  /** argv of a `docker run` for `image` (the command goes after it). */
  readonly docker_run: readonly string[];
  readonly compose: string;
}

/** The gateway address from the session's proxy URL (its listener is on the network's gateway). */
function gatewayOf(info: SessionInfo): string {
  return new URL(info.proxy_url).hostname.replace(/^\[|\]$/g, '');
}

/** Env file lines (docker's --env-file and compose's env_file: NAME=VALUE, taken literally). */
export function envFileFor(info: SessionInfo): string {
  const env = clientEnv({ proxyUrl: info.proxy_url, noProxy: CONTAINER_NO_PROXY, bundlePath: CA_PATH_IN_CONTAINER, placeholders: info.env, sessionId: info.id });
  for (const [name, value] of env) {
    // Neither format can carry a line break in a value.
    if (/[\r\n]/.test(value)) throw new UsageError(`session variable ${name} holds a line break, which an env file cannot carry`);
  }
  return env.map(([name, value]) => `${name}=${value}`).join('\n') + '\n';
}

/** Writes the env file, CA file and compose file into `dir`; returns where, and the lines to use them. */
export function writeDockerSessionFiles(info: SessionInfo, dir: string, image: string): DockerSessionFiles {
  const network = info.docker_network;
  if (!network || !info.bundle_pem) throw new UsageError(`session ${info.id} has no Docker network (is the airlock proxy older than this client?)`);
  const gateway = gatewayOf(info);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const envFile = join(dir, 'session.env');
  const caFile = join(dir, 'ca.pem');
  const composeFile = join(dir, 'compose.yaml');
  // The env file holds the session's proxy credential (no real secret): owner-only all the same.
  writeFileSync(envFile, envFileFor(info), { mode: 0o600 });
  writeFileSync(caFile, info.bundle_pem, { mode: 0o644 });
  const memory = sizeFlag(DEFAULT_LIMITS.memoryBytes);
  // DNS only to the gateway, where the firewall drops it (see session-network.ts); the limits
  // are `airlock run`'s defaults.
  const dockerRun = [
    'docker', 'run', '--rm', '--network', network, '--env-file', envFile, '-v', `${caFile}:${CA_PATH_IN_CONTAINER}:ro`,
    '--dns', gateway, '--dns-opt', 'timeout:1', '--dns-opt', 'attempts:1', '--add-host', `host.docker.internal:${gateway}`,
    '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--pids-limit', String(DEFAULT_LIMITS.pids),
    '--memory', memory, '--memory-swap', memory, image,
  ];
  // Version 2.4: the newest format docker-compose 1.x reads with dns_opt, pids_limit and mem_limit.
  const compose = stringify({
    version: '2.4',
    services: {
      agent: {
        image,
        networks: ['airlock'],
        env_file: [envFile],
        volumes: [`${caFile}:${CA_PATH_IN_CONTAINER}:ro`],
        dns: [gateway],
        dns_opt: ['timeout:1', 'attempts:1'],
        extra_hosts: [`host.docker.internal:${gateway}`],
        cap_drop: ['ALL'],
        security_opt: ['no-new-privileges'],
        pids_limit: DEFAULT_LIMITS.pids,
        mem_limit: memory,
        memswap_limit: memory,
      },
    },
    networks: { airlock: { external: true, name: network } },
  });
  writeFileSync(composeFile, compose, { mode: 0o644 });
  return { session: info.id, network, gateway, env_file: envFile, ca_file: caFile, compose_file: composeFile, docker_run: dockerRun, compose };
}

/** Single-quotes a word for POSIX shells unless it needs none. */
function word(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

export function describeDockerSession(info: SessionInfo, files: DockerSessionFiles): string {
  return [
    `# airlock session ${info.id} (policy ${info.policy}): containers on network ${files.network} reach nothing but its proxy`,
    `network:  ${files.network}`,
    `env file: ${files.env_file}`,
    `CA file:  ${files.ca_file} (mount at ${CA_PATH_IN_CONTAINER})`,
    `audit:    ${info.audit}`,
    '',
    '# docker run (add your command after the image):',
    files.docker_run.map(word).join(' '),
    '',
    `# docker-compose (also in ${files.compose_file}):`,
    files.compose.trimEnd(),
    '',
    `# the session ends with \`airlock session rm ${info.id}\`, or once its last container on ${files.network} has exited`,
    '',
  ].join('\n');
}
