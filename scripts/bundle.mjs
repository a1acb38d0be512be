// Bundles the CLI: dist/cli/main.js (tsc's output) becomes one file holding Airlock's modules and
// the packages every command starts with (commander, yaml, pino), plus chunks beside it for what
// loads later (`await import`), the certificate library among them. Node 20 pays per module loaded (resolve, read, compile, link):
// ~120 small modules cost `airlock exec` more than the code in them (ARCHITECTURE.md, Start-up).
// The rest of dist/ stays tsc's, module by module, for the tests and the bench that import it.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { build } from 'esbuild';

const root = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// Packages bundled: those on every command's start path, and the certificate library a session's
// first new host waits for (@peculiar/x509 and its ASN.1 packages, ~40 files: in a chunk of their
// own, still loaded at first use, ~200 ms of CPU less at the first request of `exec -- curl`). The
// others load from node_modules when first used, as without the bundle (some load native addons or
// files by path; none is needed to start a session or answer its first request).
const BUNDLED = new Set(['commander', 'yaml', 'pino', '@peculiar/x509', '@peculiar/asn1-schema', '@peculiar/asn1-x509']);
const external = Object.keys(pkg.dependencies).filter((p) => !BUNDLED.has(p));

const result = await build({
  absWorkingDir: root,
  entryPoints: { main: join(root, 'dist', 'cli', 'main.js') },
  outdir: join(root, 'dist', 'cli'),
  // Chunks sit beside main.js, so `import.meta.url` points into dist/cli/ for every module, as it
  // does in tsc's layout for the CLI's own (paths like ../../images stay right).
  chunkNames: 'chunk-[hash]',
  allowOverwrite: true,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  // The packages' ES module builds where they ship one (@peculiar/*, asn1js, tsyringe): esbuild
  // cannot see the named exports of their CommonJS builds, which an `await import` needs.
  mainFields: ['module', 'main'],
  target: 'node20.18',
  external: [...external, ...external.map((p) => `${p}/*`)],
  // pino and its helpers are CommonJS and call require() for Node's own modules.
  banner: { js: "import { createRequire as __airlockRequire } from 'node:module'; const require = __airlockRequire(import.meta.url);" },
  logLevel: 'warning',
  metafile: true,
});

// What each output file holds (Airlock's modules by dist path, packages by name), for the test
// that checks what `airlock exec` loads (test/cli/exec-startup.test.ts).
const holds = {};
for (const [out, meta] of Object.entries(result.metafile.outputs)) {
  const inputs = new Set();
  for (const input of Object.keys(meta.inputs)) {
    const pkgName = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    inputs.add(pkgName ? pkgName[1] : relative(join(root, 'dist'), join(root, input)));
  }
  holds[relative(join(root, 'dist', 'cli'), join(root, out))] = [...inputs].sort();
}
writeFileSync(join(root, 'dist', 'cli', 'bundle.json'), JSON.stringify(holds, null, 1) + '\n');
