#!/usr/bin/env bash
# Peers for the Airlock benchmark: Squid 5.7 with ssl-bump (Debian squid-openssl) and mitmproxy 8.1
# (Debian mitmproxy), each started against local upstreams reached by name.
#
#   bench/setup.sh install
#   bench/setup.sh start squid|mitmproxy DIR UPSTREAM_CA HOSTS_FILE [PORT]
#   bench/setup.sh stop  squid|mitmproxy DIR
#
# HOSTS_FILE: lines "ADDRESS NAME [NAME...]", as in /etc/hosts. `start` prints one line:
#   <peer> port=PORT pid=PID ca=FILE
# (PID is the process whose tree is the peer: for Squid the master, which forks the worker and
# its certificate helpers.) Default ports: squid 3128, mitmproxy 3129.
#
# Traps: Squid answers 502 "Read Error" when it cannot resolve the name (it gets hosts_file, read
# only at start); Squid's minted leaf carries no IP SAN, so clients use names, not IP literals;
# Squid waits 30 s on shutdown unless told otherwise; Squid runs as user proxy, so every directory
# above DIR must be traversable by it (mktemp -d is not); mitmproxy buffers whole bodies unless
# stream_large_bodies is set, and buffers chunked responses (SSE) whatever that says unless an
# addon streams them; mitmproxy has no resolve option, so a small addon maps names at
# server_connect.
set -euo pipefail

install() {
  local need=()
  command -v squid >/dev/null || need+=(squid-openssl)
  command -v mitmdump >/dev/null || need+=(mitmproxy)
  if ((${#need[@]})); then
    echo "setup.sh: installing ${need[*]} (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  squid -v | grep -q -- '--with-openssl' || { echo "setup.sh: this squid has no OpenSSL (install squid-openssl)" >&2; exit 1; }
}

wait_port() { # PORT TRIES
  for _ in $(seq 1 "$2"); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.25; done
  return 1
}

wait_gone() { # PID
  for _ in $(seq 1 60); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done
  kill -9 "$1" 2>/dev/null || true
}

# Both peers hold a client and an upstream socket per tunnel: 1,000 idle tunnels need more than
# the usual soft limit of 1024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cmd=${1:?install|start|stop}
if [[ $cmd == install ]]; then install; exit 0; fi
peer=${2:?squid|mitmproxy}
dir=${3:?DIR}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

case "$cmd:$peer" in
stop:squid)
  if [[ -f $dir/squid.conf ]]; then
    pid=$(cat "$dir/squid/squid.pid" 2>/dev/null || true)
    squid -f "$dir/squid.conf" -k shutdown 2>/dev/null || true
    [[ -n $pid ]] && wait_gone "$pid"
  fi
  ;;
stop:mitmproxy)
  if [[ -f $dir/mitm.pid ]]; then
    pid=$(cat "$dir/mitm.pid")
    kill "$pid" 2>/dev/null || true
    wait_gone "$pid"
    rm -f "$dir/mitm.pid"
  fi
  ;;
start:squid)
  upstream_ca=${4:?UPSTREAM_CA}; hosts=${5:?HOSTS_FILE}; port=${6:-3128}
  install
  sq=$dir/squid; rm -rf "$sq"; mkdir -p "$sq"
  # SQUID_ACCESS_LOG=1: Squid logs each request (its default squid format) to a file, as Airlock
  # audits each one; off by default, so the Squid figures are Squid's cheapest.
  access_log="access_log none"; [[ ${SQUID_ACCESS_LOG:-} == 1 ]] && access_log="access_log stdio:$sq/access.log squid"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "/CN=bench squid CA" \
    -keyout "$sq/ca.key" -out "$sq/ca.crt" 2>/dev/null
  cat "$sq/ca.crt" "$sq/ca.key" >"$sq/ca.pem"; cp "$upstream_ca" "$sq/upstream-ca.pem"; cp "$hosts" "$sq/hosts"
  /usr/lib/squid/security_file_certgen -c -s "$sq/ssl_db" -M 16MB >/dev/null
  cat >"$dir/squid.conf" <<CONF
http_port 127.0.0.1:$port ssl-bump tls-cert=$sq/ca.pem generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s $sq/ssl_db -M 16MB
sslcrtd_children 5
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile=$sq/upstream-ca.pem
http_access allow localhost
http_access deny all
cache deny all
$access_log
hosts_file $sq/hosts
pid_filename $sq/squid.pid
cache_log $sq/cache.log
coredump_dir $sq
shutdown_lifetime 1 seconds
max_filedescriptors 16384
CONF
  chown -R proxy:proxy "$sq"
  su -s /bin/sh proxy -c "test -r '$dir/squid.conf' && test -r '$sq/ca.pem'" ||
    { echo "setup.sh: user proxy cannot read $dir (chmod a+x on it and its parents)" >&2; exit 1; }
  squid -f "$dir/squid.conf"
  wait_port "$port" 60 || { echo "setup.sh: squid did not start; see $sq/cache.log" >&2; tail -20 "$sq/cache.log" >&2; exit 1; }
  for _ in $(seq 1 20); do [[ -s $sq/squid.pid ]] && break; sleep 0.25; done
  echo "squid port=$port pid=$(cat "$sq/squid.pid") ca=$sq/ca.crt"
  ;;
start:mitmproxy)
  upstream_ca=${4:?UPSTREAM_CA}; hosts=${5:?HOSTS_FILE}; port=${6:-3129}
  install
  mp=$dir/mitmproxy; mkdir -p "$mp"
  cat >"$mp/bench_addon.py" <<'PY'
import os
MAP = {n: a for a, *names in (l.split() for l in open(os.environ["BENCH_HOSTS"]) if l.strip() and not l.startswith("#")) for n in names}
def server_connect(data):
    host, port = data.server.address
    if host in MAP:
        data.server.address = (MAP[host], port)
def responseheaders(flow):
    # stream_large_bodies does not apply to chunked responses of unknown size: stream SSE as a
    # mitmproxy user serving event streams would.
    if flow.response.headers.get("content-type", "").startswith("text/event-stream"):
        flow.response.stream = True
PY
  BENCH_HOSTS=$hosts nohup mitmdump --listen-host 127.0.0.1 -p "$port" --set confdir="$mp" \
    --set ssl_verify_upstream_trusted_ca="$upstream_ca" --set stream_large_bodies=1m \
    -s "$mp/bench_addon.py" -q >"$mp/mitm.log" 2>&1 &
  echo $! >"$dir/mitm.pid"
  for _ in $(seq 1 80); do [[ -f $mp/mitmproxy-ca-cert.pem ]] && wait_port "$port" 1 && break; sleep 0.25; done
  wait_port "$port" 4 || { echo "setup.sh: mitmproxy did not start; see $mp/mitm.log" >&2; tail -20 "$mp/mitm.log" >&2; exit 1; }
  echo "mitmproxy port=$port pid=$(cat "$dir/mitm.pid") ca=$mp/mitmproxy-ca-cert.pem"
  ;;
*)
  echo "usage: $0 install | start squid|mitmproxy DIR UPSTREAM_CA HOSTS_FILE [PORT] | stop squid|mitmproxy DIR" >&2
  exit 2
  ;;
esac
