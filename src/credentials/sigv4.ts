// AWS Signature Version 4, signed again on the host. The session holds placeholder keys and signs
// with them as usual; a request to a host the credential is bound to whose Authorization names the
// placeholder key id is stripped of that signature (nothing of it is checked: it proves nothing)
// and signed again with the real keys by @smithy/signature-v4, with the proxy's clock. The real
// secret key never leaves this file's signer; the real key id and session token go only to the
// bound hosts and are scrubbed from answers like any secret.
//
// Region and service are the ones the client put in its credential scope, and must fit the host
// (a request to s3.us-east-1.amazonaws.com cannot be signed for eu-west-1 or for sts). Presigned
// URLs (the signature in the query) are refused: a real presigned URL is a bearer credential for
// up to a week, and it would sit in a path that servers log and echo.
import { randomBytes } from 'node:crypto';
import type { SignatureV4 } from '@smithy/signature-v4';
import type { AwsSource, CredentialSpec } from '../policy/index.js';
import { KnownValues } from './known-values.js';
import { BodyTooLarge } from './broker.js';
import type { OutgoingRequest, RequestSigner, SignOutcome } from './broker.js';
import type { SecretHandle } from './session-broker.js';
import { MintingFailed, SecretSourceError } from './minting.js';

/** Bodies hashed for signing are read whole, up to this. */
export const MAX_SIGNED_BODY_BYTES = 32 * 1024 * 1024;
// node:crypto's SHA-256 and HMAC (the signer's HashConstructor shape).
// The AWS libraries load at the first signature or profile read: a session without an aws:
// credential never pays for them at start.
let smithy: Promise<{ SignatureV4: typeof SignatureV4; Sha256: new (secret?: unknown) => unknown }> | null = null;
const signingLibrary = () =>
  (smithy ??= Promise.all([import('@smithy/signature-v4'), import('@smithy/hash-node')]).then(([sig, hash]) => ({
    SignatureV4: sig.SignatureV4,
    Sha256: hash.Hash.bind(null, 'sha256') as unknown as new (secret?: unknown) => unknown,
  })));
/** Bytes one session may have in bodies being read for signing at once. */
export const SESSION_SIGNED_BODY_BUDGET = 64 * 1024 * 1024;
/** AWS refuses signatures whose time is more than 5 minutes off its own. */
const SKEW_LIMIT_MS = 5 * 60_000;
/** Credentials without an expiry (a profile's static keys) are read again after this. */
const STATIC_TTL_MS = 5 * 60_000;

interface AwsKeys {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration?: Date;
}

const SCOPE_RE = /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,64})\/aws4_request\s*,/;
const REGION_LABEL_RE = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$/;
const HEX_HASH_RE = /^[0-9a-fA-F]{64}$/;
const PASSED_PAYLOAD_FORMS = new Set(['UNSIGNED-PAYLOAD', 'STREAMING-UNSIGNED-PAYLOAD-TRAILER']);
// Endpoint prefixes that sign under another service name.
const SERVICE_HOST_LABELS: Readonly<Record<string, readonly string[]>> = {
  bedrock: ['bedrock', 'bedrock-runtime', 'bedrock-agent', 'bedrock-agent-runtime'],
  s3: ['s3', 's3-accesspoint', 's3-fips', 's3-control', 's3-external-1', 's3-website'],
};
// Headers the proxy sets itself; the client's are dropped (all copies).
const REPLACED = new Set(['authorization', 'x-amz-date', 'x-amz-security-token', 'host']);

/** Why a credential scope does not fit the host it is sent to, or null. */
export function scopeMisfit(host: string, region: string, service: string): string | null {
  const labels = host.toLowerCase().split('.');
  const regionLabels = labels.filter((l) => REGION_LABEL_RE.test(l));
  const regionFits = regionLabels.length > 0 ? regionLabels.includes(region) : region === 'us-east-1';
  if (!regionFits) return `region ${region} does not fit ${host}`;
  const names = SERVICE_HOST_LABELS[service] ?? [service];
  // The service name is a label of the host, before its region (bucket.s3.us-east-1..., sts.amazonaws.com).
  const end = regionLabels.length > 0 ? labels.indexOf(regionLabels[0]!) : labels.length;
  if (!labels.slice(0, end).some((l) => names.includes(l))) return `service ${service} does not fit ${host}`;
  return null;
}

