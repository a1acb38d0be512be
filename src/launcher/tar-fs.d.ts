// The slice of tar-fs (v2, untyped) the launcher uses to copy workspaces in and out.
declare module 'tar-fs' {
  import type { Readable, Writable } from 'node:stream';
  export function pack(dir: string, opts?: { ignore?: (name: string) => boolean }): Readable;
  export function extract(dir: string, opts?: { strip?: number; readable?: boolean; writable?: boolean }): Writable;
}
