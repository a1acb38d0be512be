// Which uid a session container runs as. Never root unless asked for by name: a root caller
// without SUDO_UID (a root shell, a CI job, a server) gets the image's own non-root USER, or a
// fixed unprivileged uid when the image has none; agents such as Claude Code refuse their
// unattended mode as root, and root in a container is one kernel bug closer to root on the host.
import { statSync } from 'node:fs';
import type { Stats } from 'node:fs';
import type Docker from 'dockerode';
import { extract } from 'tar-stream';
import { LaunchError } from './errors.js';

/** The uid:gid a session runs as when the caller is root and the image names no non-root user. */
export const UNPRIVILEGED_USER = '65532:65532';

/** The caller of `airlock run`, as the CLI sees it (SUDO_UID/SUDO_GID when sudo started it). */
export interface Caller {
  readonly uid: number;
  readonly gid: number;
  readonly sudoUid?: string;
  readonly sudoGid?: string;
}

/** An image's default user, resolved to numbers through the image's own /etc/passwd and /etc/group. */
export interface ImageUser {
  /** USER as the image says it ('' when it says nothing: root). */
  readonly declared: string;
  /** undefined when a name cannot be resolved (no such entry, no /etc/passwd). */
  readonly uid?: number;
  readonly gid?: number;
}

export interface SessionUser {
  /** uid:gid for the container. */
  readonly user: string;
  /** Why this one, for a notice; undefined when it is simply the caller's. */
  readonly why?: string;
  /** A warning to show (an explicit root). */
  readonly warning?: string;
}

/** `--user` as given: UID or UID:GID. */
export function parseUserFlag(flag: string): { uid: number; gid?: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(flag);
  if (!m) throw new LaunchError(`--user ${flag}: expected UID or UID:GID in numbers, e.g. --user 1000:1000`);
  return { uid: Number(m[1]), ...(m[2] === undefined ? {} : { gid: Number(m[2]) }) };
}

/** Whether an image user runs as root (unresolvable names count as root: nothing says otherwise). */
export function isRootUser(u: ImageUser): boolean {
  return u.uid === undefined || u.uid === 0;
}

/**
 * The session's uid:gid. `--user` wins (root only when it says so, with a warning); under sudo the
 * caller is SUDO_UID; a non-root caller runs as itself; a root caller gets the image's user, or
 * UNPRIVILEGED_USER when that is root too.
 */
export async function chooseSessionUser(flag: string | undefined, caller: Caller, imageUser: () => Promise<ImageUser>): Promise<SessionUser> {
  if (flag !== undefined) {
    const { uid } = parseUserFlag(flag);
    if (uid !== 0) return { user: flag };
    return {
      user: flag,
      warning:
        `--user ${flag}: the session runs as root inside the container (on a rootful engine, with all capabilities dropped; ` +
        'on a rootless one, that is you on the host). Agents such as Claude Code refuse their unattended mode as root.',
    };
  }
  if (caller.sudoUid !== undefined) {
    const user = `${caller.sudoUid}:${caller.sudoGid ?? caller.sudoUid}`;
    parseUserFlag(user);
    return { user };
  }
  if (caller.uid !== 0) return { user: `${caller.uid}:${caller.gid}` };
  const image = await imageUser();
  if (!isRootUser(image)) {
    const user = `${image.uid}:${image.gid ?? image.uid}`;
    const named = image.declared === user ? user : `${image.declared} (${user})`;
    return { user, why: `started by root without sudo: the session runs as the image's user ${named}; --user UID:GID picks another` };
  }
  const said = image.declared === '' ? 'names no user' : `runs as ${image.declared}${image.uid === undefined ? ', which it does not define' : ', which is root'}`;
  return {
    user: UNPRIVILEGED_USER,
    why: `started by root without sudo, and the image ${said}: the session runs as ${UNPRIVILEGED_USER}; --user UID:GID picks another`,
  };
}