/** Query parameters, decoded, for the canonical query the signer builds (it encodes them again). */
function queryOf(pathWithQuery: string): Record<string, string | string[]> {
  const q = pathWithQuery.indexOf('?');
  const out: Record<string, string | string[]> = {};
  if (q === -1) return out;
  for (const part of pathWithQuery.slice(q + 1).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = decodeURIComponent(eq === -1 ? part : part.slice(0, eq));
    const value = eq === -1 ? '' : decodeURIComponent(part.slice(eq + 1));
    const prev = out[key];
    out[key] = prev === undefined ? value : ([] as string[]).concat(prev, value);
  }
  return out;
}

function keysProvider(spec: CredentialSpec, source: AwsSource, env: NodeJS.ProcessEnv): () => Promise<AwsKeys> {
  if (source.profile === null) {
    const accessKeyId = env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) {
      throw new SecretSourceError(
        `credential "${spec.name}": its AWS keys come from the environment, but ${!accessKeyId ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} is not set. Export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys) before starting airlock, or use secret: { aws: { profile: NAME } }.`,
      );
    }
    const keys: AwsKeys = { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN || undefined };
    return async () => keys;
  }
  const profile = source.profile;
  type Provider = ReturnType<typeof import('@aws-sdk/credential-providers').fromIni>;
  let provider: Promise<Provider> | null = null;
  const read = async () => {
    provider ??= import('@aws-sdk/credential-providers').then(({ fromIni }) =>
      fromIni({ profile, filepath: env.AWS_SHARED_CREDENTIALS_FILE, configFilepath: env.AWS_CONFIG_FILE, ignoreCache: true }),
    );
    return (await provider)();
  };
  let cached: { keys: AwsKeys; until: number } | null = null;
  let running: Promise<AwsKeys> | null = null;
  return async () => {
    if (cached && Date.now() < cached.until) return cached.keys;
    running ??= read()
      .then(
        (keys) => {
          const until = keys.expiration ? keys.expiration.getTime() - SKEW_LIMIT_MS : Date.now() + STATIC_TTL_MS;
          cached = { keys, until };
          return keys as AwsKeys;
        },
        (err: Error) => {
          // The SDK's message names the profile and what is wrong with it, never a key.
          const why = `AWS profile ${profile} gave no usable keys (${err.name}: ${err.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 300)})`;
          throw new MintingFailed(
            `credential "${spec.name}": ${why}`,
            spec.name,
            `Airlock: credential "${spec.name}" (AWS keys of the host's profile ${profile}) is unavailable: the profile gave no usable keys. The operator must fix the profile (aws configure / aws sso login --profile ${profile}); details are in the proxy log.`,
            false,
          );
        },
      )
      .finally(() => (running = null));
    return running;
  };
}

export function awsSigner(spec: CredentialSpec, source: AwsSource, env: NodeJS.ProcessEnv): SecretHandle {
  const keys = keysProvider(spec, source, env);
  // Three values per key set (key id, secret, session token): room for eight sets.
  const known = new KnownValues(24);
  const remember = (k: AwsKeys) => {
    for (const v of [k.accessKeyId, k.secretAccessKey, k.sessionToken]) if (v) known.add(v);
    return k;
  };
  // The secret key the session signs with: any value works, it is never checked.
  const secretPlaceholder = `airlock-${spec.name}-secret-${randomBytes(16).toString('hex')}`;
  const sessionTokenPlaceholder = `airlock-${spec.name}-session-${randomBytes(16).toString('hex')}`;

  // Bodies read to be hashed are held in memory: a session may not have more than this at once.
  const budget = { left: SESSION_SIGNED_BODY_BUDGET };
  const signer: RequestSigner = {
    sessionEnv(names, placeholder) {
      const out: Record<string, string> = {};
      for (const name of names) {
        out[name] = name === 'AWS_SECRET_ACCESS_KEY' ? secretPlaceholder : name === 'AWS_SESSION_TOKEN' ? sessionTokenPlaceholder : placeholder;
      }
      return out;
    },

    async resign(request, placeholder, refusal) {
      return resign(spec, request, placeholder, refusal, async () => remember(await keys()), budget);
    },
  };

  return {
    current: async () => remember(await keys()).secretAccessKey,
    known: () => known.list(),
    signer,
  };
}

