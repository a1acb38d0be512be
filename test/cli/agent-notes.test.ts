// The note on http://airlock.internal/ for the agent's instructions: appended once under its own
// heading, and for `airlock run` only to a file inside the workspace.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_NOTE, appendAgentNotes } from '../../src/cli/agent-notes.js';
import { agentNotesPath } from '../../src/cli/run.js';
import { rmTmp, tmpDir } from '../helpers/servers.js';

const dir = tmpDir('airlock-agent-notes-');
afterAll(() => rmTmp(dir));

describe('agent notes', () => {
  it('is one short paragraph naming the endpoint', () => {
    expect(AGENT_NOTE).not.toContain('\n');
    expect(AGENT_NOTE.length).toBeLessThan(700);
    expect(AGENT_NOTE).toContain('http://airlock.internal/request-access');
  });

  it('is appended after what the file has, once', () => {
    const file = join(dir, 'AGENTS.md');
    writeFileSync(file, '# Rules\nNo force pushes.');
    expect(appendAgentNotes(file)).toBe(true);
    expect(appendAgentNotes(file)).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe(`# Rules\nNo force pushes.\n\n## Network access (Airlock)\n\n${AGENT_NOTE}\n`);
    const fresh = join(dir, 'NEW.md');
    appendAgentNotes(fresh);
    expect(readFileSync(fresh, 'utf8')).toBe(`## Network access (Airlock)\n\n${AGENT_NOTE}\n`);
  });

  it('airlock run takes only a file inside the workspace', () => {
    expect(agentNotesPath('/w', 'CLAUDE.md')).toBe('/w/CLAUDE.md');
    expect(agentNotesPath('/w', 'docs/AGENTS.md')).toBe('/w/docs/AGENTS.md');
    for (const bad of ['../x.md', '/etc/profile', '.', 'a/../../x']) expect(() => agentNotesPath('/w', bad), bad).toThrow(/inside the workspace/);
  });
});
