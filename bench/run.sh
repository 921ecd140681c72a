#!/usr/bin/env bash
# The benchmark suite in one command: builds the workspace once in release, runs every measurement against
# its peer in the same run on loopback (curl, nginx, oha, sha256sum), and writes bench/results/<date>.json
# and bench/results/<date>.md (min / median / max over the repetitions, and each goal's ratio).
#   (a) probes       scripts/bench-probe.sh: connrun sequential and --jobs 8 vs a curl loop and curl --parallel
#   (b) harness      bench/harness-scale.sh: run, diff, verify, report html, history as runs grow
#   (c) server       bench/server-load.sh: PHR-04 / PHR-11 on SQLite and PostgreSQL vs nginx static (oha),
#                    audit rows counted and the chain verified after every load; scripts/bench-audit-append.sh
#                    (64 writers) vs bench/pg-floor.sh (pgbench, one INSERT per commit)
#   (d) streaming    scripts/bench-stream.sh: PHR-07 image and the Phase F export vs nginx
#   (e) build        release build time and binary sizes (as cargo leaves them, as scripts/dist.sh ships them
#                    with the debug info split off beside them)
# Peers it needs: curl, openssl, nginx (Debian: nginx-light), oha (cargo install oha --locked), psql and a
# PostgreSQL at PG_ADMIN_URL. It stops everything it started. A benchmark, not a test: CI does not run it.
# Usage: bench/run.sh   (REPS=3, PROBES=200, SIZES="200 1000", ONLY="probe harness server audit stream build",
#        BENCH_FRESH_BUILD=1 times a build from an empty target folder, BENCH_APPEND=1 keeps the day's figures)
# Every port is below Linux's ephemeral range (32768-60999), so a client's outgoing connection cannot hold one.
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${REPS:-3}"
only="${ONLY:-probe harness server audit stream build}"
stamp="$(date -u +%Y-%m-%d)"
mkdir -p bench/results
raw="bench/results/$stamp.tsv"
# BENCH_APPEND=1 adds to the day's figures (a part run again) instead of starting them afresh.
[ -n "${BENCH_APPEND:-}" ] || : >"$raw"
wants() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
record() { { grep -P '^RESULT\t' || true; } | tee -a "$raw" | cut -f2- | column -t; }
# Runs one part with its output kept in bench/results/<date>.<name>.log; a part that fails is reported (and
# the suite's exit code says so) but does not stop the others. The figures it printed before failing count.
failed=""
part() { # name command...
  local name="$1" log="bench/results/$stamp.$1.log"
  shift
  if ! "$@" >"$log" 2>&1; then
    failed="$failed $name"
    printf '!!! %s failed; the end of %s:\n' "$name" "$log" >&2
    tail -n 15 "$log" >&2
  fi
  record <"$log"
}
audit_append() { # the example's line as a RESULT line
  PROFILE=release REPS=1 ROWS="${AUDIT_ROWS:-400}" scripts/bench-audit-append.sh |
    sed -n 's/^\([a-z]*\) writers=\([0-9]*\) facilities=\([0-9]*\) .*rows_per_second=\([0-9]*\) chain=\(.*\)$/RESULT\taudit_append.\1.w\2.f\3.rows_per_s\t\4\trows\/s/p'
}

echo "==> build (release, whole workspace)"
target="${CARGO_TARGET_DIR:-target}"
if [ -n "${BENCH_FRESH_BUILD:-}" ]; then target="$(mktemp -d)"; fi
t0=$(date +%s.%N)
CARGO_TARGET_DIR="$target" cargo build --release --workspace -q
t1=$(date +%s.%N)
export BENCH_PHR_SERVER="$(realpath "$target/release/phr-server")" BENCH_CONNRUN="$(realpath "$target/release/connrun")"
export BENCH_SKIP_BUILD=1
if wants build; then
  {
    printf 'RESULT\tbuild.release.wall\t%s\ts\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    [ -n "${BENCH_FRESH_BUILD:-}" ] && printf 'RESULT\tbuild.release.fresh\t1\tflag\n'
    CARGO_TARGET_DIR="$target" scripts/dist.sh >/dev/null
    for bin in connrun phr-server; do
      # What cargo leaves (line tables inside) and what ships (scripts/dist.sh: debug info split off beside it).
      printf 'RESULT\tbuild.%s.cargo_bytes\t%s\tbytes\n' "$bin" "$(stat -c %s "$target/release/$bin")"
      printf 'RESULT\tbuild.%s.bytes\t%s\tbytes\n' "$bin" "$(stat -c %s "$target/dist/$bin")"
      printf 'RESULT\tbuild.%s.debug_bytes\t%s\tbytes\n' "$bin" "$(stat -c %s "$target/dist/$bin.debug")"
    done
  } | record
fi

for rep in $(seq 1 "$reps"); do
  echo "==> repetition $rep of $reps"
  if wants probe; then part probe scripts/bench-probe.sh "${PROBES:-200}"; fi
  if wants harness; then part harness bench/harness-scale.sh; fi
  if wants audit; then
    part audit audit_append
    part pg-floor env WRITERS=64 bench/pg-floor.sh
  fi
  if wants stream; then part stream scripts/bench-stream.sh; fi
done
# The server loads repeat (and alternate sides) inside the script.
if wants server; then part server env REPS="$reps" bench/server-load.sh; fi

python3 bench/summarise.py "$raw" "bench/results/$stamp.json" "bench/results/$stamp.md"
echo "==> bench/results/$stamp.json, bench/results/$stamp.md"
if [ -n "$failed" ]; then echo "!!! parts that failed:$failed (their logs are in bench/results/)" >&2; exit 1; fi
