// Bundles the CLI: dist/cli/main.js (tsc's output) becomes one CommonJS bundle,
// dist/cli/airlock-HASH.js, holding Airlock's modules, the packages every command starts with
// (commander, yaml, pino) and the certificate library, plus V8's code cache for it,
// dist/cli/airlock-HASH.cache. dist/cli/main.cjs, the command (package.json's bin), is the small
// loader (scripts/cli-main.cjs) that compiles the bundle from that cache; dist/cli/main.js, tsc's
// entry before, imports it. Node 20 pays per module loaded (resolve, read, compile, link) and
// compiles every module's source at every start; it has no code cache for ES modules (no
// module.enableCompileCache before Node 22), but vm.Script takes one for a script. Modules behind
// an `await import` stay lazy inside the bundle: esbuild wraps them in an init function that runs
// at that import, so a command still evaluates only its own modules (ARCHITECTURE.md, Start-up).
// The rest of dist/ stays tsc's, module by module, for the tests and the bench that import it.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { build } from 'esbuild';

const root = join(import.meta.dirname, '..');
const cliDir = join(root, 'dist', 'cli');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// Packages bundled: those on every command's start path; the certificate library a session's
// first new host waits for (@peculiar/x509 and its ASN.1 packages, ~40 files; still evaluated at
// first use, ~200 ms of CPU less at the first request of `exec -- curl` than loading them from
// node_modules); and dockerode (with docker-modem) and tar-fs and tar-stream, which `run` uses:
// loading dockerode from node_modules took ~150 ms of CPU, ~230 files, before `airlock run` could
// ask Docker anything. Three of dockerode's files stay in node_modules, loaded when first called:
// they load what Airlock's use of Docker over a socket never needs (BuildKit's gRPC session and
// progress protocol: @grpc/grpc-js, protobufjs and .proto files found by path; the SSH transport:
// ssh2 and its native addon), ~200 files. The other packages load from node_modules when first
// used (some load native addons or files by path; none is needed to start a session or answer its
// first request).
const BUNDLED = new Set(['commander', 'yaml', 'pino', '@peculiar/x509', '@peculiar/asn1-schema', '@peculiar/asn1-x509', 'dockerode', 'tar-fs', 'tar-stream']);
const FROM_NODE_MODULES = [
  { file: 'dockerode/lib/session.js', of: 'dockerode' },
  { file: 'dockerode/lib/buildkit.js', of: 'dockerode' },
  { file: 'docker-modem/lib/ssh.js', of: 'dockerode' },
];
const atFirstUse = {
  name: 'at-first-use',
  setup(b) {
    const pattern = new RegExp(`/node_modules/(${FROM_NODE_MODULES.map((m) => m.file.replace(/[./]/g, '\\$&')).join('|')})$`);
    b.onLoad({ filter: pattern }, (args) => {
      const file = pattern.exec(args.path)[1];
      const { of } = FROM_NODE_MODULES.find((m) => m.file === file);
      // The file is resolved from the package that depends on it, as Node would (npm may not
      // hoist docker-modem); its module.exports is a function in all three, or an object of them.
      // (Through a variable, so that esbuild leaves these require calls to Node.)
      const load = `r(r.resolve(${JSON.stringify(file)}, { paths: [require('node:path').dirname(r.resolve(${JSON.stringify(of)}))] }))`;
      return {
        contents:
          'const r = require;\n' +
          (file.endsWith('buildkit.js')
            ? `module.exports = { followProgress(...a) { return ${load}.followProgress(...a); } };`
            : `module.exports = function (...a) { return ${load}.apply(this, a); };`),
        loader: 'js',
      };
    });
  },
};
const external = Object.keys(pkg.dependencies).filter((p) => !BUNDLED.has(p));
const isExternal = (specifier) => external.some((p) => specifier === p || specifier.startsWith(`${p}/`));

