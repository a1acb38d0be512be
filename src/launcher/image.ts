// Agent images: `airlock image build` (the images/agent context, sent as a tar the CLI assembles)
// and `airlock doctor` (checks run inside a throwaway container of an image, locked down the way a
// session's container is). Docker only: files and flags are read by the CLI and passed in.
import type Docker from 'dockerode';
import { makeDoctorCa } from './doctor-ca.js';
import { tarOf } from './tar.js';
import type { TarFile } from './tar.js';
import { CA_ENV_VARS, CA_PATH_IN_CONTAINER } from '../sessions/client-env.js';
import { isRootUser, readImageUser, UNPRIVILEGED_USER } from './user.js';
import type { ImageUser } from './user.js';
import { profileCheckNames, profileChecks } from './doctor-profiles.js';
import type { DoctorProfile } from './doctor-profiles.js';
import type { Check } from './check.js';

export type { TarFile } from './tar.js';

/** The build context file that carries an optional build CA (see images/agent/Dockerfile). */
export const BUILD_CA_NAME = 'build-ca.pem';

export class ImageError extends Error {}

// ---------------------------------------------------------------------------------------------
// build

export interface BuildOptions {
  readonly tag: string;
  /** The context: Dockerfile, entrypoint.sh, ... (names relative to the context root). */
  readonly files: readonly TarFile[];
  /** PEM certificate(s) npm must trust during the build (a TLS-inspecting network's CA). */
  readonly buildCaPem?: string;
  readonly noCache?: boolean;
  readonly buildArgs?: Readonly<Record<string, string>>;
  /** Build output as it arrives (the builder's own text). */
  readonly onOutput: (text: string) => void;
}

export interface BuildResult {
  readonly id: string;
  readonly tag: string;
}

/**
 * What is wrong with a build CA, to follow its name in a message ("holds no PEM certificate"), or
 * undefined: it must hold a certificate and no private key.
 */
export function buildCaProblem(pem: string): string | undefined {
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) return 'holds no PEM certificate';
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) return 'holds a private key: pass only the certificate';
  return undefined;
}

/** The context tar: the given files, plus the build CA under BUILD_CA_NAME when there is one. */
export function buildContext(files: readonly TarFile[], buildCaPem?: string): Buffer {
  const entries = files.filter((f) => f.name !== BUILD_CA_NAME);
  if (!entries.some((f) => f.name === 'Dockerfile')) throw new ImageError('the build context has no Dockerfile');
  if (buildCaPem !== undefined) {
    const problem = buildCaProblem(buildCaPem);
    if (problem) throw new ImageError(`the build CA ${problem}`);
    entries.push({ name: BUILD_CA_NAME, content: buildCaPem, mode: 0o644 });
  }
  return tarOf(entries);
}

/** Builds an image with the engine's classic builder (no BuildKit needed), streaming its output. */
export async function buildAgentImage(docker: Docker, o: BuildOptions): Promise<BuildResult> {
  const context = buildContext(o.files, o.buildCaPem);
  const stream = (await docker.buildImage(context as unknown as NodeJS.ReadableStream, {
    t: o.tag,
    nocache: o.noCache ?? false,
    rm: true,
    forcerm: true,
    buildargs: { ...(o.buildArgs ?? {}) },
    version: '1',
  } as Docker.ImageBuildOptions)) as NodeJS.ReadableStream;

  let id = '';
  let error: string | undefined;
  let pending = '';
  const handle = (line: string) => {
    if (!line.trim()) return;
    let message: { stream?: string; error?: string; errorDetail?: { message?: string }; aux?: { ID?: string }; status?: string };
    try {
      message = JSON.parse(line);
    } catch {
      o.onOutput(line + '\n');
      return;
    }
    if (message.stream) o.onOutput(message.stream);
    else if (message.status) o.onOutput(message.status + '\n');
    if (message.aux?.ID) id = message.aux.ID;
    if (message.error || message.errorDetail) error = message.errorDetail?.message ?? message.error;
  };
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let cut: number;
      while ((cut = pending.indexOf('\n')) >= 0) {
        handle(pending.slice(0, cut));
        pending = pending.slice(cut + 1);
      }
    });
    stream.on('end', () => {
      handle(pending);
      resolve();
    });
    stream.on('error', reject);
  });
  if (error) throw new ImageError(`image build failed: ${error.trim()}`);
  if (!id) id = String((await docker.getImage(o.tag).inspect()).Id);
  return { id, tag: o.tag };
}

// ---------------------------------------------------------------------------------------------
// doctor

