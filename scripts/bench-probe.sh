#!/usr/bin/env bash
# Per-probe cost of connrun against curl doing the same work, in the same run, on loopback.
#
# Both clients make N sequential HTTPS requests (GET PHR-04 allergy) to a real `phr-server serve` (release build),
# each on a fresh TCP+TLS connection with a client certificate and Basic auth:
#   curl        one curl process, N URLs, HTTP/1.1 with `Connection: close` so every request reconnects, and
#               `--no-sessionid` so every connection is a full mTLS handshake, as each of connrun's probes is
#               (it never resumes a session), body to /dev/null. `--http1.1` matters: curl otherwise
#               negotiates HTTP/2, drops the header and sends all N requests over one connection.
#   curl+files  the same, but keeping evidence the way the ops log did by hand (--trace-ascii, -D, -o per probe)
#   connrun     `connrun run` of a generated template with N probes, --jobs 1, full evidence tree
# It prints milliseconds per probe, connrun's peak memory, and the ratios connrun/curl.
# Usage: scripts/bench-probe.sh [N] (default 200). BENCH_CONNRUN=<path> measures that connrun binary instead of
# the fresh release build (e.g. a copy built from an older commit, for before/after numbers in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-pki.sh
n="${1:-200}"
port="${BENCH_PORT:-18443}"
ops_port="${BENCH_OPS_PORT:-19464}"
work="$(mktemp -d)"
trap 'kill "${server_pid:-0}" 2>/dev/null || true; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"' EXIT

