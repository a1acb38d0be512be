// Hand-made tar streams for the copy-out tests: whatever a hostile session could make Docker (or a
// forged stream) hand back, including what no honest `tar` writes (absolute names, `..` parts,
// links to anywhere, devices). ustar only; names and link targets up to 100 bytes.
import { Readable } from 'node:stream';

export type CraftType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo' | 'contiguous' | 'unknown';

export interface CraftEntry {
  readonly name: string;
  readonly type?: CraftType;
  readonly content?: string;
  /** Target of a symlink or hard link, exactly as written in the header. */
  readonly link?: string;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly devmajor?: number;
  readonly devminor?: number;
}

const FLAGS: Record<CraftType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
  contiguous: '7',
  unknown: 'Z',
};

function octal(block: Buffer, value: number, offset: number, length: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'ascii');
}

function header(e: CraftEntry, size: number): Buffer {
  const type = e.type ?? 'file';
  const block = Buffer.alloc(512, 0);
  for (const [text, what] of [
    [e.name, 'name'],
    [e.link ?? '', 'link target'],
  ] as const) {
    if (Buffer.byteLength(text) > 100) throw new Error(`crafted tar: ${what} longer than 100 bytes: ${text}`);
  }
  block.write(e.name, 0, 100, 'utf8');
  octal(block, e.mode ?? (type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644), 100, 8);
  octal(block, e.uid ?? 4242, 108, 8);
  octal(block, e.gid ?? 4242, 116, 8);
  octal(block, size, 124, 12);
  octal(block, Math.floor(Date.now() / 1000), 136, 12);
  block.write('        ', 148, 8, 'ascii');
  block.write(FLAGS[type], 156, 1, 'ascii');
  if (e.link) block.write(e.link, 157, 100, 'utf8');
  block.write('ustar\0' + '00', 257, 8, 'ascii');
  octal(block, e.devmajor ?? 0, 329, 8);
  octal(block, e.devminor ?? 0, 337, 8);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return block;
}

/** The archive bytes for `entries`, in order, with the two zero blocks at the end. */
export function craftTar(entries: readonly CraftEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const body = e.type === undefined || e.type === 'file' || e.type === 'contiguous' ? Buffer.from(e.content ?? '', 'utf8') : Buffer.alloc(0);
    parts.push(header(e, body.length), body);
    const pad = (512 - (body.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(1024, 0));
  return Buffer.concat(parts);
}

export function craftStream(entries: readonly CraftEntry[]): Readable {
  return Readable.from([craftTar(entries)]);
}
