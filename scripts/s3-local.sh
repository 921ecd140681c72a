#!/usr/bin/env bash
# Starts an S3-compatible server (moto_server, which also serves KMS) on loopback for the S3 tests and
# prints the environment they read. Used by .ci/run and by developers:
#
#   eval "$(scripts/s3-local.sh)"      # installs moto[server] if missing, starts it, exports TEST_S3_ENDPOINT
#   cargo test --workspace
#
# The server keeps nothing on disk; it stops with `kill $S3_LOCAL_PID`.
set -euo pipefail
port="${S3_LOCAL_PORT:-9321}"
endpoint="http://127.0.0.1:${port}"

if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto[server] from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' >&2
fi

if ! curl -fsS "${endpoint}/moto-api/" >/dev/null 2>&1; then
  log="${TMPDIR:-/tmp}/moto_server.${port}.log"
  nohup moto_server -H 127.0.0.1 -p "${port}" >"${log}" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "${endpoint}/moto-api/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "${endpoint}/moto-api/" >/dev/null 2>&1 || { echo "moto_server did not start; see ${log}" >&2; exit 1; }
  echo "export S3_LOCAL_PID=${pid}"
fi
echo "export TEST_S3_ENDPOINT=${endpoint}"
