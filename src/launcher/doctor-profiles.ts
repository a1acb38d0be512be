// `airlock doctor --for cloche|clauderon|agentgate`: the requirements of other launchers' image
// guides, checked on top of the session checks in image.ts. Host-side checks read the image's
// config and files; the read-only root check runs a probe container locked down like a session.
import type Docker from 'dockerode';
import type { Check } from './check.js';
import { parseColonFile, readImageFiles, readImageUser } from './user.js';

export interface DoctorProfile {
  readonly name: string;
  /** The user the guide's images run as (and its uid, where the guide fixes one). */
  readonly user?: { readonly name: string; readonly uid?: number; readonly fix: string };
  /** Commands the guide needs on PATH besides the session checks' (bash, curl, git, the agent CLI). */
  readonly tools: readonly string[];
  readonly toolsFix?: string;
  readonly healthcheck: boolean;
  /** Runs with a read-only root file system (and all capabilities dropped). */
  readonly readOnlyRoot: boolean;
  /** The guide says to set no USER (its launcher passes --user): no USER is then no failure. */
  readonly noUser?: boolean;
}

export const DOCTOR_PROFILES: Readonly<Record<string, DoctorProfile>> = Object.freeze({
  cloche: {
    name: 'cloche',
    user: {
      name: 'agent',
      fix: 'build FROM cloche-base:latest (it has the agent user), or `RUN useradd --create-home agent`; end the Dockerfile with `USER agent`',
    },
    tools: ['cloche-agent', 'clo'],
    toolsFix: 'build FROM cloche-base:latest, which puts cloche-agent and clo in /usr/local/bin, and do not override its entrypoint',
    healthcheck: false,
    readOnlyRoot: false,
  },
  clauderon: {
    name: 'clauderon',
    tools: ['mkdir', 'chmod', 'cat', 'date'],
    toolsFix: 'install coreutils (any standard base image has mkdir, chmod, cat and date): apt-get install -y coreutils',
    healthcheck: false,
    readOnlyRoot: false,
    noUser: true,
  },
  agentgate: {
    name: 'agentgate',
    user: { name: 'agentgate', uid: 1000, fix: '`RUN useradd --uid 1000 --create-home agentgate`; end the Dockerfile with `USER agentgate`' },
    tools: [],
    healthcheck: true,
    readOnlyRoot: true,
  },
});

export type ProfileLookup = { readonly ok: true; readonly value: DoctorProfile } | { readonly ok: false; readonly problem: string };

export function doctorProfile(name: string): ProfileLookup {
  const profile = Object.hasOwn(DOCTOR_PROFILES, name) ? DOCTOR_PROFILES[name] : undefined;
  if (profile) return { ok: true, value: profile };
  return { ok: false, problem: `${JSON.stringify(name)} is not a known guide; known: ${Object.keys(DOCTOR_PROFILES).join(', ')}` };
}

/** The names of the checks a profile adds, in the order they are reported (after the session checks). */
export function profileCheckNames(p: DoctorProfile): string[] {
  return [...(p.user ? ['user'] : []), ...(p.tools.length ? ['tools'] : []), ...(p.healthcheck ? ['healthcheck'] : []), ...(p.readOnlyRoot ? ['read-only-root', 'capabilities'] : [])];
}

/** The host-side and probe checks of a profile (the in-container `tools` check is the script's). */
export async function profileChecks(docker: Docker, image: string, p: DoctorProfile, sessionChecksRan: boolean): Promise<Check[]> {
  const checks: Check[] = [];
  const info = (await docker.getImage(image).inspect()) as { Config?: { Healthcheck?: { Test?: string[] } } };
  if (p.user) {
    const wanted = p.user;
    const passwd = parseColonFile((await readImageFiles(docker, image, ['/etc/passwd'])).get('/etc/passwd'));
    const entry = passwd.find((f) => f[0] === wanted.name);
    const runs = await readImageUser(docker, image);
    const entryUid = entry ? Number(entry[2]) : undefined;
    let problem: string | undefined;
    if (!entry) problem = `the image has no user ${wanted.name} in /etc/passwd`;
    else if (wanted.uid !== undefined && entryUid !== wanted.uid) problem = `user ${wanted.name} has uid ${entryUid}, not ${wanted.uid}`;
    else if (runs.uid !== entryUid) problem = `the image runs as ${runs.declared || 'root (no USER)'}, not ${wanted.name}`;
    checks.push(
      problem
        ? { name: 'user', ok: false, detail: problem, fix: wanted.fix }
        : { name: 'user', ok: true, detail: `the image runs as ${wanted.name} (uid ${entryUid})` },
    );
  }
  if (p.healthcheck) {
    const test = info.Config?.Healthcheck?.Test ?? [];
    const ok = test.length > 0 && test[0] !== 'NONE';
    checks.push(
      ok
        ? { name: 'healthcheck', ok, detail: `HEALTHCHECK ${test.slice(1).join(' ')}` }
        : { name: 'healthcheck', ok, detail: 'the image has no HEALTHCHECK', fix: 'add one that checks the agent can start, e.g. `HEALTHCHECK CMD claude --version || exit 1`' },
    );
  }
  if (p.readOnlyRoot) {
    checks.push(await readOnlyRootCheck(docker, image));
    checks.push(
      sessionChecksRan
        ? { name: 'capabilities', ok: true, detail: 'the checks above ran with all capabilities dropped and no-new-privileges' }
        : {
            name: 'capabilities',
            ok: false,
            detail: 'the image did not run its checks with all capabilities dropped and no-new-privileges',
            fix: 'make the entrypoint work without capabilities: no chown, setcap, su or sudo at start',
          },
    );
  }
  return checks;
}

const READONLY_MARK = '@@airlock-doctor-read-only-ok';

/** Runs the image's entrypoint with a read-only root, /tmp and /workspace writable (tmpfs), no capabilities. */
async function readOnlyRootCheck(docker: Docker, image: string): Promise<Check> {
  const container = await docker.createContainer({
    Image: image,
    Cmd: ['sh', '-c', `: > /workspace/.airlock-doctor && echo ${READONLY_MARK}`],
    Labels: { 'airlock.doctor': '1' },
    // As the image's own user, as the guide's launcher runs it.
    HostConfig: {
      NetworkMode: 'none',
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': 'rw,nosuid,nodev', '/workspace': 'rw,nosuid,nodev,mode=1777' },
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
    },
  });
  try {
    await container.start();
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      container.wait() as Promise<{ StatusCode: number }>,
      new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 60_000))),
    ]);
    clearTimeout(timer);
    const logs = String(await container.logs({ stdout: true, stderr: true, follow: false }));
    if (result?.StatusCode === 0 && logs.includes(READONLY_MARK)) {
      return { name: 'read-only-root', ok: true, detail: 'the entrypoint runs with a read-only root file system (/tmp and /workspace writable)' };
    }
    const why = logs.replace(/[\x00-\x08]/g, '').trim().split('\n').slice(-1)[0]?.slice(0, 160) ?? '';
    return {
      name: 'read-only-root',
      ok: false,
      detail: `with a read-only root file system the entrypoint ${result === null ? 'did not finish in 60 s' : `exited with ${result.StatusCode}`}${why ? `: ${why}` : ''}`,
      fix: 'write only under /workspace and /tmp at start (e.g. HOME=/workspace), never under /etc, /usr or /home',
    };
  } finally {
    await container.remove({ force: true, v: true }).catch(() => {});
  }
}