/** Reads USER of `image` and resolves names in it through the image's /etc/passwd and /etc/group. */
export async function readImageUser(docker: Docker, image: string): Promise<ImageUser> {
  let info: { Config?: { User?: string } };
  try {
    info = (await docker.getImage(image).inspect()) as typeof info;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) throw new LaunchError(`image ${image} not found: build it with \`airlock image build\` or pull it first`);
    throw err;
  }
  const declared = (info.Config?.User ?? '').trim();
  if (declared === '') return { declared };
  const [userPart = '', groupPart] = declared.split(':');
  const numeric = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);
  let uid = numeric(userPart);
  let gid = numeric(groupPart);
  const needPasswd = uid === undefined || groupPart === undefined;
  const needGroup = groupPart !== undefined && gid === undefined;
  if (needPasswd || needGroup) {
    const files = await readImageFiles(docker, image, [...(needPasswd ? ['/etc/passwd'] : []), ...(needGroup ? ['/etc/group'] : [])]);
    const passwd = parseColonFile(files.get('/etc/passwd'));
    const entry = uid === undefined ? passwd.find((f) => f[0] === userPart) : passwd.find((f) => numeric(f[2]) === uid);
    if (uid === undefined) uid = numeric(entry?.[2]);
    if (groupPart === undefined) gid = numeric(entry?.[3]) ?? uid;
    else if (gid === undefined) gid = numeric(parseColonFile(files.get('/etc/group')).find((f) => f[0] === groupPart)?.[2]);
  }
  return { declared, ...(uid === undefined ? {} : { uid }), ...(gid === undefined ? {} : { gid }) };
}

export function parseColonFile(text: string | undefined): string[][] {
  return (text ?? '').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':'));
}

/**
 * The text of small files of an image, read from a created (never started) container; a file the
 * image lacks is absent from the map.
 */
export async function readImageFiles(docker: Docker, image: string, paths: readonly string[]): Promise<Map<string, string>> {
  // The entrypoint never runs: the container is only created, read and removed.
  const container = await docker.createContainer({ Image: image, Entrypoint: ['/nonexistent'], Cmd: [], Labels: { 'airlock.probe': '1' }, NetworkDisabled: true });
  const files = new Map<string, string>();
  try {
    for (const path of paths) {
      let archive: NodeJS.ReadableStream;
      try {
        archive = (await container.getArchive({ path })) as NodeJS.ReadableStream;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) continue;
        throw err;
      }
      const text = await firstFileOf(archive);
      if (text !== undefined) files.set(path, text);
    }
  } finally {
    await container.remove({ force: true, v: true }).catch(() => {});
  }
  return files;
}

/** The first regular file of a tar stream, as text (at most 1 MiB: passwd and group files). */
function firstFileOf(archive: NodeJS.ReadableStream): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    let found: string | undefined;
    const ex = extract();
    ex.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 1024 * 1024) chunks.push(c);
      });
      stream.on('end', () => {
        if (found === undefined && header.type === 'file') found = Buffer.concat(chunks).toString('utf8');
        next();
      });
      stream.resume();
    });
    ex.on('finish', () => resolve(found));
    ex.on('error', reject);
    archive.on('error', reject);
    archive.pipe(ex);
  });
}

/**
 * A notice when a bind-mounted workspace cannot be written by the session's uid (judged by the
 * directory's owner and mode bits; ACLs are not read), saying how to fix it; undefined otherwise.
 */
export function workspaceAccessNotice(dir: string, user: string): string | undefined {
  const [uid = 0, gid = uid] = user.split(':').map(Number);
  if (uid === 0) return undefined;
  let st: Stats;
  try {
    st = statSync(dir);
  } catch {
    return undefined;
  }
  const bits = st.uid === uid ? 0o200 : st.gid === gid ? 0o020 : 0o002;
  if ((st.mode & bits) !== 0) return undefined;
  return (
    `the workspace ${dir} belongs to uid ${st.uid} and is not writable by the session's uid ${uid}: ` +
    `chown -R ${uid}:${gid} it, pass --copy --copy-out DIR, or pick the uid with --user`
  );
}
