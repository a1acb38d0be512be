// Local stand-ins of package registries, each serving one tiny package of its own making: npm
// (packument + tarball), a PyPI simple index (one wheel) and a Go module proxy (one module). They
// are request handlers for startHttpsUpstream; routeByHost puts several behind one server, so one
// HTTPS server on 127.0.0.1 answers as registry.npmjs.org, pypi.org and proxy.golang.org (mapped
// there by the proxy's --resolve). Artifacts are built on this machine (npm pack, python3 zipfile).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { join } from 'node:path';
import { runProcess } from './servers.js';
import type { UpstreamHandler } from './servers.js';

function send(res: http.ServerResponse, status: number, type: string, body: Buffer | string): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function notFound(res: http.ServerResponse): void {
  send(res, 404, 'text/plain', 'not found\n');
}

const pathOf = (req: http.IncomingMessage) => new URL(req.url ?? '/', 'http://x').pathname;

/** One handler per Host (port ignored); other hosts get 404. */
export function routeByHost(routes: Readonly<Record<string, UpstreamHandler>>): UpstreamHandler {
  return (req, res) => {
    const host = String(req.headers.host ?? '').replace(/:\d+$/, '');
    const handler = routes[host];
    if (handler) handler(req, res);
    else {
      req.resume();
      notFound(res);
    }
  };
}

export interface NpmStandIn {
  readonly name: string;
  readonly version: string;
  /** What `require(name)` gives. */
  readonly exported: string;
  readonly handler: UpstreamHandler;
}

/** A registry (answering as https://registry.npmjs.org) with one package, packed with `npm pack`. */
export async function npmStandIn(dir: string, name: string, exported: string): Promise<NpmStandIn> {
  const version = '1.0.0';
  const src = join(dir, `npm-${name}`);
  mkdirSync(src);
  writeFileSync(join(src, 'package.json'), JSON.stringify({ name, version, main: 'index.js', license: 'MIT' }));
  writeFileSync(join(src, 'index.js'), `module.exports = ${JSON.stringify(exported)};\n`);
  const r = await runProcess('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: src, env: { ...process.env, npm_config_offline: 'true' }, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`npm pack failed (${r.code}): ${r.stderr}`);
  const tarball = readFileSync(join(dir, r.stdout.trim().split('\n').pop()!));
  const tgzPath = `/${name}/-/${name}-${version}.tgz`;
  const packument = JSON.stringify({
    _id: name,
    name,
    'dist-tags': { latest: version },
    versions: {
      [version]: {
        name,
        version,
        main: 'index.js',
        dist: {
          tarball: `https://registry.npmjs.org${tgzPath}`,
          shasum: createHash('sha1').update(tarball).digest('hex'),
          integrity: `sha512-${createHash('sha512').update(tarball).digest('base64')}`,
        },
      },
    },
    time: { [version]: '2024-01-01T00:00:00.000Z' },
  });
  const handler: UpstreamHandler = (req, res) => {
    req.resume();
    const path = pathOf(req);
    if (path === `/${name}`) send(res, 200, 'application/json', packument);
    else if (path === tgzPath) send(res, 200, 'application/octet-stream', tarball);
    else notFound(res);
  };
  return { name, version, exported, handler };
}

/** Writes a zip of `files` (name → text) with python3's zipfile; returns its bytes. */
async function zipOf(file: string, files: Readonly<Record<string, string>>): Promise<Buffer> {
  const script = 'import json, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], "w") as z:\n    for n, t in json.load(sys.stdin).items(): z.writestr(n, t)\n';
  const r = await runProcess('python3', ['-c', script, file], { input: JSON.stringify(files), timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`python3 zipfile failed (${r.code}): ${r.stderr}`);
  return readFileSync(file);
}

export interface PypiStandIn {
  /** The project name pip is asked for. */
  readonly project: string;
  readonly wheel: string;
  readonly handler: UpstreamHandler;
}

/** A PEP 503 simple index (answering as https://pypi.org/simple/) with one pure-Python wheel. */
export async function pypiStandIn(dir: string, project: string): Promise<PypiStandIn> {
  const module = project.replace(/-/g, '_');
  const version = '1.0.0';
  const distInfo = `${module}-${version}.dist-info`;
  const wheel = `${module}-${version}-py3-none-any.whl`;
  const files: Record<string, string> = {
    [`${module}/__init__.py`]: `VALUE = ${JSON.stringify(project)}\n`,
    [`${distInfo}/METADATA`]: `Metadata-Version: 2.1\nName: ${project}\nVersion: ${version}\n`,
    [`${distInfo}/WHEEL`]: 'Wheel-Version: 1.0\nGenerator: airlock-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
  };
  files[`${distInfo}/RECORD`] = Object.keys(files).map((n) => `${n},,`).join('\n') + `\n${distInfo}/RECORD,,\n`;
  const bytes = await zipOf(join(dir, wheel), files);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const page = `<!DOCTYPE html><html><body><a href="https://pypi.org/packages/${wheel}#sha256=${sha}">${wheel}</a></body></html>\n`;
  const handler: UpstreamHandler = (req, res) => {
    req.resume();
    const path = pathOf(req);
    if (path === `/simple/${project}/`) send(res, 200, 'text/html', page);
    else if (path === `/simple/${project}`) {
      res.writeHead(301, { Location: `/simple/${project}/`, 'Content-Length': 0 });
      res.end();
    } else if (path === `/packages/${wheel}`) send(res, 200, 'application/octet-stream', bytes);
    else notFound(res);
  };
  return { project, wheel, handler };
}

export interface GoProxyStandIn {
  readonly module: string;
  readonly version: string;
  readonly handler: UpstreamHandler;
}

/** A GOPROXY (answering as https://proxy.golang.org) with one module version. */
export async function goProxyStandIn(dir: string, module: string): Promise<GoProxyStandIn> {
  const version = 'v1.0.0';
  const gomod = `module ${module}\n\ngo 1.19\n`;
  const prefix = `${module}@${version}/`;
  const zip = await zipOf(join(dir, 'module.zip'), { [`${prefix}go.mod`]: gomod, [`${prefix}tiny.go`]: 'package tiny\n\nconst Value = "tiny"\n' });
  const base = `/${module}/@v/`;
  const handler: UpstreamHandler = (req, res) => {
    req.resume();
    const path = pathOf(req);
    if (path === `${base}list`) send(res, 200, 'text/plain', `${version}\n`);
    else if (path === `${base}${version}.info`) send(res, 200, 'application/json', JSON.stringify({ Version: version, Time: '2024-01-01T00:00:00Z' }));
    else if (path === `${base}${version}.mod`) send(res, 200, 'text/plain', gomod);
    else if (path === `${base}${version}.zip`) send(res, 200, 'application/zip', zip);
    else notFound(res);
  };
  return { module, version, handler };
}