export type { Check };

export interface DoctorOptions {
  readonly image: string;
  /** uid:gid the checks run as: not root, and not the image's own user, like a session. */
  readonly user?: string;
  /** Seconds to wait for the checks before giving up. */
  readonly timeoutSeconds?: number;
  /** Another launcher's image guide whose requirements are checked too (doctor --for). */
  readonly profile?: DoctorProfile;
}

const FIXES: Record<string, string> = {
  entrypoint: 'make the image\'s ENTRYPOINT end with `exec "$@"` (the Airlock image uses tini + airlock-entrypoint: `airlock image build`)',
  bash: 'install bash: apt-get install -y bash',
  curl: 'install curl: apt-get install -y curl ca-certificates',
  git: 'install git: apt-get install -y git',
  workspace: 'make /workspace writable by any uid: mkdir -p /workspace && chmod 1777 /workspace',
  'agent-cli':
    'install an agent CLI: apt-get install -y nodejs npm && npm install -g @anthropic-ai/claude-code (or @openai/codex); `airlock image build` makes an image with Claude Code',
  'default-user':
    `end the Dockerfile with a non-root user, e.g. \`RUN useradd --uid 1000 --create-home agent\` then \`USER agent\` (root starting \`airlock run\` without sudo then runs sessions as that user instead of ${UNPRIVILEGED_USER}, which has no home in the image)`,
  'ca-trust:no-client': 'install curl and the CA store: apt-get install -y curl ca-certificates',
  'ca-trust:no-server': 'install openssl (the doctor serves its test endpoint with it): apt-get install -y openssl ca-certificates',
  'ca-trust':
    'keep SSL_CERT_FILE, CURL_CA_BUNDLE, GIT_SSL_CAINFO, NODE_EXTRA_CA_CERTS and REQUESTS_CA_BUNDLE as the session sets them (do not reset them in the image or its entrypoint), and install ca-certificates: apt-get install -y ca-certificates',
};
const ORDER = ['entrypoint', 'default-user', 'bash', 'curl', 'git', 'workspace', 'agent-cli', 'ca-trust'];

