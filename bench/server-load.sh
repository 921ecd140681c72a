#!/usr/bin/env bash
# Server throughput against nginx, in the same run, on loopback: PHR-04 (allergy text) and PHR-11 (container
# JSON) from a release `phr-server serve` on SQLite and on PostgreSQL, and the same bytes as static files from
# nginx with the same server certificate, CA (`ssl_verify_client on`) and Basic credentials (auth_basic).
# The load generator is oha (keep-alive HTTP/1.1, client certificate), DURATION per point, at each concurrency
# of CONCURRENCY, REPS repetitions with the sides alternated. After every phr-server load the audit rows are
# counted (one per answered request) and the chain is verified with `phr-server audit verify`.
# Prints one `RESULT<TAB>name<TAB>value<TAB>unit` line per figure (bench/run.sh collects them) and a table.
# A benchmark, not a test: CI does not run it.
# Usage: bench/server-load.sh   (BENCH_PHR_SERVER=<binary> (default target/release/phr-server, built if absent),
#        DURATION=10s, CONCURRENCY="1 16 64", REPS=3, BACKENDS="sqlite postgres",
#        PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres, BENCH_PORT, BENCH_OPS_PORT, BENCH_NGINX_PORT)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-pki.sh
. bench/lib.sh
duration="${DURATION:-10s}"
concurrency="${CONCURRENCY:-1 16 64}"
reps="${REPS:-3}"
backends="${BACKENDS:-sqlite postgres}"
pg_admin="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
port="${BENCH_PORT:-27443}"
ops_port="${BENCH_OPS_PORT:-27464}"
ngx_port="${BENCH_NGINX_PORT:-27444}"
phr_server="$(bench_phr_server)"
oha_bin="$(bench_need oha "cargo install oha --locked")"
nginx_bin="$(bench_need nginx "apt-get install nginx-light")"
work="$(mktemp -d)"
server_pid="" nginx_pid="" pg_db=""
cleanup() {
  for p in "$server_pid" "$nginx_pid"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$pg_db" ] && psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  [ -n "${BENCH_KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
chmod 711 "$work"
bench_pki
password="bench-pass"
auth="Authorization: Basic $(printf 'F001:ops:%s' "$password" | base64 -w0)"
phr="https://localhost:$port/openDolphin/resources/20/adm/phr"
ngx="https://localhost:$ngx_port"
declare -A paths=([phr04]="allergy/P0001" [phr11]="F001,P0001")

start_server() { # database-url
  PHR_DATABASE_URL="$1" PHR_IMAGE_STORE_DIR="$work/images" PHR_SEED_USER_PASSWORD="$password" \
    "$phr_server" seed --patients 5 >/dev/null
  PHR_DATABASE_URL="$1" PHR_IMAGE_STORE_DIR="$work/images" PHR_TLS_CERT=server.pem PHR_TLS_KEY=server.key \
    PHR_TLS_CLIENT_CA=ca.pem PHR_LISTEN="127.0.0.1:$port" PHR_OPS_LISTEN="127.0.0.1:$ops_port" \
    PHR_LAYER_KEY_OPTIONAL=true PHR_LOG=warn "$phr_server" serve 2>>server.log &
  server_pid=$!
  for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null && return; sleep 0.1; done
  bench_die "phr-server did not become ready (server.log)"
}

stop_server() { kill "$server_pid" && wait "$server_pid" 2>/dev/null || true; server_pid=""; }

# The bytes nginx serves: exactly what phr-server answers.
fetch_bodies() {
  mkdir -p www
  for name in "${!paths[@]}"; do
    curl -fsS --cacert ca.pem --cert client.pem --key client.key -H "$auth" -H "X-Facility-Id: F001" \
      -H "X-Trace-Id: bench-body" -o "www/$name" "$phr/${paths[$name]}"
  done
  chmod 755 www && chmod 644 www/*
}

start_nginx() {
  mkdir -p nginx/tmp
  # Basic splits at the first colon: user F001, password "ops:<password>", the same header bytes.
  printf 'F001:%s\n' "$(openssl passwd -apr1 "ops:$password")" >nginx/htpasswd
  cat >nginx/nginx.conf <<EOF
daemon off;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$ngx_port ssl;
    ssl_certificate $work/server.pem;
    ssl_certificate_key $work/server.key;
    ssl_client_certificate $work/ca.pem;
    ssl_verify_client on;
    auth_basic "bench";
    auth_basic_user_file $work/nginx/htpasswd;
    root $work/www;
  }
}
EOF
  "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
  nginx_pid=$!
  for _ in $(seq 1 100); do
    curl -fs --cacert ca.pem --cert client.pem --key client.key -H "$auth" -o /dev/null "$ngx/phr04" && return
    sleep 0.1
  done
  bench_die "nginx did not answer (nginx/error.log)"
}

load() { # url concurrency -> "rps p50_ms p99_ms ok_count"
  "$oha_bin" -z "$duration" -c "$2" --no-tui --output-format json --cacert ca.pem --cert client.pem \
    --key client.key -H "$auth" -H "X-Facility-Id: F001" -H "X-Trace-Id: bench-load" "$1" >oha.json
  python3 - <<'PY'
import json
r = json.load(open("oha.json"))
s, p = r["summary"], r["latencyPercentiles"]
ok = r.get("statusCodeDistribution", {}).get("200", 0)
print(f'{s["requestsPerSec"]:.1f} {p["p50"] * 1000:.2f} {p["p99"] * 1000:.2f} {ok}')
PY
}

audit_rows() { "$phr_server" audit verify --database-url "$1" | sed -n 's/^audit chain intact: \([0-9]*\) rows.*/\1/p'; }

start_nginx_once() { [ -n "$nginx_pid" ] || start_nginx; }

for backend in $backends; do
  case "$backend" in
    sqlite) url="sqlite:$work/phr.db" ;;
    postgres)
      pg_db="bench_load_$$"
      psql -q "$pg_admin" -c "CREATE DATABASE $pg_db" >/dev/null
      url="${pg_admin%/*}/$pg_db" ;;
    *) bench_die "BACKENDS: unknown backend $backend (sqlite, postgres)" ;;
  esac
  start_server "$url"
  fetch_bodies
  start_nginx_once
  for name in phr04 phr11; do
    for c in $concurrency; do
      for rep in $(seq 1 "$reps"); do
        # Sides alternate: odd repetitions start with nginx, even ones with phr-server.
        order="nginx phr"; [ $((rep % 2)) = 0 ] && order="phr nginx"
        for side in $order; do
          if [ "$side" = nginx ]; then
            read -r rps p50 p99 _ < <(load "$ngx/$name" "$c")
          else
            before="$(audit_rows "$url")" || bench_die "audit verify failed before the load ($backend)"
            read -r rps p50 p99 ok < <(load "$phr/${paths[$name]}" "$c")
            after="$(audit_rows "$url")" || bench_die "audit chain broken after the load ($backend $name c=$c)"
            [ -n "$after" ] || bench_die "audit verify printed no row count after the load ($backend $name c=$c)"
            rows=$((after - before))
            [ "$rows" -ge "$ok" ] || bench_die "$ok answers but $rows audit rows ($backend $name c=$c)"
            bench_result "server.$backend.$name.c$c.audit_rows_per_s" \
              "$(awk -v r="$rows" -v d="${duration%s}" 'BEGIN { printf "%.1f", r / d }')" "rows/s"
          fi
          bench_result "server.$backend.$name.c$c.$side.rps" "$rps" "req/s"
          bench_result "server.$backend.$name.c$c.$side.p50" "$p50" "ms"
          bench_result "server.$backend.$name.c$c.$side.p99" "$p99" "ms"
        done
      done
    done
  done
  stop_server
done
