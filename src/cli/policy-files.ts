// Policy files on disk for reload and approve: read, replace at once, watch.
import { randomBytes } from 'node:crypto';
import { watch } from 'node:fs';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { PolicyFiles } from '../sessions/policy-reload.js';

export const POLICY_FILES: PolicyFiles = {
  read: (file) => readFile(file, 'utf8'),

  async write(file, text) {
    // A temporary file beside it, with the same mode, synced and renamed over it: a reader (the
    // watch, an editor) sees the old file or the new one, never half of one.
    const mode = (await stat(file)).mode & 0o7777;
    const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await open(temp, 'wx', mode);
    try {
      await handle.writeFile(text);
      await handle.chmod(mode); // open's mode is filtered by the umask
      await handle.sync();
      await handle.close();
      await rename(temp, file);
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(temp, { force: true });
      throw err;
    }
  },

  watch(file, changed, failed) {
    // The directory, not the file: editors that save by writing another file and renaming it
    // over this one replace the inode a file watch would be holding.
    const name = basename(file);
    const watcher = watch(dirname(file), { persistent: false }, (_event, changedName) => {
      if (changedName === null || changedName === name) changed();
    });
    watcher.on('error', failed);
    return { close: () => watcher.close() };
  },
};
