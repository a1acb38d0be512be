// The one paragraph that tells an agent how its network works and what to do when refused:
// printed when a session starts, and on request appended to the agent's instructions file
// (CLAUDE.md, AGENTS.md) so the agent reads it before its first request.
import { closeSync, constants, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';

const HEADING = '## Network access (Airlock)';

export const AGENT_NOTE =
  'All HTTP(S) traffic of this session goes through Airlock, a proxy that enforces a policy. A 403 naming Airlock is a ' +
  'policy decision, not a network fault: do not retry it or work around it. What is allowed: ' +
  '`curl -s http://airlock.internal/rules`. Why a URL is refused: `curl -s "http://airlock.internal/why?method=GET&url=URL"`. ' +
  'Ask the operator for access: `curl -s http://airlock.internal/request-access -d host=HOST -d method=GET -d path=/PATH -d reason="why you need it"`; ' +
  'once approved, the same request works without a restart.';

/** The note as printed when a session starts (stderr, prefixed like every airlock line). */
export function agentNoteLine(): string {
  return `airlock: ${AGENT_NOTE}\n`;
}

/**
 * Appends the note to `file` (created if missing) under its own heading, once: a file that
 * already has the heading is left as it is. Returns whether it wrote. The file lives in a
 * workspace a session can write, so a symlink there (to ~/.bashrc, say) is refused, not followed.
 */
export function appendAgentNotes(file: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`--agent-notes ${file}: ${code === 'ELOOP' ? 'is a symbolic link; refusing to follow it' : (err as Error).message}`);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`--agent-notes ${file}: not a regular file`);
    const current = readFileSync(fd, 'utf8');
    if (current.includes(HEADING)) return false;
    const gap = current === '' ? '' : current.endsWith('\n\n') ? '' : current.endsWith('\n') ? '\n' : '\n\n';
    writeSync(fd, `${gap}${HEADING}\n\n${AGENT_NOTE}\n`);
    return true;
  } finally {
    closeSync(fd);
  }
}
