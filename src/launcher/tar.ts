// A minimal ustar writer for the few small files the launcher copies into a container (the CA
// bundle). Copying rather than bind-mounting means the container never sees a host path.

export interface TarFile {
  readonly name: string;
  readonly content: string | Buffer;
  readonly mode?: number;
}

/** Who owns the entries (files put in a session user's home); root when absent. */
export interface TarOwner {
  readonly uid: number;
  readonly gid: number;
}

function header(name: string, size: number, mode: number, type: '0' | '5', owner?: TarOwner): Buffer {
  const block = Buffer.alloc(512, 0);
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name too long: ${name}`);
  block.write(name, 0, 100, 'utf8');
  block.write(mode.toString(8).padStart(7, '0') + '\0', 100, 8, 'ascii');
  block.write((owner?.uid ?? 0).toString(8).padStart(7, '0') + '\0', 108, 8, 'ascii'); // uid
  block.write((owner?.gid ?? 0).toString(8).padStart(7, '0') + '\0', 116, 8, 'ascii'); // gid
  block.write(size.toString(8).padStart(11, '0') + '\0', 124, 12, 'ascii');
  block.write(Math.floor(Date.now() / 1000).toString(8).padStart(11, '0') + '\0', 136, 12, 'ascii');
  block.write('        ', 148, 8, 'ascii'); // checksum placeholder: spaces
  block.write(type, 156, 1, 'ascii');
  block.write('ustar\0' + '00', 257, 8, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return block;
}

/** A tar archive holding `files`, with their parent directories (owner-only when an owner is given). */
export function tarOf(files: readonly TarFile[], owner?: TarOwner): Buffer {
  const parts: Buffer[] = [];
  const dirs = new Set<string>();
  for (const file of files) {
    const segments = file.name.split('/').slice(0, -1);
    for (let i = 1; i <= segments.length; i++) {
      const dir = segments.slice(0, i).join('/') + '/';
      if (!dirs.has(dir)) {
        dirs.add(dir);
        parts.push(header(dir, 0, owner ? 0o700 : 0o755, '5', owner));
      }
    }
    const content = Buffer.isBuffer(file.content) ? file.content : Buffer.from(file.content, 'utf8');
    parts.push(header(file.name, content.length, file.mode ?? 0o644, '0', owner), content);
    const pad = (512 - (content.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(1024, 0));
  return Buffer.concat(parts);
}
