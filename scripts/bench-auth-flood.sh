#!/usr/bin/env bash
# A flood of distinct wrong Basic passwords against a release phr-server, and what it costs everyone else.
#
#   idle     N sequential normal calls (GET allergy/P0001, right password, its own client certificate, a fresh
#            TLS connection each) before the flood: their p50.
#   flood    F requests with F distinct wrong passwords, P at a time (one curl process, --parallel), from another client
#            certificate, while the same normal calls run in a loop beside it: the normal calls' p50 during
#            the flood, the server's peak RSS (VmHWM, reset through clear_refs before the flood), its RSS after,
#            the flood's answers by status, and the server's own figures (argon2 checks in flight at peak,
#            refusals by reason).
# Three scenarios, each on a fresh server: "defaults" (the per-certificate failure throttle at its default, so
# most of the flood is answered 429 without a check), "no-throttle" (PHR_AUTH_MAX_FAILURES=1000000, so every
# request of the flood needs an argon2 check: the worst case for memory and CPU, bounded by the gate alone),
# and "control-right-password" (the same flood with the right password: no argon2 at all, so what remains is
# the cost of the flood's requests and TLS handshakes themselves).
# The goal of issue 11: peak RSS under 200 MB and normal p50 within 2x of idle. Not run by CI.
# Usage: scripts/bench-auth-flood.sh [F] [P]   (defaults 400 and 100; BENCH_NORMAL=N (50), BENCH_PORT /
#        BENCH_OPS_PORT, BENCH_FLOOD_NICE=n runs the flood's curl at that nice level (the load generator shares
#        the server's CPUs here; on separate machines it would not), BENCH_KEEP=1 keeps the temp dir, BENCH_PHR_SERVER=<binary> runs that build instead of
#        building it; PHR_AUTH_* in the environment reach the server)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-pki.sh
flood="${1:-400}"
parallel="${2:-100}"
normal="${BENCH_NORMAL:-50}"
port="${BENCH_PORT:-28453}"
ops_port="${BENCH_OPS_PORT:-29474}"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${BENCH_KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
die() {
  printf '\nbench-auth-flood: FAILED: %s\n' "$*" >&2
  [ -s "$work/server.log" ] && { printf -- '--- tail of server.log\n' >&2; tail -n 20 "$work/server.log" >&2; }
  exit 1
}
say() { printf '%s\n' "$*" >&2; }

if [ -n "${BENCH_PHR_SERVER:-}" ]; then
  phr_server="$(realpath "$BENCH_PHR_SERVER")"
else
  cargo build --release -q --workspace # the same feature set as every bench
  phr_server="$(realpath "${CARGO_TARGET_DIR:-target}")/release/phr-server"
fi

cd "$work"
bench_pki
issue_bench_leaf flooder bench-flooder "extendedKeyUsage=clientAuth"
export PHR_DATABASE_URL="sqlite:$work/phr.db" PHR_IMAGE_STORE_DIR="$work/images" PHR_SEED_USER_PASSWORD="bench-pass"
"$phr_server" seed --patients 2 >/dev/null 2>seed.log || { cat seed.log >&2; die "seed failed"; }

phr="https://localhost:$port/openDolphin/resources/20/adm/phr/allergy/P0001"
start_server() { # extra VAR=value ...
  env "$@" PHR_TLS_CERT=server.pem PHR_TLS_KEY=server.key PHR_TLS_CLIENT_CA=ca.pem PHR_LISTEN="127.0.0.1:$port" \
    PHR_OPS_LISTEN="127.0.0.1:$ops_port" PHR_LAYER_KEY_OPTIONAL=true PHR_LOG=error "$phr_server" serve 2>>server.log &
  server_pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null || die "phr-server not ready on 127.0.0.1:$ops_port"
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""; }
# One call; prints "<status> <seconds>". Arguments: certificate name, password, trace id.
call() {
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --cacert ca.pem --cert "$1.pem" --key "$1.key" \
    -u "F001:ops:$2" -H "X-Trace-Id: $3" -H "X-Facility-Id: F001" "$phr" || echo "000 0"
}
# The flood's password number i: distinct wrong ones, or (control) the right one, verified once and then cached.
flood_password() { if [ -n "${control:-}" ]; then echo bench-pass; else echo "wrong-$1"; fi; }
# The flood as one curl process (--parallel): one operation per distinct wrong password.
flood_config() { # scenario
  for i in $(seq 1 "$flood"); do
    [ "$i" = 1 ] || printf 'next\n'
    printf 'url = "%s"\ncacert = "ca.pem"\ncert = "flooder.pem"\nkey = "flooder.key"\n' "$phr"
    printf 'user = "F001:ops:%s"\nheader = "X-Facility-Id: F001"\nheader = "X-Trace-Id: flood-%s-%s"\n' "$(flood_password "$i")" "$1" "$i"
    printf 'silent\noutput = "/dev/null"\nwrite-out = "%%{http_code} %%{time_total}\\n"\n'
  done
}
p50_ms() { awk '$1 == 200 { print $2 }' "$1" | sort -n | awk '{ t[NR] = $1 } END { if (NR) printf "%.1f", t[int((NR + 1) / 2)] * 1000; else print "-" }'; }
kib_to_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }
status_kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$server_pid/status"; }
metric() { curl -fs "http://127.0.0.1:$ops_port/metrics" | awk -v s="$1" 'index($0, s) == 1 { t += $NF } END { print t + 0 }'; }

