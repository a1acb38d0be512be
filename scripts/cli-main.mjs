#!/usr/bin/env -S node (the build puts src/cli/main.ts's line here)
// The `airlock` command as installed (dist/cli/main.js, written by scripts/bundle.mjs from this
// file): compiles the CLI's bundle, dist/cli/airlock-HASH.js, with V8's code cache made for it at
// build time (airlock-HASH.cache beside it), and runs it. V8 checks the cache (its version, the
// flags, the source) and compiles from source when it does not fit: slower, same behaviour.
// Nothing is written here at run time; both files are read from where the code is installed.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { constants, Script } from 'node:vm';

// The shebang's --max-semi-space-size=2 caps the young generation (src/cli/main.ts says why). V8
// read it when it made the heap, before this line, and does not read it again; but while the flag
// is set, V8 rejects the code cache Node keeps for its own modules (net, tls, http, crypto...: a
// cache is valid only under the flags it was made with), and compiling them costs ~25 ms of CPU at
// every start. Set back to its default, the flag no longer differs, and the heap keeps its cap.
// (A worker thread, which Airlock does not start, would get V8's default young generation.)
setFlagsFromString('--max-semi-space-size=0');

const name = 'airlock-BUNDLE';
const file = new URL(`${name}.js`, import.meta.url);
const path = fileURLToPath(file);
let cachedData;
try {
  cachedData = readFileSync(new URL(`${name}.cache`, import.meta.url));
} catch {
  // No cache (a build that could not make one): compile from source.
}
const script = new Script(readFileSync(file, 'utf8'), { filename: path, cachedData, importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER });
// Whether the cache was used ('accepted', 'rejected' or 'absent'), for the start-up test and the bench.
globalThis[Symbol.for('airlock.cli')] = { script, cache: cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'rejected' : 'accepted' };
const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(file), module, path, fileURLToPath(new URL('.', file)), (specifier) => import(specifier), file.href);
