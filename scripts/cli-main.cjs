#!/usr/bin/env -S node (the build puts src/cli/main.ts's line here)
// The `airlock` command as installed (dist/cli/main.cjs, package.json's bin, written by
// scripts/bundle.mjs from this file; dist/cli/main.js imports it): compiles the CLI's bundle,
// dist/cli/airlock-HASH.js, with V8's code cache made for it at build time (airlock-HASH.cache
// beside it), and runs it. V8 checks the cache (its version, the flags, the source's length) and
// compiles from source when it does not fit: slower, same behaviour. Nothing is written here at
// run time; both files are read from where the code is installed. CommonJS, as an ES module entry
// costs ~8 ms of CPU more (Node's ES module loader, its file reading).
'use strict';
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { pathToFileURL } = require('node:url');
const { setFlagsFromString } = require('node:v8');
const { constants, Script } = require('node:vm');

// The shebang's --max-semi-space-size=2 caps the young generation (src/cli/main.ts says why). V8
// read it when it made the heap, before this line, and does not read it again; but while the flag
// is set, V8 rejects the code cache Node keeps for its own modules (net, tls, http, crypto...: a
// cache is valid only under the flags it was made with), and compiling them costs ~25 ms of CPU at
// every start. Set back to its default, the flag no longer differs, and the heap keeps its cap.
// (A worker thread, which Airlock does not start, would get V8's default young generation.)
setFlagsFromString('--max-semi-space-size=0');

const name = 'airlock-BUNDLE';
// The cache's SHA-256, written here by the build once it has made the cache. V8 checks a cache's
// version, flags and source length but not its bytes (a damaged one can crash the process), so
// the loader does, for ~1.5 ms.
const cacheSha256 = 'CACHE-SHA256';
const file = join(__dirname, `${name}.js`);
let cachedData;
let cache = 'absent';
try {
  cachedData = readFileSync(join(__dirname, `${name}.cache`));
  if (require('node:crypto').createHash('sha256').update(cachedData).digest('hex') !== cacheSha256) {
    cachedData = undefined;
    cache = 'damaged';
  }
} catch {
  // No cache (a build that could not make one): compile from source.
}
// latin1: the bundle is ASCII (scripts/bundle.mjs checks), and this makes its string without decoding.
const script = new Script(readFileSync(file, 'latin1'), {
  filename: file,
  cachedData,
  // The bundle's import() of packages goes through the function passed below; this serves any other.
  importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
});
// Whether the cache was used ('accepted'; 'rejected' by V8, 'damaged', 'absent'), for the start-up test.
if (cachedData !== undefined) cache = script.cachedDataRejected ? 'rejected' : 'accepted';
globalThis[Symbol.for('airlock.cli')] = { script, cache };
const bundle = { exports: {} };
script.runInThisContext()(bundle.exports, require('node:module').createRequire(file), bundle, file, __dirname, (specifier) => import(specifier), pathToFileURL(file).href);
