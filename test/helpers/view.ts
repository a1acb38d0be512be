// A plain HTTP client for the live view, as a browser uses it: trade the printed URL's token for
// the cookie, then GET or POST with it. For CLI tests that check a view without starting a browser.
//
//   viewUrlIn(text)                  → the URL `airlock: live view at URL` printed, or undefined
//   viewGet(url, path, until?)       → { status, body } (an event stream: read until `until` matches)
//   viewPost(url, path)              → { status, body }, sent from the view's own origin
import http from 'node:http';

export function viewUrlIn(text: string): string | undefined {
  return /live view at (http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]+)/.exec(text)?.[1];
}

function request(url: URL, method: string, path: string, cookie: string | undefined, until?: RegExp) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = cookie ? { Cookie: cookie } : {};
    if (method === 'POST') Object.assign(headers, { Origin: url.origin, 'Content-Type': 'application/json' });
    const req = http.request({ method, host: url.hostname, port: url.port, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (until?.test(body)) {
          res.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? '{}' : undefined);
  });
}

async function withCookie(printed: string, method: string, path: string, until?: RegExp): Promise<{ status: number; body: string }> {
  const url = new URL(printed);
  const traded = await request(url, 'GET', url.pathname + url.search, undefined);
  if (traded.status !== 303) throw new Error(`the view did not take its token: ${traded.status} ${traded.body}`);
  const cookie = String(traded.headers['set-cookie']?.[0]).split(';')[0]!;
  const { status, body } = await request(url, method, path, cookie, until);
  return { status, body };
}

export function viewGet(printed: string, path: string, until?: RegExp): Promise<{ status: number; body: string }> {
  return withCookie(printed, 'GET', path, until);
}

export function viewPost(printed: string, path: string): Promise<{ status: number; body: string }> {
  return withCookie(printed, 'POST', path);
}