const result = await build({
  absWorkingDir: root,
  entryPoints: [join(cliDir, 'main.js')],
  write: false,
  outfile: join(cliDir, 'airlock.js'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  // The packages' ES module builds where they ship one (@peculiar/*, asn1js, tsyringe), as before
  // the bundle was CommonJS: their named exports are what the code imports.
  mainFields: ['module', 'main'],
  target: 'node20.18',
  external: [...external, ...external.map((p) => `${p}/*`)],
  // The bundle sits in dist/cli/, so a URL made from a module's own (`new URL('../../images/agent',
  // import.meta.url)`) holds from there as from tsc's dist/<folder>/ (view/server.ts names
  // ../view/page/ for that reason). The loader passes the bundle's URL in.
  define: { 'import.meta.url': '__airlockMetaUrl' },
  charset: 'ascii',
  logLevel: 'warning',
  metafile: true,
  plugins: [atFirstUse],
});
if (result.warnings.length > 0) throw new Error('scripts/bundle.mjs: esbuild warned (above); the bundle would not behave as the modules do');

// A script compiled by vm.Script has no loader for `import()`; the packages loaded at first use
// are imported by the loader instead (from dist/cli/, so they resolve as from the modules).
let body = result.outputFiles[0].text.replace(/^#!.*\n/, '');
body = body.replace(/(?<![.\w$])import\((["'])([^"'\n]+)\1\)/g, (call, quote, specifier) => {
  if (!isExternal(specifier)) throw new Error(`scripts/bundle.mjs: import(${quote}${specifier}${quote}) of a module esbuild did not bundle`);
  return `__airlockImport(${quote}${specifier}${quote})`;
});
// Any other import() with a string (none today) would be a module esbuild left out; one of a
// computed name would be served by Node's loader (the loader's importModuleDynamically), with a
// warning that the feature is experimental.
const left = /(?<![.\w$])import\(\s*["'`]/.exec(body);
if (left) throw new Error(`scripts/bundle.mjs: an import() the loader does not serve: ${body.slice(left.index - 80, left.index + 80)}`);
// What the loader compiles: one function expression, called with what a CommonJS module gets plus
// the two above ("use strict" stays the body's first statement).
const source = `(function (exports, require, module, __filename, __dirname, __airlockImport, __airlockMetaUrl) {${body}\n})`;

// The loader reads the bundle as latin1, which makes a one-byte string without decoding UTF-8 (esbuild
// writes \u escapes for anything else by default; a legal comment kept at the end could hold some).
const wide = /[^\x00-\x7f]/.exec(source);
if (wide) throw new Error(`scripts/bundle.mjs: the bundle is not ASCII: ${source.slice(wide.index - 80, wide.index + 20)}`);

// Named by content, as the loader names them: a cache is only ever read beside the bundle it was
// made from (V8 itself checks its version, its flags and the source's length, not the text).
const name = `airlock-${createHash('sha256').update(source).digest('hex').slice(0, 12).toUpperCase()}`;
writeFileSync(join(cliDir, `${name}.js`), source);
const tscMain = readFileSync(join(cliDir, 'main.js'), 'utf8');
const shebang = tscMain.split('\n')[0];
if (!shebang.startsWith('#!/usr/bin/env -S node')) throw new Error('scripts/bundle.mjs: src/cli/main.ts lost its shebang');
const loader = readFileSync(join(root, 'scripts', 'cli-main.cjs'), 'utf8').replace(/^#!.*\n/, `${shebang}\n`).replace("'airlock-BUNDLE'", `'${name}'`);
if (!loader.includes(`'${name}'`) || !loader.includes("'CACHE-SHA256'")) throw new Error('scripts/bundle.mjs: scripts/cli-main.cjs does not name the bundle and its cache hash');
// Without the cache's hash until the cache exists (below): the run that makes it finds none.
writeFileSync(join(cliDir, 'main.cjs'), loader);
// dist/cli/main.js, the path the tests, the bench and `npm start` name, loads the same (through
// Node's ES module loader: a few ms more).
writeFileSync(join(cliDir, 'main.js'), `${shebang}\n// The airlock command: dist/cli/main.cjs (scripts/bundle.mjs).\nimport './main.cjs';\n`);
for (const f of ['main.cjs', 'main.js']) chmodSync(join(cliDir, f), 0o755);
rmSync(join(cliDir, 'main.js.map'), { force: true }); // tsc's, for the file replaced above

// Which file is the bundle and what it holds (Airlock's modules by dist path, packages by name),
// for test/cli/exec-startup.test.ts.
const holds = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const pkgName = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  holds.add(pkgName ? pkgName[1] : relative(join(root, 'dist'), join(root, input)));
}
writeFileSync(join(cliDir, 'bundle.json'), JSON.stringify({ script: `${name}.js`, holds: [...holds].sort() }, null, 1) + '\n');

// The code cache: made by running `airlock exec -- sleep 0.3` through the loader, under the node
// flags of the shebang (V8 accepts a cache only under the flags it was made with), and taken at
// exit, so it holds the functions that command compiled, not only the top level: with a command
// that outlives exec's 20 ms, always the certificate library and the upstream TLS set-up that
// exec prepares while its command runs (with `true` that depended on the machine's load; ~20 ms
// of CPU less at `exec -- curl`'s first request, ~2 ms more to read the larger cache).
const flags = shebang.slice('#!/usr/bin/env -S node'.length).trim().split(/\s+/).filter(Boolean);
const work = mkdtempSync(join(tmpdir(), 'airlock-code-cache-'));
try {
  writeFileSync(join(work, 'policy.yaml'), 'version: 1\nname: code-cache\nallow:\n  - host: example.test\n');
  const cache = join(cliDir, `${name}.cache`);
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(https?|no|all)_proxy$/i.test(k) || k.startsWith('AIRLOCK_') || k === 'NODE_OPTIONS') delete env[k];
  const r = spawnSync(
    process.execPath,
    [...flags, join(root, 'scripts', 'code-cache.mjs'), join(cliDir, 'main.cjs'), cache, 'exec', '--state-dir', join(work, 'state'), '--policy', join(work, 'policy.yaml'), '--', 'sleep', '0.3'],
    { cwd: work, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 },
  );
  if (r.status !== 0) {
    try {
      unlinkSync(cache);
    } catch {}
    throw new Error(`scripts/bundle.mjs: making the code cache failed (exit ${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
  }
  const sha256 = createHash('sha256').update(readFileSync(cache)).digest('hex');
  writeFileSync(join(cliDir, 'main.cjs'), loader.replace("'CACHE-SHA256'", `'${sha256}'`));
} finally {
  rmSync(work, { recursive: true, force: true });
}