const TAG = '@@airlock-doctor';
// POSIX sh (the bare Debian base has only dash): one `TAG<TAB>name<TAB>PASS|FAIL<TAB>detail` line per check.
const SCRIPT = String.raw`
set -u
report() { key=""; if [ $# -ge 4 ]; then key=$4; fi; printf '@@airlock-doctor\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$key"; }
have() { command -v "$1" >/dev/null 2>&1; }
line1() { head -n 1 | tr -d '\r\t' | cut -c1-160; }
me="uid $(id -u):$(id -g)"

report entrypoint PASS "runs the given command, as $me"

if have bash; then report bash PASS "$(bash --version 2>&1 | line1)"; else report bash FAIL "bash is not on PATH"; fi

for tool in curl git; do
  if ! have "$tool"; then report "$tool" FAIL "$tool is not on PATH"
  elif out=$("$tool" --version 2>&1); then report "$tool" PASS "$(printf '%s\n' "$out" | line1 | cut -d' ' -f1-3)"
  else report "$tool" FAIL "$tool --version failed: $(printf '%s\n' "$out" | line1)"; fi
done

if [ ! -d /workspace ]; then
  report workspace FAIL "/workspace does not exist"
else
  probe=/workspace/.airlock-doctor-$$
  if (: > "$probe") 2>/dev/null && rm -f "$probe"; then report workspace PASS "/workspace is writable by $me"
  else report workspace FAIL "/workspace is not writable by $me ($(ls -ld /workspace | cut -d' ' -f1,3,4))"; fi
fi

found=""; broken=""; sep=""; bsep=""
for cli in claude codex; do
  have "$cli" || continue
  if out=$(timeout 60 "$cli" --version </dev/null 2>&1); then found="$found$sep$cli $(printf '%s\n' "$out" | line1)"; sep=", "
  else broken="$broken$bsep$cli --version failed: $(printf '%s\n' "$out" | line1)"; bsep="; "; fi
done
if [ -n "$found" ]; then report agent-cli PASS "$found"
elif [ -n "$broken" ]; then report agent-cli FAIL "$broken"
else report agent-cli FAIL "neither claude nor codex is on PATH"; fi

ca=/etc/airlock/ca.pem; leaf=/etc/airlock-doctor/leaf.pem; key=/etc/airlock-doctor/leaf-key.pem
port=8443; url=https://127.0.0.1:$port/
ca_trust() {
  if ! [ -r "$ca" ]; then report ca-trust FAIL "$ca cannot be read by $me"; return; fi
  clients=""
  for c in curl git node python3; do have "$c" && clients="$clients $c"; done
  if [ -z "$clients" ]; then report ca-trust FAIL "no TLS client (curl, git, node or python3) in the image to test with" no-client; return; fi
  if have openssl; then
    openssl s_server -quiet -www -accept "127.0.0.1:$port" -cert "$leaf" -key "$key" >/dev/null 2>&1 &
  elif have node; then
    node -e 'const fs = require("fs"); require("https").createServer({ cert: fs.readFileSync(process.argv[1]), key: fs.readFileSync(process.argv[2]) }, (q, s) => s.end("ok")).listen(+process.argv[3], "127.0.0.1")' "$leaf" "$key" "$port" >/dev/null 2>&1 &
  elif have python3; then
    python3 -c 'import http.server, ssl, sys
s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[3])), http.server.SimpleHTTPRequestHandler)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = c.wrap_socket(s.socket, server_side=True); s.serve_forever()' "$leaf" "$key" "$port" >/dev/null 2>&1 &
  else
    report ca-trust FAIL "no openssl, node or python3 in the image to serve a test TLS endpoint" no-server; return
  fi
  server=$!
  i=0
  while [ $i -lt 50 ]; do
    if have curl; then curl -ks -o /dev/null --max-time 2 "$url" && break; sleep 0.2
    else sleep 2; break; fi
    i=$((i + 1))
  done
  trusted=""; tsep=""; failed=""; fsep=""
  for c in $clients; do
    case $c in
      curl) out=$(curl -sS --max-time 10 -o /dev/null "$url" 2>&1) ;;
      git) out=$(GIT_TERMINAL_PROMPT=0 timeout 20 git ls-remote "$url" 2>&1)
           if printf '%s' "$out" | grep -qiE 'certificate|ssl|tls'; then false; else true; fi ;;
      node) out=$(timeout 20 node -e 'require("https").get(process.argv[1], (r) => { r.resume(); r.on("end", () => process.exit(0)); }).on("error", (e) => { console.error(e.code || e.message); process.exit(1); })' "$url" 2>&1) ;;
      python3) out=$(timeout 20 python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10).read()' "$url" 2>&1) ;;
    esac
    if [ $? -eq 0 ]; then trusted="$trusted$tsep$c"; tsep=", "
    else
      # python's last line says why; the others say it first
      if [ "$c" = python3 ]; then why=$(printf '%s\n' "$out" | tail -n 1); else why=$(printf '%s\n' "$out" | head -n 1); fi
      failed="$failed$fsep$c ($(printf '%s\n' "$why" | line1))"; fsep=", "
    fi
  done
  kill "$server" 2>/dev/null
  if [ -n "$failed" ]; then report ca-trust FAIL "a test CA at $ca is not trusted by $failed"
  else report ca-trust PASS "a test CA at $ca is trusted by $trusted"; fi
}
ca_trust

tools=$(printenv AIRLOCK_DOCTOR_TOOLS || true)
if [ -n "$tools" ]; then
  missing=""
  for t in $tools; do have "$t" || missing="$missing $t"; done
  if [ -z "$missing" ]; then report tools PASS "$tools on PATH"; else report tools FAIL "not on PATH:$missing"; fi
fi
`;

function demux(buffer: Buffer): string {
  // Non-TTY logs: 8-byte frames (stream, 0, 0, 0, length BE) before each chunk.
  let out = '';
  let at = 0;
  while (at + 8 <= buffer.length) {
    const length = buffer.readUInt32BE(at + 4);
    out += buffer.subarray(at + 8, at + 8 + length).toString('utf8');
    at += 8 + length;
  }
  return out;
}

/**
 * Runs the checks in a throwaway container of `image`: a non-root uid the image does not know,
 * all capabilities dropped, no-new-privileges, no network, the image's own entrypoint, and a
 * test CA copied to /etc/airlock/ca.pem with the CA variables set the way a session sets them.
 */
