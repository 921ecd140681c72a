#!/usr/bin/env bash
# connrun's own cost as a run grows: for each N of SIZES, two runs of an N-probe template (GET PHR-04, a fresh
# mTLS connection per probe, --jobs JOBS) against a release phr-server, then `diff`, `verify`, `report html`
# and `history` over them. Wall time and peak RSS (GNU time) of each command, the evidence size, and
# `sha256sum` over the same files as the peer of `verify`. Runs on tmpfs (/dev/shm) when BENCH_TMPFS=1 or
# when a size is 100,000 or more (1.4 GB and 600,000 files per run). From ONE_RUN_FROM probes on (100,000 by
# default) a size gets one run, not two, and no diff: the diff goal is stated at 10,000.
# Prints `RESULT<TAB>name<TAB>value<TAB>unit` lines (bench/run.sh collects them). Not run by CI.
# A template holds at most 100,000 probes (src/evidence/limits.rs, MAX_PROBES); a size beyond the bound is
# reported as refused, not measured.
# Usage: bench/harness-scale.sh   (SIZES="1000 10000 100000", JOBS=8, BENCH_TMPFS=1, ONE_RUN_FROM=100000,
#        BENCH_PHR_SERVER, BENCH_CONNRUN, BENCH_PORT, BENCH_OPS_PORT, BENCH_KEEP=1)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-pki.sh
. bench/lib.sh
sizes="${SIZES:-1000 10000 100000}"
one_run_from="${ONE_RUN_FROM:-100000}"
jobs="${JOBS:-8}"
port="${BENCH_PORT:-26443}"
ops_port="${BENCH_OPS_PORT:-26464}"
phr_server="$(bench_phr_server)"
connrun="$(bench_connrun)"
base="${TMPDIR:-/tmp}"; [ -n "${BENCH_TMPFS:-}" ] && base=/dev/shm
for n in $sizes; do [ "$n" -ge 100000 ] && base=/dev/shm; done
work="$(mktemp -d "$base/harness-scale.XXXXXX")"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${BENCH_KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
bench_pki
export PHR_DATABASE_URL="sqlite:$work/phr.db" PHR_IMAGE_STORE_DIR="$work/images" PHR_SEED_USER_PASSWORD="bench-pass"
"$phr_server" seed --patients 5 >/dev/null
PHR_TLS_CERT=server.pem PHR_TLS_KEY=server.key PHR_TLS_CLIENT_CA=ca.pem PHR_LISTEN="127.0.0.1:$port" \
  PHR_OPS_LISTEN="127.0.0.1:$ops_port" PHR_LAYER_KEY_OPTIONAL=true PHR_LOG=warn "$phr_server" serve 2>server.log &
server_pid=$!
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null && break; sleep 0.1; done

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

template() { # n
  mkdir -p "rt/scale$1"
  {
    printf 'schema_version = 1\nname = "scale%s"\nlabel = "scale%s"\nsuite = "bench"\n\n[[phases]]\nid = "B"\nname = "bench"\n' "$1" "$1"
    for i in $(seq 1 "$1"); do
      printf '\n[[phases.probes]]\nid = "P%06d"\nname = "allergy"\nmethod = "GET"\n' "$i"
      printf 'path = "/openDolphin/resources/20/adm/phr/allergy/P0001"\nheaders = { "X-Facility-Id" = "F001" }\nready = [200]\n'
    done
  } >"rt/scale$1/template.toml"
}

# Runs connrun with the common flags under GNU time; records wall seconds and peak RSS (KiB) as `name`. Exit 1
# (a probe or a comparison found a problem, e.g. diff flagging latency) is still a measurement; 2 is not.
measure() { # name args...
  local name="$1" rc=0; shift
  /usr/bin/time -f '%e %M' -o time.out "$connrun" --artifacts "$work/artifacts" --run-templates "$work/rt" \
    --targets "$work/targets.toml" "$@" >cmd.out 2>cmd.err || rc=$?
  [ "$rc" -le 1 ] || { cat cmd.err >&2; return 1; }
  [ "$rc" -eq 0 ] || printf '%s exited %s (measured all the same): %s\n' "$name" "$rc" "$(head -c 300 cmd.out)" >&2
  read -r wall rss < <(tail -n 1 time.out) # GNU time puts "Command exited with non-zero status" first
  bench_result "$name.wall" "$wall" "s"
  bench_result "$name.peak_rss" "$rss" "KiB"
}

for n in $sizes; do
  template "$n"
  if ! "$connrun" --run-templates "$work/rt" templates check >/dev/null 2>check.err; then
    bench_result "harness.n$n.refused" "1" "bound"
    printf 'N=%s refused by the template bounds: %s\n' "$n" "$(tail -n 1 check.err)" >&2
    continue
  fi
  measure "harness.n$n.run" run --template "scale$n" --target bench --jobs "$jobs"
  first="$(ls -1 "artifacts/bench" | grep -v '^\.' | grep "scale${n}Z" | sort | tail -n 1)"
  second="$first"
  if [ "$n" -lt "$one_run_from" ]; then
    measure "harness.n$n.run2" run --template "scale$n" --target bench --jobs "$jobs"
    second="$(ls -1 "artifacts/bench" | grep -v '^\.' | grep "scale${n}Z" | sort | tail -n 1)"
  fi
  bench_result "harness.n$n.evidence_bytes" "$(du -sb "artifacts/bench/$first" | cut -f1)" "bytes"
  bench_result "harness.n$n.evidence_files" "$(find "artifacts/bench/$first" -type f | wc -l)" "files"
  bench_result "harness.n$n.status_json_bytes" "$(stat -c %s "artifacts/bench/$first/status.json")" "bytes"
  if [ "$second" != "$first" ]; then
    measure "harness.n$n.diff" diff "$first" "$second"
  fi
  measure "harness.n$n.verify" verify "$second"
  measure "harness.n$n.report_html" report html "$second" --output "$work/report-n$n.html"
  bench_result "harness.n$n.report_html_pages" "$(ls "$work" | grep -c "^report-n$n-p")" "pages"
  measure "harness.n$n.history" history
  t0=$(date +%s.%N)
  (cd "artifacts/bench/$second" && find . -type f ! -name manifest.json -print0 | xargs -0 sha256sum >/dev/null)
  t1=$(date +%s.%N)
  bench_result "harness.n$n.sha256sum.wall" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "s"
done
