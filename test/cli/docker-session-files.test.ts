// The files `airlock session create --docker` writes for another launcher, from a daemon's answer.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { envFileFor, writeDockerSessionFiles } from '../../src/cli/docker-session.js';
import type { SessionInfo } from '../../src/sessions/admin.js';
import { CA_DIR_ENV_VARS, CA_ENV_VARS, PROXY_ENV_VARS } from '../../src/sessions/client-env.js';
import { rmTmp, tmpDir } from '../helpers/servers.js';

const dir = tmpDir('airlock-docker-files-');
afterAll(() => rmTmp(dir));

const info: SessionInfo = {
  id: 's-0123456789ab',
  policy: 'p',
  policy_version: 'x',
  proxy_url: 'http://s-0123456789ab:tok@172.30.0.1:40123',
  proxy_port: 40123,
  docker_network: 'airlock-s-0123456789ab',
  bundle_pem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  bundle: '/state/sessions/s-0123456789ab/ca.pem',
  audit: '/state/sessions/s-0123456789ab/audit.jsonl',
  created: new Date(0).toISOString(),
  env: { GH_TOKEN: 'placeholder-gh' },
};

describe('session create --docker files', () => {
  it('the env file points every proxy and CA variable at the session, with its placeholders', () => {
    const files = writeDockerSessionFiles(info, join(dir, 'out'), 'img:1');
    const env = Object.fromEntries(readFileSync(files.env_file, 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    for (const name of PROXY_ENV_VARS) expect(env[name], name).toBe(info.proxy_url);
    for (const name of CA_ENV_VARS) expect(env[name], name).toBe('/etc/airlock/ca.pem');
    for (const name of CA_DIR_ENV_VARS) expect(env[name], name).toBe('/etc/airlock');
    expect(env.GH_TOKEN).toBe('placeholder-gh');
    expect(env.AIRLOCK_SESSION).toBe(info.id);
    expect(statSync(files.env_file).mode & 0o777).toBe(0o600);
    expect(readFileSync(files.ca_file, 'utf8')).toBe(info.bundle_pem);
    expect(files.gateway).toBe('172.30.0.1');
    expect(files.docker_run.join(' ')).toContain(`--network ${info.docker_network} --env-file ${files.env_file} -v ${files.ca_file}:/etc/airlock/ca.pem:ro --dns 172.30.0.1`);
    expect(files.docker_run.at(-1)).toBe('img:1');
    const compose = parse(readFileSync(files.compose_file, 'utf8'));
    expect(compose.networks).toEqual({ airlock: { external: true, name: info.docker_network } });
    expect(compose.services.agent).toMatchObject({ image: 'img:1', networks: ['airlock'], dns: ['172.30.0.1'], cap_drop: ['ALL'], env_file: [files.env_file] });
  });

  it('refuses a value an env file cannot carry, and an answer without a network', () => {
    expect(() => envFileFor({ ...info, env: { GH_TOKEN: 'a\nB=c' } })).toThrow(/GH_TOKEN holds a line break/);
    expect(() => writeDockerSessionFiles({ ...info, docker_network: undefined }, join(dir, 'none'), 'img')).toThrow(/has no Docker network/);
  });
});
