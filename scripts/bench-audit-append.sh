#!/usr/bin/env bash
# Benchmarks the audit append path (server/examples/audit_append_bench.rs) on PostgreSQL and SQLite:
# WRITERS concurrent writers x ROWS rows each, spread over each of FACILITIES (a chain per facility), REPS
# repetitions, one line per run with rows/s and the chains' verdict. Run it on two commits to compare them;
# it is a benchmark, not a test.
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres WRITERS=64 ROWS=50 FACILITIES="1 8" REPS=3 scripts/bench-audit-append.sh
set -euo pipefail
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
WRITERS=${WRITERS:-64}
ROWS=${ROWS:-50}
FACILITIES=${FACILITIES:-1 8}
REPS=${REPS:-3}
PROFILE=${PROFILE:-dev}
cargo build -q --workspace --example audit_append_bench --profile "$PROFILE" # the features every bench builds with
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
bin="${CARGO_TARGET_DIR:-target}/$dir/examples/audit_append_bench"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "commit $(git rev-parse --short HEAD), profile $PROFILE, $WRITERS writers x $ROWS rows"
for rep in $(seq "$REPS"); do
  for facilities in $FACILITIES; do
    "$bin" "$PG_ADMIN_URL" "$WRITERS" "$ROWS" "$facilities"
    "$bin" "sqlite:$work/bench-$rep-$facilities.db" "$WRITERS" "$ROWS" "$facilities"
  done
done
