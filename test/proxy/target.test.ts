// What the proxy reads out of a request target for decide(): the path as sent next to the
// resolved one.
import { describe, expect, it } from 'vitest';
import { normalisePath } from '../../src/proxy/target.js';

describe('normalisePath', () => {
  it.each([
    ['/v1/x?q=1', '/v1/x', '/v1/x', '/v1/x?q=1'],
    ['/v1/a/%2e%2e/b?q', '/v1/b', '/v1/a/%2e%2e/b', '/v1/b?q'],
    ['/v1/a\\b', '/v1/a/b', '/v1/a\\b', '/v1/a/b'],
    ['/v1/..;/admin', '/v1/..;/admin', '/v1/..;/admin', '/v1/..;/admin'],
  ])('%s: rules see %s, the raw path is %s, %s is forwarded', (sent, path, raw, forward) => {
    expect(normalisePath(sent)).toEqual({ path, raw, forward });
  });
});
