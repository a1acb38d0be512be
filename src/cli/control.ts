// The control socket of an embedded proxy (`airlock exec`, `airlock run` without --daemon): the
// operator routes of the admin endpoint (policy reload, inbox, approve, deny) for that one
// session, at <session dir>/control.sock with its token in control.token (both owner-only).
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { join } from 'node:path';
import type pino from 'pino';
import { startControl } from '../sessions/admin.js';
import { sessionDir } from '../sessions/registry.js';
import type { ProxyRuntime } from '../sessions/runtime.js';
import type { Session } from '../sessions/session.js';
import { UsageError } from './config.js';

/** Where an admin call goes: the daemon's socket and token file, or an embedded run's control socket. */
export interface AdminTarget {
  readonly socket: string;
  readonly token: string;
}

function controlPaths(dir: string): AdminTarget {
  return { socket: join(dir, 'control.sock'), token: join(dir, 'control.token') };
}

/**
 * Where the operator commands go for `--session ID`: that session's control socket when it has
 * one (an embedded run), else the daemon (undefined).
 */
export function controlTarget(stateDir: string, id: string | undefined): AdminTarget | undefined {
  if (id === undefined) return undefined;
  let dir: string;
  try {
    dir = sessionDir(stateDir, id);
  } catch {
    throw new UsageError(`${JSON.stringify(id)} is not a session id (they look like s-0123456789ab)`);
  }
  const paths = controlPaths(dir);
  return existsSync(paths.token) ? paths : undefined;
}

/** Starts and ends the control sockets of an embedded proxy's sessions. */
export class ControlSockets {
  private readonly servers = new Map<string, { readonly dir: string; readonly started: Promise<http.Server | null> }>();

  constructor(
    private readonly runtime: () => ProxyRuntime,
    private readonly log: () => pino.Logger,
  ) {}

  open(session: Session): void {
    const paths = controlPaths(session.dir);
    const token = randomBytes(24).toString('base64url');
    writeFileSync(paths.token, token + '\n', { mode: 0o600 });
    const started = startControl({ socketPath: paths.socket, token, runtime: this.runtime() }).then(
      (server) => server.unref(),
      (err: Error) => {
        this.log().warn({ session: session.id, socket: paths.socket }, `no control socket for session ${session.id} (\`airlock policy reload --session\` will not reach it): ${err.message}`);
        return null;
      },
    );
    this.servers.set(session.id, { dir: session.dir, started });
  }

  async close(id: string): Promise<void> {
    const open = this.servers.get(id);
    if (!open) return;
    this.servers.delete(id);
    (await open.started)?.close();
    const paths = controlPaths(open.dir);
    rmSync(paths.socket, { force: true });
    rmSync(paths.token, { force: true });
  }
}
