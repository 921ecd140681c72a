#!/usr/bin/env bash
# The database floor for the audit append, from pgbench in the same run: WRITERS clients each committing one
# INSERT of an audit-sized row (the columns of d_audit_event, a 64-character hash, a ~300-byte payload) per
# transaction into a fresh table, DURATION seconds. What a writer that commits every row on its own could
# reach on this machine's PostgreSQL; phr-server's group commit is measured against it (audit_append.*).
# Prints `RESULT<TAB>name<TAB>value<TAB>unit` lines. A benchmark, not a test: CI does not run it.
# Usage: bench/pg-floor.sh   (PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres, WRITERS="16 64",
#        DURATION=10)
set -euo pipefail
pg_admin="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
writers="${WRITERS:-16 64}"
duration="${DURATION:-10}"
duration="${duration%s}" # the suite's DURATION is oha's form (8s); pgbench takes seconds
command -v pgbench >/dev/null || { echo "pg-floor: pgbench is missing (Debian: postgresql-client)" >&2; exit 1; }
db="bench_floor_$$"
work="$(mktemp -d)"
trap 'psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
psql -q "$pg_admin" -c "CREATE DATABASE $db" >/dev/null
url="${pg_admin%/*}/$db"
psql -q "$url" >/dev/null <<'SQL'
CREATE TABLE floor_event (
  id BIGSERIAL PRIMARY KEY, chain_id VARCHAR(64) NOT NULL, hash_version SMALLINT NOT NULL,
  event_time TIMESTAMPTZ NOT NULL, actor_id VARCHAR(255), action VARCHAR(64) NOT NULL,
  outcome VARCHAR(32) NOT NULL, resource VARCHAR(1024), trace_id VARCHAR(128), ip_address VARCHAR(64),
  run_id VARCHAR(128), payload TEXT NOT NULL, payload_hash VARCHAR(64) NOT NULL,
  previous_hash VARCHAR(64) NOT NULL, event_hash VARCHAR(64) NOT NULL);
SQL
cat >"$work/insert.sql" <<'SQL'
INSERT INTO floor_event (chain_id, hash_version, event_time, actor_id, action, outcome, resource, trace_id,
  ip_address, run_id, payload, payload_hash, previous_hash, event_hash)
VALUES ('main', 2, now(), 'F001:ops', 'PHR_ALLERGY_TEXT', 'success',
  '/openDolphin/resources/20/adm/phr/allergy/P0001', 'bench-floor-' || :client_id, '127.0.0.1', 'bench',
  '{"action":"PHR_ALLERGY_TEXT","status":"success","facilityId":"F001","patientId":"P0001","traceId":"bench-floor","requestId":"00000000-0000-0000-0000-000000000000","userAgent":"pgbench","details":{"bytes":1234,"format":"text/plain"}}',
  md5(random()::text) || md5(random()::text), md5(random()::text) || md5(random()::text),
  md5(random()::text) || md5(random()::text));
SQL
for w in $writers; do
  pgbench -n -c "$w" -j 2 -T "$duration" -f "$work/insert.sql" "$url" >"$work/pgbench.out" 2>&1 ||
    { cat "$work/pgbench.out" >&2; exit 1; }
  tps=$(awk '/^tps = / { printf "%.0f", $3 }' "$work/pgbench.out")
  printf 'RESULT\tpgbench.insert_per_commit.w%s.rows_per_s\t%s\trows/s\n' "$w" "${tps:-0}"
done