export async function runDoctor(docker: Docker, o: DoctorOptions): Promise<Check[]> {
  try {
    await docker.getImage(o.image).inspect();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) {
      throw new ImageError(`image ${o.image} not found (airlock doctor does not pull): build one with \`airlock image build\` or pull it first`);
    }
    throw err;
  }
  const user = o.user ?? '4242:4242';
  const defaultUser = defaultUserCheck(await readImageUser(docker, o.image), o.profile);
  const ca = await makeDoctorCa();
  const container = await docker.createContainer({
    Image: o.image,
    Cmd: ['sh', '-c', SCRIPT],
    User: user,
    Env: [
      ...CA_ENV_VARS.map((name) => `${name}=${CA_PATH_IN_CONTAINER}`),
      ...(o.profile?.tools.length ? [`AIRLOCK_DOCTOR_TOOLS=${o.profile.tools.join(' ')}`] : []),
    ],
    Labels: { 'airlock.doctor': '1' },
    Tty: false,
    HostConfig: {
      NetworkMode: 'none',
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      Privileged: false,
      Init: false,
    },
  });
  let output = '';
  let status: number | undefined;
  try {
    await container.putArchive(
      tarOf([
        { name: CA_PATH_IN_CONTAINER.slice(1), content: ca.caPem, mode: 0o644 },
        { name: 'etc/airlock-doctor/leaf.pem', content: ca.leafPem, mode: 0o644 },
        // A throwaway key for a throwaway certificate: readable by the unprivileged test user.
        { name: 'etc/airlock-doctor/leaf-key.pem', content: ca.leafKeyPem, mode: 0o644 },
      ]),
      { path: '/' },
    );
    await container.start();
    const timeoutMs = (o.timeoutSeconds ?? 180) * 1000;
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      container.wait() as Promise<{ StatusCode: number }>,
      new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (result === null) await container.kill().catch(() => {});
    else status = result.StatusCode;
    output = demux((await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer);
  } finally {
    await container.remove({ force: true, v: true }).catch(() => {});
  }

  const reported = new Map<string, Check>([['default-user', defaultUser]]);
  for (const line of output.split('\n')) {
    const [tag, name, verdict, detail = '', fixKey = ''] = line.replace(/\r$/, '').split('\t');
    if (tag !== TAG || !name || (verdict !== 'PASS' && verdict !== 'FAIL')) continue;
    const ok = verdict === 'PASS';
    const fix = FIXES[fixKey ? `${name}:${fixKey}` : name] ?? FIXES[name];
    reported.set(name, { name, ok, detail, ...(ok ? {} : { fix }) });
  }
  if (o.profile) {
    if (reported.has('tools') && !reported.get('tools')!.ok) reported.set('tools', { ...reported.get('tools')!, fix: o.profile.toolsFix });
    for (const check of await profileChecks(docker, o.image, o.profile, reported.get('entrypoint')?.ok === true)) reported.set(check.name, check);
  }
  const order = [...ORDER, ...(o.profile ? profileCheckNames(o.profile) : [])];
  const tail = output.trim().split('\n').filter((l) => !l.startsWith(TAG)).slice(-3).join(' | ');
  const missingDetail =
    status === undefined
      ? `the checks did not finish within ${o.timeoutSeconds ?? 180} s`
      : reported.size === 0
        ? `the container exited with status ${status} before running the checks${tail ? `: ${tail}` : ''}`
        : `the checks stopped early (exit status ${status})${tail ? `: ${tail}` : ''}`;
  return order.map((name) => reported.get(name) ?? { name, ok: false, detail: missingDetail, fix: FIXES[name] ?? (name === 'tools' ? o.profile?.toolsFix : undefined) });
}

/** The image's own USER must not be root: it is who a root-started session runs as. */
function defaultUserCheck(u: ImageUser, profile: DoctorProfile | undefined): Check {
  const resolved = u.uid === undefined ? 'not defined in its /etc/passwd' : `uid ${u.uid}:${u.gid ?? u.uid}`;
  if (!isRootUser(u)) return { name: 'default-user', ok: true, detail: `the image runs as ${u.declared} (${resolved}), not root` };
  if (u.declared === '' && profile?.noUser) {
    return { name: 'default-user', ok: true, detail: `no USER, as ${profile.name}'s guide says: a root-started session runs as ${UNPRIVILEGED_USER}` };
  }
  const said = u.declared === '' ? 'the image names no USER, so it runs as root' : `the image runs as ${u.declared} (${u.uid === 0 ? 'root' : resolved})`;
  return { name: 'default-user', ok: false, detail: said, fix: FIXES['default-user'] };
}

/** One line per check: `PASS name — detail` or `FAIL name — detail; fix: ...`. */
export function formatCheck(check: Check): string {
  const head = `${check.ok ? 'PASS' : 'FAIL'} ${check.name.padEnd(10)} — ${check.detail}`;
  return check.ok || !check.fix ? head : `${head}; fix: ${check.fix}`;
}