scenario() { # name extra-env...
  local name="$1"
  shift
  start_server "$@"
  call client bench-pass "warm-$name" >/dev/null # verifies and caches the normal credential
  for i in $(seq 1 "$normal"); do call client bench-pass "idle-$name-$i"; done >"idle-$name.out"
  local rss_before
  rss_before=$(status_kib VmRSS)
  echo 5 >"/proc/$server_pid/clear_refs" 2>/dev/null || say "bench-auth-flood: VmHWM not resettable: peak since start"
  # Normal calls beside the flood, until it is over.
  (while [ ! -e "flood-$name.done" ]; do call client bench-pass "busy-$name"; done >"busy-$name.out") &
  local beside=$!
  flood_config "$name" >"flood-$name.cfg"
  ${BENCH_FLOOD_NICE:+nice -n "$BENCH_FLOOD_NICE"} curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max "$parallel" \
    --config "flood-$name.cfg" >"flood-$name.out" || true
  touch "flood-$name.done"
  wait "$beside"
  local peak after
  peak=$(status_kib VmHWM)
  after=$(status_kib VmRSS)
  printf '\n== %s %s\n' "$name" "$*"
  printf 'flood: %s requests, %s in parallel; answers: %s\n' "$flood" "$parallel" \
    "$(awk '{ print $1 }' "flood-$name.out" | sort | uniq -c | awk '{ printf "%s x %s  ", $2, $1 }')"
  printf 'server RSS: before %s MB, peak during the flood %s MB, after %s MB\n' \
    "$(kib_to_mb "$rss_before")" "$(kib_to_mb "$peak")" "$(kib_to_mb "$after")"
  printf 'argon2 checks in flight at peak: %s; checks run: %s; refused queue_full: %s, certificate_throttled: %s\n' \
    "$(metric phr_auth_verifications_in_flight_peak)" "$(metric phr_auth_verifications_total)" \
    "$(metric 'phr_auth_refused_total{reason="queue_full"}')" \
    "$(metric 'phr_auth_refused_total{reason="certificate_throttled"}')"
  local idle busy
  idle=$(p50_ms "idle-$name.out")
  busy=$(p50_ms "busy-$name.out")
  printf 'normal call p50: idle %s ms, during the flood %s ms (%s calls, %s not 200) -> %sx\n' "$idle" "$busy" \
    "$(wc -l <"busy-$name.out")" "$(awk '$1 != 200' "busy-$name.out" | wc -l)" \
    "$(awk -v a="$busy" -v b="$idle" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }')"
  stop_server
}

say "bench-auth-flood: $(nproc) CPUs; $phr_server"
scenario defaults
scenario no-throttle PHR_AUTH_MAX_FAILURES=1000000
# Control: the same flood of requests and TLS connections with the right password, so no argon2 runs at all:
# what the flood costs a normal call on this machine whatever the password checks do.
control=1 scenario control-right-password
