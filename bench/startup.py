#!/usr/bin/env python3
"""Start-up of `airlock exec` (and with --run, `airlock run`), for one or more builds of the CLI.

    python3 bench/startup.py [--runs N] [--run] [NAME=path/to/dist/cli/main.cjs ...]

Interleaved runs (each round runs every case once, so a drift in the machine's speed hits all of
them alike); per case the median and range of the wall time, of the process's own CPU time (user
+ system, from wait4: another process's load lengthens wall time far more than CPU time), and for
the cases that send a request, the time from launch to that request arriving at an HTTPS upstream
on this host, i.e. to the first byte the command sends through the proxy. Without NAME=path: this
checkout's dist/cli/main.cjs (the installed command). --run needs Docker and the images `airlock-agent:test` and
`airlock-relay:latest` (the tests build them); it runs the default network mode (the relay).
Everything stays on this machine: the upstream is on 127.0.0.1, named bench.test by --resolve.
"""
import argparse, json, os, shutil, ssl, statistics, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shebang_flags(main):
    first = open(main).readline().strip()
    prefix = '#!/usr/bin/env -S node'
    return first[len(prefix):].split() if first.startswith(prefix) else []


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', type=int, default=9)
    ap.add_argument('--run', action='store_true', help='also `airlock run -- curl` (Docker)')
    ap.add_argument('builds', nargs='*', help='NAME=path/to/main.js')
    args = ap.parse_args()
    builds = {name: os.path.abspath(path) for name, path in (b.split('=', 1) for b in args.builds)} or {'this': os.path.join(ROOT, 'dist', 'cli', 'main.cjs')}

    work = tempfile.mkdtemp(prefix='airlock-startup-')
    os.chmod(work, 0o755)  # a launcher's relay reads the CA file
    try:
        cert, key = os.path.join(work, 'cert.pem'), os.path.join(work, 'key.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
                        '-days', '2', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test'], check=True, capture_output=True)
        os.chmod(cert, 0o644)
        arrivals = []

        class Upstream(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_GET(self):
                arrivals.append(time.perf_counter())
                body = b'x' * 1024
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        server = ThreadingHTTPServer(('127.0.0.1', 0), Upstream)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        policy = os.path.join(work, 'policy.yaml')
        with open(policy, 'w') as f:
            f.write(f'version: 1\nname: startup-bench\nallow:\n  - host: bench.test\n    ports: [{port}, 443]\n')
        os.chmod(policy, 0o644)

        url = f'https://bench.test:{port}/1k'
        curl = ['curl', '-sS', '-o', '/dev/null', '--fail']
        cases = {'node -e 0': ['node', '-e', '0'], 'curl, direct': curl + ['--cacert', cert, '--resolve', f'bench.test:{port}:127.0.0.1', url]}
        for name, main_js in builds.items():
            node = ['node', *shebang_flags(main_js), main_js]
            state = os.path.join(work, f'state-{len(cases)}')
            exec_ = node + ['exec', '--state-dir', state, '--policy', policy]
            cases[f'{name}: exec -- true'] = exec_ + ['--', 'true']
            cases[f'{name}: exec -- curl'] = exec_ + ['--resolve', f'bench.test:{port}:127.0.0.1', '--upstream-ca', cert, '--', *curl, url]
            # The upstream's CA in NODE_EXTRA_CA_CERTS instead of --upstream-ca: the proxy then
            # verifies against Node's default store, as a user without --upstream-ca has it.
            cases[f'{name}: exec -- curl, CA in NODE_EXTRA_CA_CERTS'] = (exec_ + ['--resolve', f'bench.test:{port}:127.0.0.1', '--', *curl, url], {'NODE_EXTRA_CA_CERTS': cert})
            if args.run:
                cases[f'{name}: run -- curl'] = node + ['run', '--policy', policy, '--image', 'airlock-agent:test', '--state-dir', state,
                                                        '--resolve', f'bench.test:443:127.0.0.1:{port}', '--upstream-ca', cert, '--', *curl, 'https://bench.test/1k']
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith('_proxy') and not k.startswith('AIRLOCK_')}
        results = {name: {'wall': [], 'cpu': [], 'request': []} for name in cases}
        load = os.getloadavg()[0]
        for _ in range(args.runs):
            for name, case in cases.items():
                argv, extra_env = case if isinstance(case, tuple) else (case, {})
                arrivals.clear()
                t0 = time.perf_counter()
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**env, **extra_env}, cwd=work)
                err = child.stderr.read()
                _, status, usage = os.wait4(child.pid, 0)
                wall = (time.perf_counter() - t0) * 1000
                if os.waitstatus_to_exitcode(status) != 0:
                    sys.exit(f'{name}: exit {os.waitstatus_to_exitcode(status)}: {err[-600:].decode(errors="replace")}')
                results[name]['wall'].append(wall)
                results[name]['cpu'].append((usage.ru_utime + usage.ru_stime) * 1000)
                if arrivals:
                    results[name]['request'].append((arrivals[0] - t0) * 1000)

        def cell(v):
            return f'{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})' if v else ''

        print(f'\n{args.runs} interleaved runs, 1-min load average {load:.2f} -> {os.getloadavg()[0]:.2f}; median (range), ms\n')
        print('| command | wall | CPU (user+sys) | request at the upstream |\n|---|---:|---:|---:|')
        for name, r in results.items():
            print(f'| `{name}` | {cell(r["wall"])} | {cell(r["cpu"])} | {cell(r["request"])} |')
        out = os.environ.get('STARTUP_JSON')
        if out:
            with open(out, 'w') as f:
                json.dump({'runs': args.runs, 'load': load, 'results': results}, f, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
