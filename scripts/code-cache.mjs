// Build step (scripts/bundle.mjs): runs the CLI through its loader with the command line given and
// writes V8's code cache for the bundle at exit, when it holds what that command compiled.
//   node <the shebang's flags> scripts/code-cache.mjs dist/cli/main.cjs OUT.cache ARGS...
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const [main, out, ...args] = process.argv.slice(2);
process.argv = [process.argv[0], main, ...args];
process.on('exit', () => {
  const cli = globalThis[Symbol.for('airlock.cli')];
  writeFileSync(out, cli.script.createCachedData());
});
createRequire(import.meta.url)(main);
