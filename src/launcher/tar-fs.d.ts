// The slice of tar-fs (v2, untyped) the launcher uses to copy workspaces in and out.
declare module 'tar-fs' {
  import type { Readable, Writable } from 'node:stream';

  /** A tar-stream header, as tar-fs hands it to `ignore` and `map`. */
  export interface Headers {
    name: string;
    /** null for a type flag tar-stream does not know. */
    type: 'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo' | 'contiguous-file' | null;
    linkname?: string | null;
    mode: number;
    uid: number;
    gid: number;
    size: number;
    mtime: Date;
  }

  export function pack(dir: string, opts?: { ignore?: (name: string) => boolean; map?: (header: Headers) => Headers }): Readable;
  export function extract(
    dir: string,
    opts?: {
      /** Skip the entry (its data is read and thrown away) when this returns true. */
      ignore?: (name: string, header?: Headers) => boolean;
      /** false: never chown to the uid/gid of the archive (tar-fs does when it runs as root). */
      chown?: boolean;
      /** Mode bits added to every directory / file. */
      dmode?: number;
      fmode?: number;
      umask?: number;
      strict?: boolean;
      strip?: number;
      readable?: boolean;
      writable?: boolean;
      /** The file system to extract with (node:fs's callback API). */
      fs?: object;
    },
  ): Writable;
}
