// `airlock run -e NAME=VALUE` never carries a secret into a container: neither under a secret
// source's name nor as the value (or a part of it) of any other variable. Checked against a real
// session lease of the embedded proxy with env, file and command secrets; no Docker needed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { parsePolicy } from '../../src/policy/index.js';
import type { Policy } from '../../src/policy/index.js';
import { ProxyRuntime } from '../../src/sessions/runtime.js';
import { newSessionId } from '../../src/sessions/session.js';
import { EmbeddedProvider } from '../../src/launcher/provider.js';
import { checkExtraEnv, LaunchError, parseExtraEnv } from '../../src/launcher/run.js';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { rmTmp, tmpDir } from '../helpers/servers.js';

const GH_SECRET = `ghp_realGh${randomBytes(12).toString('hex')}`;
const FILE_SECRET = `file-real-${randomBytes(12).toString('hex')}`;
const CMD_SECRET = `cmd+real/${randomBytes(12).toString('hex')}=`;
const SECRETS = [GH_SECRET, FILE_SECRET, CMD_SECRET];

let dir: string;
let runtime: ProxyRuntime;
let policy: Policy;

beforeAll(() => {
  dir = tmpDir();
  writeFileSync(join(dir, 'file-secret'), FILE_SECRET + '\n');
  writeFileSync(join(dir, 'cmd-secret'), CMD_SECRET);
  policy = parsePolicy(
    [
      'version: 1',
      'name: run-env',
      'allow: []',
      'credentials:',
      '  - preset: github',
      '    secret: { env: AIRLOCK_GITHUB_TOKEN }',
      '  - name: filecred',
      '    env: [FILE_TOKEN]',
      '    hosts: [api.github.com]',
      `    secret: { file: ${join(dir, 'file-secret')} }`,
      '  - name: cmdcred',
      '    env: [CMD_TOKEN]',
      '    hosts: [api.github.com]',
      `    secret: { command: [cat, ${join(dir, 'cmd-secret')}] }`,
      '',
    ].join('\n'),
    'run-env.yaml',
  );
  runtime = new ProxyRuntime({
    stateDir: join(dir, 'state'),
    trustRoots: [],
    upstreamCa: [],
    resolve: new Map(),
    log: pino({ level: 'silent' }),
    credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: GH_SECRET }),
  });
});

afterAll(async () => {
  await runtime?.close();
  rmTmp(dir);
});

/** The error `-e entry` gets, or null when it is accepted: the steps of runSession, minus Docker. */
async function refusal(entry: string): Promise<string | null> {
  const lease = await new EmbeddedProvider(runtime).open(policy, '127.0.0.1', newSessionId(), parseExtraEnv([entry]));
  try {
    checkExtraEnv([entry], lease);
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(LaunchError);
    return (err as Error).message;
  } finally {
    await lease.release();
  }
}

function expectNoSecret(message: string | null): void {
  for (const secret of SECRETS) {
    for (const form of [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')]) expect(message ?? '').not.toContain(form);
  }
}

describe('airlock run -e', () => {
  it.each([
    ['another variable with the value of an env secret', `GITHUB_PAT=${GH_SECRET}`, 'GITHUB_PAT'],
    ['a placeholder variable given the real value', `GH_TOKEN=${GH_SECRET}`, 'GH_TOKEN'],
    ['a URL with the secret in it', `REPO_URL=https://x-access-token:${GH_SECRET}@github.com/o/r.git`, 'REPO_URL'],
    ['a file secret', `MY_FILE_TOKEN=${FILE_SECRET}`, 'MY_FILE_TOKEN'],
    ['a command secret', `MY_CMD_TOKEN=${CMD_SECRET}`, 'MY_CMD_TOKEN'],
    ['a command secret percent-encoded', `Q=key=${encodeURIComponent(CMD_SECRET)}`, 'Q'],
    ['Basic credentials holding a secret', `AUTH=Basic ${Buffer.from(`x:${FILE_SECRET}`).toString('base64')}`, 'AUTH'],
  ])('refuses %s, naming the variable and not the value', async (_what, entry, name) => {
    const message = await refusal(entry);
    expect(message).not.toBeNull();
    expect(message).toContain(`-e ${name}:`);
    expect(message).toMatch(/secret/);
    expectNoSecret(message);
  });

  it('still refuses a secret source variable, whatever its value', async () => {
    expect(await refusal('AIRLOCK_GITHUB_TOKEN=anything')).toContain('secret source');
  });

  it('accepts ordinary values, and ones that merely resemble a secret', async () => {
    expect(await refusal('EXTRA_VAR=extra value')).toBeNull();
    expect(await refusal(`PREFIX=${GH_SECRET.slice(0, -1)}`)).toBeNull();
  });

  it('-e NAME without a value is refused: nothing is taken from the host environment', () => {
    expect(() => parseExtraEnv(['AIRLOCK_GITHUB_TOKEN'])).toThrow(LaunchError);
    expect(() => parseExtraEnv(['OK=1', 'GITHUB_PAT'])).toThrow(/-e number 2: expected NAME=VALUE/);
  });

  it('a bare entry is refused without echoing it: it may be a value', () => {
    let message = '';
    try {
      parseExtraEnv([GH_SECRET]);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/expected NAME=VALUE/);
    expectNoSecret(message);
  });

  it('a malformed entry is refused without echoing its value', () => {
    let message = '';
    try {
      parseExtraEnv([`GITHUB-PAT=${GH_SECRET}`]);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('GITHUB-PAT');
    expectNoSecret(message);
  });
});
