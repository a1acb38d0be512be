// Files a session's credentials give it (a placeholder Claude login store, Claude Code's onboarding
// flag): written into the created container's home for the session's user before it starts,
// owned by that user, so the agent can rewrite them (Claude Code saves its refreshed login). They
// hold placeholders only; the real values stay with the proxy.
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { extract } from 'tar-stream';
import type { SessionFile } from '../credentials/broker.js';
import { LaunchError } from './errors.js';
import { tarOf } from './tar.js';

/** The session's home: -e HOME=..., else the image's HOME, else root's for uid 0. */
export function sessionHome(extraEnv: Readonly<Record<string, string>>, imageEnv: readonly string[], uid: number): string | null {
  const home = extraEnv.HOME ?? imageEnv.find((e) => e.startsWith('HOME='))?.slice(5);
  if (home && posix.isAbsolute(home)) return posix.normalize(home).replace(/(.)\/+$/, '$1');
  return uid === 0 ? '/root' : null;
}

/** The JSON object at `path` in the container, or null when there is none (or it is not one). */
async function readJson(container: Docker.Container, path: string): Promise<Record<string, unknown> | null> {
  let archive: Readable;
  try {
    archive = (await container.getArchive({ path })) as unknown as Readable;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
  const text = await new Promise<string>((resolve, reject) => {
    const x = extract();
    let out = '';
    x.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (header.type === 'file' && out === '') out = Buffer.concat(chunks).toString('utf8');
        next();
      });
    });
    x.on('finish', () => resolve(out));
    x.on('error', reject);
    archive.pipe(x);
  });
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Writes `files` under the session user's home in `container` (created, not started). */
export async function installSessionFiles(
  container: Docker.Container,
  files: readonly SessionFile[],
  user: string,
  extraEnv: Readonly<Record<string, string>>,
  imageEnv: readonly string[],
): Promise<string | null> {
  if (files.length === 0) return null;
  const [uid = 0, gid = uid] = user.split(':').map(Number);
  const home = sessionHome(extraEnv, imageEnv, uid);
  if (!home) {
    throw new LaunchError(
      `the policy's credentials give the session files for its home (${files.map((f) => `~/${f.path}`).join(', ')}), but the image sets no HOME for user ${user}: pass -e HOME=/path/to/home`,
    );
  }
  const entries = [];
  for (const f of files) {
    let content = f.content;
    if (f.mergeJson) {
      const existing = await readJson(container, posix.join(home, f.path));
      if (existing) content = JSON.stringify({ ...existing, ...(JSON.parse(f.content) as Record<string, unknown>) });
    }
    entries.push({ name: f.path, content, mode: f.mode });
  }
  try {
    await container.putArchive(tarOf(entries, { uid, gid }), { path: home });
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) throw new LaunchError(`the session's home ${home} does not exist in the image: pass -e HOME=/an/existing/dir`);
    throw err;
  }
  return home;
}