[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release -q --workspace # the same feature set as every bench
bin="$PWD/target/release"

# PKI: CA, server (localhost / 127.0.0.1), client; RSA key for the Layer ID token.
cd "$work"
bench_pki

export PHR_DATABASE_URL="sqlite:$work/phr.db" PHR_IMAGE_STORE_DIR="$work/images" PHR_SEED_USER_PASSWORD="bench-pass"
"$bin/phr-server" seed --patients 5 >/dev/null
PHR_TLS_CERT=server.pem PHR_TLS_KEY=server.key PHR_TLS_CLIENT_CA=ca.pem PHR_LISTEN="127.0.0.1:$port" \
  PHR_OPS_LISTEN="127.0.0.1:$ops_port" PHR_LAYER_PRIVATE_KEY_PATH=layer.pem PHR_LAYER_KEY_ID=bench \
  PHR_LAYER_PROVIDER_ID=bench PHR_LOG=warn "$bin/phr-server" serve 2>server.log &
server_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$ops_port/healthz" >/dev/null && break; sleep 0.1; done

url="https://localhost:$port/openDolphin/resources/20/adm/phr/allergy/P0001"
now() { date +%s.%N; }
per_probe() { awk -v a="$1" -v b="$2" -v n="$n" 'BEGIN { printf "%.3f", (b - a) * 1000 / n }'; }

# Warm-up: first argon2 verification, page cache.
curl -fs --cacert ca.pem --cert client.pem --key client.key -u F001:bench-pass:x -o /dev/null "$url" || true
curl -fs --cacert ca.pem --cert client.pem --key client.key -u "F001:ops:bench-pass" -H "X-Trace-Id: warm" \
  -H "X-Facility-Id: F001" -o /dev/null "$url"

: >curl.cfg
: >curl-files.cfg
mkdir -p curl-evidence
# One curl operation per URL (`next`), each with its own options: options in a config file otherwise
# accumulate across URLs (every request would carry every trace header).
operation() { # url trace [evidence-name]
  printf 'url = "%s"\ncacert = "ca.pem"\ncert = "client.pem"\nkey = "client.key"\nuser = "F001:ops:bench-pass"\n' "$1"
  printf 'header = "X-Facility-Id: F001"\nheader = "Connection: close"\nheader = "X-Trace-Id: %s"\n' "$2"
  printf 'http1.1\nno-sessionid\nsilent\nshow-error\nfail\n'
  if [ -n "${3:-}" ]; then
    printf 'output = "curl-evidence/%s.body"\ndump-header = "curl-evidence/%s.headers"\n' "$3" "$3"
  else
    printf 'output = "/dev/null"\n'
  fi
}
for i in $(seq 1 "$n"); do
  if [ "$i" -gt 1 ]; then printf 'next\n' | tee -a curl.cfg >>curl-files.cfg; fi
  operation "$url" "bench-curl-$i" >>curl.cfg
  operation "$url" "bench-files-$i" "$i" >>curl-files.cfg
done

t0=$(now); curl --config curl.cfg; t1=$(now)
curl_ms=$(per_probe "$t0" "$t1")
t0=$(now); curl --trace-ascii curl-evidence/trace.log --trace-time --config curl-files.cfg; t1=$(now)
curl_files_ms=$(per_probe "$t0" "$t1")

# connrun: a template with N probes in one phase, a PEM identity, the password from the environment.
mkdir -p rt/bench
{
  printf 'schema_version = 1\nname = "bench"\nlabel = "bench"\nsuite = "bench"\n\n[[phases]]\nid = "B"\nname = "bench"\n'
  for i in $(seq 1 "$n"); do
    printf '\n[[phases.probes]]\nid = "P%04d"\nname = "allergy"\nmethod = "GET"\n' "$i"
    printf 'path = "/openDolphin/resources/20/adm/phr/allergy/P0001"\nheaders = { "X-Facility-Id" = "F001" }\nready = [200]\n'
  done
} >rt/bench/template.toml
cat >targets.toml <<EOF
[targets.bench]
base_url = "https://localhost:$port"
[targets.bench.tls]
ca_bundle = "$work/ca.pem"
[targets.bench.identity]
cert = "$work/client.pem"
key = "$work/client.key"
[targets.bench.basic]
user = "F001:ops"
password_env = "BENCH_BASIC_PASSWORD"
EOF
export BENCH_BASIC_PASSWORD=bench-pass
t0=$(now)
/usr/bin/time -f '%M' -o connrun.rss "${BENCH_CONNRUN:-$bin/connrun}" --artifacts "$work/artifacts" --run-templates "$work/rt" --targets "$work/targets.toml" \
  run --template bench --target bench --jobs 1 >connrun.out
t1=$(now)
connrun_ms=$(per_probe "$t0" "$t1")
# The same N probes 8 at a time: `curl --parallel --parallel-max 8` against `connrun run --jobs 8`.
t0=$(now); curl --parallel --parallel-max 8 --config curl.cfg; t1=$(now)
curl_par_ms=$(per_probe "$t0" "$t1")
t0=$(now)
"${BENCH_CONNRUN:-$bin/connrun}" --artifacts "$work/artifacts-par" --run-templates "$work/rt" --targets "$work/targets.toml" \
  run --template bench --target bench --jobs 8 >connrun-par.out
t1=$(now)
connrun_par_ms=$(per_probe "$t0" "$t1")
tls_ms=$(python3 - "$work/artifacts" <<'PY'
import json, pathlib, statistics, sys
status = next(pathlib.Path(sys.argv[1]).glob("bench/*/status.json"))
probes = json.loads(status.read_text())["probes"]
print(f"{statistics.median(p['timings']['tls_ms'] for p in probes):.3f}")
PY
)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '\n%-44s %10s\n' "client ($n sequential probes, fresh mTLS each)" "ms/probe"
printf '%-44s %10s\n' "curl (body discarded)" "$curl_ms"
printf '%-44s %10s\n' "curl + trace/headers/body files" "$curl_files_ms"
printf '%-44s %10s\n' "connrun run (full evidence tree, --jobs 1)" "$connrun_ms"
printf '%-44s %10s\n' "curl --parallel --parallel-max 8" "$curl_par_ms"
printf '%-44s %10s\n' "connrun run --jobs 8" "$connrun_par_ms"
printf '%-44s %10s\n' "  of which TLS handshake (median, connrun)" "$tls_ms"
printf '%-44s %10s\n' "connrun peak RSS (KiB)" "$(tail -n 1 connrun.rss)"
printf '\nratio connrun / curl: %s   connrun / curl+files: %s\n' "$(ratio "$connrun_ms" "$curl_ms")" \
  "$(ratio "$connrun_ms" "$curl_files_ms")"
printf 'RESULT\tprobe.seq.connrun.ms_per_probe\t%s\tms\nRESULT\tprobe.seq.curl.ms_per_probe\t%s\tms\n' "$connrun_ms" "$curl_ms"
printf 'RESULT\tprobe.seq.curl_files.ms_per_probe\t%s\tms\nRESULT\tprobe.seq.connrun.peak_rss\t%s\tKiB\n' \
  "$curl_files_ms" "$(tail -n 1 connrun.rss)"
printf 'RESULT\tprobe.jobs8.connrun.ms_per_probe\t%s\tms\nRESULT\tprobe.jobs8.curl_parallel.ms_per_probe\t%s\tms\n' \
  "$connrun_par_ms" "$curl_par_ms"
