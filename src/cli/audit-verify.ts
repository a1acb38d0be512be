// `airlock audit verify <session>`: checks a session's audit chain (src/audit/verify.ts) and exits
// with a code a script can act on (VERIFY_EXIT, listed in the README).
import { existsSync } from 'node:fs';
import type { Command, Option } from 'commander';
import { auditKeyPath, loadAuditKey } from '../audit/chain.js';
import { readHead, sessionLogFiles } from '../audit/files.js';
import { verifyLog } from '../audit/verify.js';
import { sessionDir } from '../sessions/registry.js';
import { UsageError } from './config.js';

export function registerAuditVerify(audit: Command, stateDirOption: () => Option): void {
  audit
    .command('verify')
    .description(
      "check a session's audit log: every line's MAC, the chain across rotated files, and its end against the signed head. " +
        'Exit 0 intact, 3 a line edited, 4 lines deleted/inserted/reordered, 5 tail or file missing, 6 lines of another session, 2 usage',
    )
    .argument('<session>', 'session id')
    .addOption(stateDirOption())
    .action((id: string, _opts: unknown, cmd: Command) => {
      // `audit` declares --state-dir too and takes it wherever it is written.
      const { stateDir } = cmd.optsWithGlobals<{ stateDir: string }>();
      let dir: string;
      try {
        dir = sessionDir(stateDir, id);
      } catch {
        throw new UsageError(`${JSON.stringify(id)} is not a session id (they look like s-0123456789ab)`);
      }
      if (!existsSync(dir)) throw new UsageError(`no session ${id} under ${stateDir}`);
      if (!existsSync(auditKeyPath(stateDir))) throw new UsageError(`no audit key at ${auditKeyPath(stateDir)}: the log cannot be verified without it`);
      const result = verifyLog(id, loadAuditKey(stateDir, false), sessionLogFiles(dir), readHead(dir));
      if (result.problem) process.stderr.write(`airlock: audit of ${id} FAILED (${result.problem}): ${result.message}\n`);
      else process.stdout.write(`${id}: ${result.message}\n`);
      process.exitCode = result.exitCode;
    });
}
