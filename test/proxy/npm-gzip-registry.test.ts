// The real npm client installing through Airlock, with an npm token bound to the registry, from a
// registry that sends everything with `Content-Encoding: gzip` (tarballs included, on top of the
// .tgz's own gzip), as Verdaccio does. The registry answers 401 without the real token; the
// session only has the placeholder, in an .npmrc. The install works, and neither what npm printed,
// its cache nor the installed files hold the real token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type http from 'node:http';
import { createGzip } from 'node:zlib';
import { createTestPki, rmTmp, runProcess, startAirlock, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory } from '../../src/credentials/sources.js';

const SECRET = `npm_${randomBytes(18).toString('base64url')}`;
const PLACEHOLDER = 'npm_airlock-npm-gzipregistry0000000000';
const REGISTRY = 'registry.npmjs.org';

const POLICY = `
version: 1
name: gzip-registry
allow:
  - host: ${REGISTRY}
    methods: [GET, HEAD]
credentials:
  - preset: npm
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_NPM_TOKEN }
`;

interface Pkg {
  readonly name: string;
  readonly packument: string;
  readonly tarball: Buffer;
}

/** Packs a package with npm pack; `big` adds a file large enough to span many chunks. */
async function pack(dir: string, name: string, deps: Record<string, string>, exported: string): Promise<Pkg> {
  const src = join(dir, `src-${name}`);
  mkdirSync(src);
  writeFileSync(join(src, 'package.json'), JSON.stringify({ name, version: '1.0.0', main: 'index.js', license: 'MIT', dependencies: deps }));
  writeFileSync(join(src, 'index.js'), `module.exports = ${exported};\n`);
  const lines = Array.from({ length: 8000 }, (_, i) => `exports.f${i} = (a) => a + ${i}; // ${randomBytes(8).toString('hex')}`);
  writeFileSync(join(src, 'big.js'), lines.join('\n') + '\n');
  const r = await runProcess('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: src, env: { ...process.env, npm_config_offline: 'true' }, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`npm pack failed (${r.code}): ${r.stderr}`);
  const tarball = readFileSync(join(dir, r.stdout.trim().split('\n').pop()!));
  const packument = JSON.stringify({
    _id: name,
    name,
    'dist-tags': { latest: '1.0.0' },
    versions: {
      '1.0.0': {
        name,
        version: '1.0.0',
        main: 'index.js',
        dependencies: deps,
        dist: {
          tarball: `https://${REGISTRY}/${name}/-/${name}-1.0.0.tgz`,
          shasum: createHash('sha1').update(tarball).digest('hex'),
          integrity: `sha512-${createHash('sha512').update(tarball).digest('base64')}`,
        },
      },
    },
    time: { '1.0.0': '2024-01-01T00:00:00.000Z' },
  });
  return { name, packument, tarball };
}

/** Every file under `dir`, as text, for a leak search. */
function everything(dir: string): string {
  let out = '';
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    out += statSync(path).isDirectory() ? everything(path) : readFileSync(path, 'latin1');
  }
  return out;
}

describe('npm install through a credential-bound registry that gzip-encodes its tarballs', () => {
  let pki: TestPki;
  let upstream: TestUpstream;
  let airlock: AirlockHandle;
  let work: string;
  const pkgs = new Map<string, Pkg>();
  const seen: { path: string; auth: string; encoding: string }[] = [];

  beforeAll(async () => {
    work = tmpDir('airlock-npm-gzip-');
    pki = await createTestPki();
    for (const p of await Promise.all([pack(work, 'gz-lib', {}, '"lib"'), pack(work, 'gz-app', { 'gz-lib': '^1.0.0' }, 'require("gz-lib") + " and app"')])) pkgs.set(p.name, p);
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      req.resume();
      const path = new URL(req.url ?? '/', 'https://x').pathname;
      const auth = String(req.headers.authorization ?? '');
      if (auth !== `Bearer ${SECRET}`) {
        seen.push({ path, auth, encoding: '' });
        res.writeHead(401, { 'Content-Type': 'application/json' });
        res.end('{"error":"unauthorized"}');
        return;
      }
      const name = path.split('/')[1] ?? '';
      const pkg = pkgs.get(decodeURIComponent(name));
      const body = !pkg ? null : path === `/${name}` ? Buffer.from(pkg.packument) : path === `/${name}/-/${name}-1.0.0.tgz` ? pkg.tarball : null;
      if (!body) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end('{"error":"not found"}');
        return;
      }
      // What Verdaccio's compression middleware does: gzip whatever the client accepts it for,
      // streamed (chunked, no length), the tarball's own gzip notwithstanding.
      const accepts = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
      seen.push({ path, auth: 'real', encoding: accepts ? 'gzip' : '' });
      const type = path.endsWith('.tgz') ? 'application/octet-stream' : 'application/json';
      if (!accepts) {
        res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length });
        res.end(body);
        return;
      }
      res.writeHead(200, { 'Content-Type': type, 'Content-Encoding': 'gzip', Vary: 'Accept-Encoding' });
      const gz = createGzip();
      gz.pipe(res);
      for (let i = 0; i < body.length; i += 8192) gz.write(body.subarray(i, i + 8192));
      gz.end();
    };
    upstream = await startHttpsUpstream({ pki, names: [REGISTRY], handler });
    airlock = await startAirlock({
      policy: POLICY,
      resolve: { [`${REGISTRY}:443`]: upstream.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_NPM_TOKEN: SECRET }),
    });
  }, 180_000);

  afterAll(async () => {
    await airlock?.close();
    await upstream?.close();
    rmTmp(work, pki?.dir);
  });

  it('installs a package and its dependency, the tarballs gzip-encoded, with the token swapped in', async () => {
    const project = join(work, 'project');
    const cache = join(work, 'npm-cache');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), '{"name":"consumer","version":"1.0.0"}');
    writeFileSync(join(project, '.npmrc'), `registry=https://${REGISTRY}/\n//${REGISTRY}/:_authToken=${PLACEHOLDER}\n`);
    const r = await runProcess('npm', ['install', '--no-audit', '--no-fund', '--no-update-notifier', '--cache', cache, 'gz-app'], {
      cwd: project,
      env: { PATH: process.env.PATH, HOME: work, npm_config_https_proxy: airlock.proxyUrl, npm_config_cafile: airlock.bundlePath },
      timeoutMs: 120_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const check = await runProcess('node', ['-e', 'process.stdout.write(require("gz-app"))'], { cwd: project, env: { PATH: process.env.PATH } });
    expect(check.stdout).toBe('lib and app');
    expect(readFileSync(join(project, 'node_modules/gz-app/big.js')).length).toBeGreaterThan(100_000);
    // Every request carried the real token, and the tarballs came gzip-encoded.
    expect(seen.filter((s) => s.auth !== 'real')).toEqual([]);
    expect(seen.filter((s) => s.path.endsWith('.tgz')).map((s) => s.encoding)).toEqual(['gzip', 'gzip']);
    for (const tgz of ['/gz-app/-/gz-app-1.0.0.tgz', '/gz-lib/-/gz-lib-1.0.0.tgz']) {
      const line = await airlock.waitForAudit((l) => l.path === tgz);
      expect(line).toMatchObject({ action: 'allow', status: 200 });
    }
    expect(secretLeaks(r.stdout + r.stderr, SECRET)).toEqual([]);
    expect(secretLeaks(everything(cache) + everything(project), SECRET)).toEqual([]);
    expect(secretLeaks(readFileSync(join(airlock.session.dir, 'audit.jsonl'), 'latin1'), SECRET)).toEqual([]);
  }, 150_000);
});
