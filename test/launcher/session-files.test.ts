// Where a session's credential files go: the session user's home, from -e HOME, the image's HOME,
// or root's; none known is a clear launch error (tested with the real engine in claude-login.test.ts).
import { describe, expect, it } from 'vitest';
import { sessionHome } from '../../src/launcher/session-files.js';
import { tarOf } from '../../src/launcher/tar.js';

describe('sessionHome', () => {
  it('takes -e HOME over the image, the image over root, and nothing relative', () => {
    expect(sessionHome({ HOME: '/work/home' }, ['HOME=/home/agent'], 1000)).toBe('/work/home');
    expect(sessionHome({}, ['PATH=/bin', 'HOME=/home/agent/'], 1000)).toBe('/home/agent');
    expect(sessionHome({}, [], 0)).toBe('/root');
    expect(sessionHome({}, [], 1000)).toBeNull();
    expect(sessionHome({ HOME: 'relative' }, [], 1000)).toBeNull();
  });
});

describe('tarOf with an owner', () => {
  it('writes the owner into file and directory entries, directories owner-only', () => {
    const tar = tarOf([{ name: '.claude/.credentials.json', content: '{}', mode: 0o600 }], { uid: 1000, gid: 1001 });
    const field = (at: number, offset: number, length: number) => tar.subarray(at + offset, at + offset + length).toString('ascii').replace(/\0.*$/, '');
    // First block: the directory; the second: the file.
    expect(field(0, 0, 100)).toBe('.claude/');
    expect(parseInt(field(0, 100, 8), 8)).toBe(0o700);
    expect(parseInt(field(0, 108, 8), 8)).toBe(1000);
    expect(parseInt(field(0, 116, 8), 8)).toBe(1001);
    expect(field(512, 0, 100)).toBe('.claude/.credentials.json');
    expect(parseInt(field(512, 100, 8), 8)).toBe(0o600);
    expect(parseInt(field(512, 108, 8), 8)).toBe(1000);
    // Without an owner: root, as before.
    const plain = tarOf([{ name: 'etc/x', content: 'y' }]);
    expect(parseInt(plain.subarray(108, 116).toString('ascii'), 8)).toBe(0);
    expect(parseInt(plain.subarray(100, 108).toString('ascii'), 8)).toBe(0o755);
  });
});
