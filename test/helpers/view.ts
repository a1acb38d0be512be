// A plain HTTP client for the live view, as a browser uses it: trade the printed URL's token for
// the cookie, then GET with it. For CLI tests that check a view without starting a browser.
//
//   viewUrlIn(text)                  → the URL `airlock: live view at URL` printed, or undefined
//   viewGet(url, path, until?)       → { status, body } (an event stream: read until `until` matches)
import http from 'node:http';

export function viewUrlIn(text: string): string | undefined {
  return /live view at (http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]+)/.exec(text)?.[1];
}

function get(url: URL, path: string, cookie: string | undefined, until?: RegExp) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.get({ host: url.hostname, port: url.port, path, headers: cookie ? { Cookie: cookie } : {}, agent: false }, (res) => {
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
  });
}

export async function viewGet(printed: string, path: string, until?: RegExp): Promise<{ status: number; body: string }> {
  const url = new URL(printed);
  const traded = await get(url, url.pathname + url.search, undefined);
  if (traded.status !== 303) throw new Error(`the view did not take its token: ${traded.status} ${traded.body}`);
  const cookie = String(traded.headers['set-cookie']?.[0]).split(';')[0]!;
  const { status, body } = await get(url, path, cookie, until);
  return { status, body };
}
