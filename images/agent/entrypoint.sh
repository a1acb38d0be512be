#!/bin/sh
# Airlock agent entrypoint (run by tini as PID 1's child, so signals reach the command).
# Makes the Airlock session CA at /etc/airlock/ca.pem trusted where it can, then runs the command.
set -u
ca=/etc/airlock/ca.pem

if [ -s "$ca" ]; then
  if [ "$(id -u)" = 0 ] && [ -w /usr/local/share/ca-certificates ]; then
    # root: add it to the system store, which curl, git, python and OpenSSL read by default
    cp "$ca" /usr/local/share/ca-certificates/airlock-session.crt 2>/dev/null &&
      update-ca-certificates >/dev/null 2>&1 ||
      echo "airlock-entrypoint: could not add $ca to the system trust store" >&2
  fi
  # Sessions point SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and
  # GIT_SSL_CAINFO at the bundle themselves. Node needs its own variable even when the system
  # store has the CA, and adding to Node's roots is harmless, so default just that one.
  if [ -z "${NODE_EXTRA_CA_CERTS:-}" ]; then
    NODE_EXTRA_CA_CERTS=$ca
    export NODE_EXTRA_CA_CERTS
  fi
fi

# Sessions run as the caller's uid, which may have no home here: give it a writable one.
if [ -z "${HOME:-}" ] || [ "$HOME" = / ] || ! [ -w "$HOME" ]; then
  HOME=${TMPDIR:-/tmp}/home-$(id -u)
  mkdir -p "$HOME" 2>/dev/null
  export HOME
fi

[ "$#" -gt 0 ] || set -- bash
exec "$@"
