// What the proxy reads out of a request target and head for decide(): the path as sent next to the
// resolved one, and the method overrides a request carries.
import { describe, expect, it } from 'vitest';
import { methodOverrides, normalisePath } from '../../src/proxy/target.js';

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

describe('methodOverrides', () => {
  const h = (...pairs: string[]) => pairs;

  it('finds none in an ordinary request', () => {
    expect(methodOverrides(h('Host', 'x', 'Accept', '*/*', 'X-Request-Id', '1'), '/v1/x?per_page=10&method=DELETE')).toEqual([]);
  });

  it('reads the three override headers in any case and with "_" for "-", each occurrence, upper-cased and trimmed', () => {
    expect(
      methodOverrides(h('x-http-method-override', 'delete', 'X-HTTP-Method', ' PUT ', 'X-METHOD-OVERRIDE', 'patch', 'X-HTTP-Method-Override', 'GET', 'X_HTTP_METHOD_OVERRIDE', 'DELETE'), '/'),
    ).toEqual([
      { via: 'header x-http-method-override', method: 'DELETE' },
      { via: 'header X-HTTP-Method', method: 'PUT' },
      { via: 'header X-METHOD-OVERRIDE', method: 'PATCH' },
      { via: 'header X-HTTP-Method-Override', method: 'GET' },
      { via: 'header X_HTTP_METHOD_OVERRIDE', method: 'DELETE' },
    ]);
  });

  it.each([
    ['/x?_method=DELETE', ['DELETE']],
    ['/x?a=1&_method=delete&b=2', ['DELETE']],
    ['/x?%5Fmethod=put', ['PUT']],
    ['/x?_%6d%65thod=put', ['PUT']],
    ['/x?_method=%44ELETE', ['DELETE']],
    ['/x?_method=DELETE+', ['DELETE']],
    ['/x?_METHOD=Delete', ['DELETE']],
    ['/x?a=1;_method=DELETE', ['DELETE']],
    ['/x?_method[]=DELETE', ['DELETE']],
    ['/x?_method=GET&_method=DELETE', ['GET', 'DELETE']],
    ['/x?_method', ['']],
    ['/x?_method=%zzDEL', ['%ZZDEL']],
  ])('query %s → %j', (target, methods) => {
    expect(methodOverrides([], target)).toEqual(methods.map((method) => ({ via: 'query parameter _method', method })));
  });

  it.each(['/x?method=DELETE', '/x?x_method=DELETE', '/x?_methods=DELETE', '/x/_method=DELETE', '/x?q=_method%3DDELETE'])('%s carries no override', (target) => {
    expect(methodOverrides([], target)).toEqual([]);
  });
});