// Signers by keys, region and service: each caches its derived signing keys.
const signers = new WeakMap<AwsKeys, Map<string, SignatureV4>>();

async function signerFor(real: AwsKeys, region: string, service: string): Promise<SignatureV4> {
  const { SignatureV4, Sha256 } = await signingLibrary();
  let byScope = signers.get(real);
  if (!byScope) signers.set(real, (byScope = new Map()));
  const key = `${region}/${service}`;
  let signer = byScope.get(key);
  if (!signer) {
    if (byScope.size >= 64) byScope.clear();
    signer = new SignatureV4({
      credentials: { accessKeyId: real.accessKeyId, secretAccessKey: real.secretAccessKey, sessionToken: real.sessionToken },
      region,
      service,
      sha256: Sha256 as never,
      // S3 signs the path as sent; every other service encodes it once more.
      uriEscapePath: service !== 's3',
      applyChecksum: service === 's3',
    });
    byScope.set(key, signer);
  }
  return signer;
}

async function resign(
  spec: CredentialSpec,
  request: OutgoingRequest,
  placeholder: string,
  refusal: string | null,
  keys: () => Promise<AwsKeys>,
  budget: { left: number },
): Promise<SignOutcome | null> {
  const name = spec.name;
  const authIndexes: number[] = [];
  let scope: RegExpExecArray | null = null;
  let carried = false;
  for (let i = 0; i + 1 < request.headers.length; i += 2) {
    if (request.headers[i]!.toLowerCase() !== 'authorization') continue;
    authIndexes.push(i);
    const value = request.headers[i + 1]!;
    if (!value.includes(placeholder)) continue;
    carried = true;
    const m = SCOPE_RE.exec(value.trim());
    if (!m || m[1] !== placeholder) {
      return { kind: 'refused', where: 'header authorization', why: `credential "${name}" (AWS keys) can only be used to sign with AWS4-HMAC-SHA256 (SigV4) in the Authorization header` };
    }
    scope = m;
  }
  const q = request.pathWithQuery.indexOf('?');
  const query = q === -1 ? '' : request.pathWithQuery.slice(q);
  let queryDecoded = query;
  try {
    queryDecoded = decodeURIComponent(query);
  } catch {
    // left as is: the placeholder is plain text
  }
  if (query.includes(placeholder) || queryDecoded.includes(placeholder)) {
    if (refusal) return { kind: 'refused', where: 'query', why: refusal };
    return {
      kind: 'refused',
      where: 'query',
      why: `credential "${name}": presigned URLs (X-Amz-Credential in the query) are not signed again by Airlock, because a real presigned URL works for anyone who sees it. Send the request with SigV4 in the Authorization header instead (the AWS CLI and SDKs do, except for "aws s3 presign")`,
    };
  }
  if (!carried) return null;
  if (refusal) return { kind: 'refused', where: 'header authorization', why: refusal };
  if (authIndexes.length > 1) {
    return { kind: 'refused', where: 'header authorization', why: `credential "${name}": the request has ${authIndexes.length} Authorization headers; a SigV4 request has one` };
  }
  const [, , , region, service] = scope!;
  const misfit = scopeMisfit(request.host, region!, service!);
  if (misfit) {
    return { kind: 'refused', where: 'header authorization', why: `credential "${name}": the signature's scope (${region}/${service}) does not fit the host: ${misfit}. Sign for the region and service of the endpoint` };
  }

  // The client's headers, minus what the proxy sets; repeated names folded as AWS does.
  const headers: Record<string, string> = {};
  const names = new Map<string, string>();
  for (let i = 0; i + 1 < request.headers.length; i += 2) {
    const raw = request.headers[i]!;
    const lower = raw.toLowerCase();
    if (REPLACED.has(lower)) continue;
    const at = names.get(lower);
    if (at === undefined) {
      names.set(lower, raw);
      headers[raw] = request.headers[i + 1]!;
    } else {
      headers[at] = `${headers[at]},${request.headers[i + 1]!}`;
    }
  }
  headers.host = request.port === 443 ? request.host : `${request.host}:${request.port}`;

  const declared = names.has('x-amz-content-sha256') ? headers[names.get('x-amz-content-sha256')!]!.trim() : null;
  let body: Buffer | undefined;
  if (declared === null) {
    // No declared hash: the signature covers the body's own hash, so the body is read first.
    if (request.readBody) {
      const length = names.has('content-length') ? Number(headers[names.get('content-length')!]) : NaN;
      const reserve = Number.isSafeInteger(length) && length >= 0 ? Math.min(length, MAX_SIGNED_BODY_BYTES) : MAX_SIGNED_BODY_BYTES;
      if (reserve > budget.left) {
        return { kind: 'refused', where: 'body', why: `credential "${name}": this session already has ${SESSION_SIGNED_BODY_BUDGET - budget.left} bytes of request bodies being read to be signed, the most at once is ${SESSION_SIGNED_BODY_BUDGET}; retry when those are sent` };
      }
      budget.left -= reserve;
      try {
        body = await request.readBody(Math.min(reserve, MAX_SIGNED_BODY_BYTES));
      } catch (err) {
        if (!(err instanceof BodyTooLarge)) throw err;
        return { kind: 'refused', where: 'body', why: `credential "${name}": the request body is over ${MAX_SIGNED_BODY_BYTES} bytes, the most Airlock reads to sign; send it with x-amz-content-sha256 set (S3: UNSIGNED-PAYLOAD or the body's SHA-256)` };
      } finally {
        budget.left += reserve;
      }
    }
  } else if (!HEX_HASH_RE.test(declared) && !PASSED_PAYLOAD_FORMS.has(declared)) {
    const why = declared.startsWith('STREAMING-')
      ? `the upload's chunks are signed (x-amz-content-sha256: ${declared.slice(0, 60)}), each with the secret key, which Airlock does not sign again. Upload with an unsigned payload (the default of the AWS CLI and SDKs over HTTPS) or a hashed body`
      : `x-amz-content-sha256 is ${JSON.stringify(declared.slice(0, 60))}, not a payload hash Airlock knows (a SHA-256 in hex, UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER)`;
    return { kind: 'refused', where: 'header x-amz-content-sha256', why: `credential "${name}": ${why}` };
  }

  let parsedQuery: Record<string, string | string[]>;
  try {
    parsedQuery = queryOf(request.pathWithQuery);
  } catch {
    return { kind: 'refused', where: 'query', why: `credential "${name}": the query string is not valid percent-encoding, so it cannot be signed` };
  }
  const signer = await signerFor(await keys(), region!, service!);
  const path = q === -1 ? request.pathWithQuery : request.pathWithQuery.slice(0, q);
  const signed = await signer.sign(
    {
      method: request.method ?? 'GET',
      protocol: 'https:',
      hostname: request.host,
      port: request.port,
      path,
      query: parsedQuery,
      headers,
      body,
    },
    { signingDate: new Date(), signingRegion: region, signingService: service },
  );
  const out: string[] = [];
  for (const [k, v] of Object.entries(signed.headers)) out.push(k, String(v));
  return {
    kind: 'signed',
    headers: out,
    body,
    onResponse: (status, responseHeaders) => {
      if (status !== 400 && status !== 403) return null;
      const date = responseHeaders.date;
      const theirs = typeof date === 'string' ? Date.parse(date) : NaN;
      if (!Number.isFinite(theirs)) return null;
      const skew = theirs - Date.now();
      if (Math.abs(skew) <= SKEW_LIMIT_MS) return null;
      return `aws_clock_skew: credential "${name}": ${request.host} refused the signature and its clock is ${Math.round(Math.abs(skew) / 1000)} s ${skew > 0 ? 'ahead of' : 'behind'} this host's; AWS refuses signatures more than 5 minutes off. Set this host's clock right (NTP).`;
    },
  };
}
