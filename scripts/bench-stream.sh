#!/usr/bin/env bash
# Streaming paths of phr-server against nginx serving the same bytes with the same mTLS, in the same run, on loopback.
#
#   PHR-07   N sequential downloads of F001/P0004's newest image (5 MiB, exactly at the cap; P0003's is one byte
#            over and must answer 413) from a release `phr-server serve`, and of the same object copied into an
#            nginx root (`ssl_verify_client on`, same server certificate and CA). curl, HTTP/1.1, a fresh TCP+TLS
#            connection per download (`Connection: close`), client certificate, Basic, X-Trace-Id, X-Facility-Id.
#   parallel C clients at once, R downloads each; the server's peak RSS (VmHWM, reset through clear_refs) after one
#            download and during the C-parallel phase: it must not grow with C x image size. nginx likewise.
#   Phase F  an export of K patients (POST /export, GET /status until SUCCEEDED, the signed https downloadUrl)
#            downloaded M times (a fresh single-use URL each), and the same ZIP from nginx.
# PHR_IMAGE_BURST is raised to 1 TiB and PHR_EXPORT_DOWNLOAD_BPS to 1 TB/s, so neither the burst budget nor the
# download pacing (default 50 MB/s) limits the bench. MB = 10^6 bytes. Not run by CI.
# Usage: scripts/bench-stream.sh [N] [C]   (defaults 20 and 16; BENCH_REPEAT=R (4), BENCH_EXPORT_PATIENTS=K (20000),
#        BENCH_EXPORT_DOWNLOADS=M (5), BENCH_PORT / BENCH_OPS_PORT / BENCH_NGINX_PORT, BENCH_KEEP=1 keeps the temp dir,
#        BENCH_PHR_SERVER=<binary> runs that build instead of building target/release/phr-server)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-pki.sh
n="${1:-20}"
c="${2:-16}"
r="${BENCH_REPEAT:-4}"
k="${BENCH_EXPORT_PATIENTS:-20000}"
m="${BENCH_EXPORT_DOWNLOADS:-5}"
port="${BENCH_PORT:-28443}"
ops_port="${BENCH_OPS_PORT:-29464}"
ngx_port="${BENCH_NGINX_PORT:-28444}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}" "${nginx_pid:-}" "${server_pid:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [ -n "${BENCH_KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
die() {
  printf '\nbench-stream: FAILED: %s\n' "$*" >&2
  for log in server.log nginx/error.log; do
    [ -s "$work/$log" ] && { printf -- '--- tail of %s\n' "$log" >&2; tail -n 20 "$work/$log" >&2; }
  done
  exit 1
}
say() { printf '%s\n' "$*" >&2; }

# nginx: on PATH, in /usr/sbin, or Debian's nginx-light when root (only where policy-rc.d keeps the package's
# service, which would listen on *:80, from starting).
nginx_bin="$(command -v nginx || true)"
[ -n "$nginx_bin" ] || { [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx; } || true
if [ -z "$nginx_bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  rc=0
  [ ! -x /usr/sbin/policy-rc.d ] || /usr/sbin/policy-rc.d nginx start >/dev/null 2>&1 || rc=$?
  if [ "$rc" = 101 ]; then
    say "bench-stream: nginx not found; installing Debian's nginx-light (apt-get install -y nginx-light) ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >"$work/apt.log" 2>&1 ||
      { tail -n 5 "$work/apt.log" >&2; die "apt-get install nginx-light failed"; }
    nginx_bin=/usr/sbin/nginx
  else
    say "bench-stream: not installing nginx-light: no /usr/sbin/policy-rc.d denying service start (its service would listen on *:80)"
  fi
fi
[ -n "$nginx_bin" ] || say "
bench-stream: ***** NO NGINX: the nginx columns are SKIPPED; install nginx (or run as root on Debian) *****
"

if [ -n "${BENCH_PHR_SERVER:-}" ]; then # another build of phr-server, for A/B runs
  phr_server="$(realpath "$BENCH_PHR_SERVER")"
else
  cargo build --release -q --workspace # the whole workspace: the same feature set, so the same binary, as every bench
  phr_server="$PWD/target/release/phr-server"
fi

# PKI: CA, server (localhost / 127.0.0.1), client; RSA key for the Layer ID token.
cd "$work"
chmod 711 "$work" # nginx workers (nobody when started as root) traverse it to the document root
bench_pki

export PHR_DATABASE_URL="sqlite:$work/phr.db" PHR_IMAGE_STORE_DIR="$work/images" PHR_SEED_USER_PASSWORD="bench-pass"
say "bench-stream: seeding $k patients per facility ..."
"$phr_server" seed --patients "$k" >/dev/null 2>seed.log || { cat seed.log >&2; die "seed failed"; }
PHR_TLS_CERT=server.pem PHR_TLS_KEY=server.key PHR_TLS_CLIENT_CA=ca.pem PHR_LISTEN="127.0.0.1:$port" \
  PHR_OPS_LISTEN="127.0.0.1:$ops_port" PHR_LAYER_PRIVATE_KEY_PATH=layer.pem PHR_LAYER_KEY_ID=bench \
  PHR_LAYER_PROVIDER_ID=bench PHR_LOG=warn PHR_IMAGE_BURST=1099511627776 PHR_EXPORT_DOWNLOAD_BPS=1000000000000 \
  PHR_EXPORT_STORAGE_TYPE=FILESYSTEM PHR_EXPORT_FS_BASE="$work/exports" \
  PHR_EXPORT_SIGNING_SECRET="$(openssl rand -hex 32)" "$phr_server" serve 2>server.log &
server_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null || die "phr-server not ready on 127.0.0.1:$ops_port"

# nginx: foreground, its own prefix, config, pid and logs under the temp dir, loopback only.
image_key="images/F001/P0004/2.jpg" # seed: images/<facility>/<patient>/<n>.jpg, the last one the newest
mkdir -p www nginx/tmp
cp "images/$image_key" www/image.jpg
chmod 755 www && chmod 644 www/image.jpg
if [ -n "$nginx_bin" ]; then
  cat >nginx/nginx.conf <<EOF
daemon off;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/octet-stream;
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
    root $work/www;
  }
}
EOF
  "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
  nginx_pid=$!
fi

phr="https://localhost:$port/openDolphin/resources/20/adm/phr"
ngx="https://localhost:$ngx_port"
now() { date +%s.%N; }
# One curl operation per URL (`next`), each with its own options (options in a config file otherwise accumulate).
operation() { # url trace [output]
  printf 'url = "%s"\ncacert = "ca.pem"\ncert = "client.pem"\nkey = "client.key"\nuser = "F001:ops:bench-pass"\n' "$1"
  printf 'header = "X-Facility-Id: F001"\nheader = "Connection: close"\nheader = "X-Trace-Id: %s"\n' "$2"
  printf 'http1.1\nsilent\nshow-error\noutput = "%s"\n' "${3:-/dev/null}"
  printf 'write-out = "%%{http_code} %%{size_download} %%{time_total} %%{num_connects}\\n"\n'
}
config() { # file url trace-prefix count
  : >"$1"
  for i in $(seq 1 "$4"); do
    [ "$i" = 1 ] || printf 'next\n' >>"$1"
    operation "$2" "$3-$i" >>"$1"
  done
}
# Every line of a curl write-out file must be `200 <size> <time> 1` (one fresh connection per download).
check() { # results-file expected-size what
  awk -v s="$2" '$1 != 200 || $2 != s || $4 != 1 { bad++; if (!line) line = $0 } END { exit bad ? 1 : 0 }' "$1" ||
    die "$3: expected every answer to be 'HTTP 200, $2 bytes, 1 connection'; got: $(awk -v s="$2" \
      '$1 != 200 || $2 != s || $4 != 1' "$1" | sort | uniq -c | head -n 3 | tr '\n' ';')"
}
mean_ms() { awk '{ t += $3 } END { printf "%.1f", t * 1000 / NR }' "$@"; }
mbps() { awk '{ b += $2; t += $3 } END { printf "%.0f", b / t / 1e6 }' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
kib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; } # KiB -> MiB
# Peak RSS of a set of processes (KiB): reset VmHWM to the current RSS (clear_refs 5), then read it back.
hwm_reset() { for p in "$@"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || hwm_note=" (VmHWM not resettable: peak since start)"; done; }
hwm() { for p in "$@"; do awk '/^VmHWM:/ { print $2 }' "/proc/$p/status"; done | awk '{ s += $1 } END { print s }'; }
rss() { for p in "$@"; do awk '/^VmRSS:/ { print $2 }' "/proc/$p/status"; done | awk '{ s += $1 } END { print s }'; }
ngx_pids() { echo "$nginx_pid" $(pgrep -P "$nginx_pid"); }
hwm_note=""

if [ -n "$nginx_bin" ]; then
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert ca.pem --cert client.pem --key client.key "$ngx/image.jpg" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || die "nginx not ready on 127.0.0.1:$ngx_port (last answer: $code)"
  # nginx must refuse a client without a certificate, as phr-server does.
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert ca.pem "$ngx/image.jpg" || true)
  [ "$code" = 400 ] || die "nginx answered $code without a client certificate; expected 400"
fi

# Correctness first: P0004's image (at the cap) arrives whole and identical; P0003's (one byte over) is 413.
size=$(stat -c %s "images/$image_key")
code=$(curl -s --cacert ca.pem --cert client.pem --key client.key -u F001:ops:bench-pass -H "X-Trace-Id: bench-check" \
  -H "X-Facility-Id: F001" -o check.jpg -w '%{http_code}' "$phr/image/P0004")
[ "$code" = 200 ] || die "PHR-07 P0004 answered $code; expected 200"
cmp -s check.jpg "images/$image_key" || die "PHR-07 P0004's body differs from the stored object $image_key"
code=$(curl -s --cacert ca.pem --cert client.pem --key client.key -u F001:ops:bench-pass -H "X-Trace-Id: bench-413" \
  -H "X-Facility-Id: F001" -o /dev/null -w '%{http_code}' "$phr/image/P0003")
[ "$code" = 413 ] || die "PHR-07 P0003 (over the cap) answered $code; expected 413"

# 1. N sequential downloads (after one warm-up each).
seq_run() { # name url
  config "$1-warm.cfg" "$2" "bench-$1-warm" 1
  curl --config "$1-warm.cfg" >"$1-warm.out" || die "$1: curl failed"
  check "$1-warm.out" "$size" "$1 warm-up"
  config "$1-seq.cfg" "$2" "bench-$1-seq" "$n"
  curl --config "$1-seq.cfg" >"$1-seq.out" || die "$1: curl failed"
  check "$1-seq.out" "$size" "$1 sequential"
}
# 2. one download with VmHWM reset before it, then C parallel clients x R downloads.
par_run() { # name url pid...
  local name="$1" url="$2"
  shift 2
  local before
  before=$(rss "$@")
  hwm_reset "$@"
  config "$name-one.cfg" "$url" "bench-$name-one" 1
  curl --config "$name-one.cfg" >"$name-one.out" || die "$name: curl failed"
  check "$name-one.out" "$size" "$name single"
  printf '%s %s\n' "$before" "$(hwm "$@")" >"$name-one.rss"
  local jobs=() t0 t1
  for j in $(seq 1 "$c"); do config "$name-par-$j.cfg" "$url" "bench-$name-par$j" "$r"; done
  hwm_reset "$@"
  t0=$(now)
  for j in $(seq 1 "$c"); do
    curl --config "$name-par-$j.cfg" >"$name-par-$j.out" &
    jobs+=($!)
    pids+=($!)
  done
  for p in "${jobs[@]}"; do wait "$p" || die "$name: a parallel curl failed"; done
  t1=$(now)
  printf '%s\n' "$(hwm "$@")" >"$name-par.rss"
  cat "$name"-par-*.out >"$name-par.out"
  check "$name-par.out" "$size" "$name parallel"
  awk -v a="$t0" -v b="$t1" -v bytes="$((c * r * size))" 'BEGIN { printf "%.0f", bytes / (b - a) / 1e6 }' >"$name-par.mbps"
}
say "bench-stream: PHR-07: $n sequential + $c x $r parallel downloads of $size bytes ..."
seq_run phr "$phr/image/P0004"
[ -z "$nginx_bin" ] || seq_run ngx "$ngx/image.jpg"
par_run phr "$phr/image/P0004" "$server_pid"
[ -z "$nginx_bin" ] || par_run ngx "$ngx/image.jpg" $(ngx_pids)

# 3. Phase F: export of K patients of F001; each download needs a fresh single-use URL from GET /status.
say "bench-stream: Phase F: exporting $k patients ..."
basic=(--cacert ca.pem --cert client.pem --key client.key -u F001:ops:bench-pass -H "X-Facility-Id: F001")
python3 -c 'import json, sys; print(json.dumps({"patientIds": ["P%04d" % i for i in range(1, int(sys.argv[1]) + 1)]}))' \
  "$k" >export-request.json
code=$(curl -s "${basic[@]}" -H "X-Trace-Id: bench-export" -H "Content-Type: application/json" \
  --data-binary @export-request.json -o export.json -w '%{http_code}' "$phr/export")
[ "$code" = 202 ] || die "POST /export answered $code; expected 202: $(head -c 300 export.json)"
job=$(jq -r .jobId export.json)
t0=$(now)
status() { # trace -> state on stdout, body in status.json
  local code
  code=$(curl -s "${basic[@]}" -H "X-Trace-Id: $1" -o status.json -w '%{http_code}' "$phr/status/$job")
  [ "$code" = 200 ] || die "GET /status/$job answered $code: $(head -c 300 status.json)"
  jq -r .state status.json
}
for i in $(seq 1 3000); do
  state=$(status "bench-status-$i")
  case "$state" in
    SUCCEEDED) break ;;
    PENDING | RUNNING) sleep 0.2 ;;
    *) die "export job $job is $state: $(cat status.json)" ;;
  esac
done
[ "$state" = SUCCEEDED ] || die "export job $job still $state after 600 s"
build_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
zip="exports/facility/F001/jobs/$job/phr-export-1.zip"
[ -f "$zip" ] || die "artifact $zip not found"
zip_size=$(stat -c %s "$zip")
cp "$zip" www/export.zip && chmod 644 www/export.zip
: >phr-export.out
phr_export_rss=$(rss "$server_pid") # after the build, before any download
phr_export_hwm=0
for i in $(seq 1 "$m"); do
  [ "$i" = 1 ] || state=$(status "bench-status-url-$i")
  url=$(jq -r '.downloadUrl // empty' status.json)
  case "$url" in "https://localhost:$port/"*) ;; *) die "downloadUrl is not https on this server: '$url'" ;; esac
  operation "$url" "bench-artifact-$i" >"export-$i.cfg"
  hwm_reset "$server_pid"
  curl --config "export-$i.cfg" >>phr-export.out || die "export download: curl failed"
  peak=$(hwm "$server_pid")
  [ "$peak" -le "$phr_export_hwm" ] || phr_export_hwm=$peak
done
check phr-export.out "$zip_size" "phr-server export artifact"
if [ -n "$nginx_bin" ]; then
  config ngx-export.cfg "$ngx/export.zip" bench-ngx-export "$m"
  ngx_export_rss=$(rss $(ngx_pids))
  hwm_reset $(ngx_pids)
  curl --config ngx-export.cfg >ngx-export.out || die "nginx export: curl failed"
  ngx_export_hwm=$(hwm $(ngx_pids))
  check ngx-export.out "$zip_size" "nginx export"
fi

# Table.
col() { [ -n "$nginx_bin" ] && "$@" || echo "-"; }
row() { printf '%-50s %11s %11s %7s\n' "$@"; }
mib=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }')
printf '\nbench-stream: loopback, curl HTTP/1.1, fresh mTLS connection per download; MB = 10^6 bytes, RSS in MiB%s\n' "$hwm_note"
row "" "phr-server" "nginx" "ratio"
for what in "seq:PHR-07 $mib MiB x $n sequential" "par:PHR-07 $c parallel x $r"; do
  key=${what%%:*} label=${what#*:}
  pm=$(mean_ms "phr-$key.out") nm=$(col mean_ms "ngx-$key.out")
  row "$label  ms/download" "$pm" "$nm" "$(ratio "$pm" "$nm")"
  if [ "$key" = seq ]; then pr=$(mbps phr-seq.out) nr=$(col mbps ngx-seq.out); else
    pr=$(cat phr-par.mbps) nr=$(col cat ngx-par.mbps)
  fi
  row "$label  MB/s$([ "$key" = par ] && echo ' (aggregate)')" "$pr" "$nr" "$(ratio "$pr" "$nr")"
  printf 'RESULT\tstream.image_%s.phr.mbps\t%s\tMB/s\nRESULT\tstream.image_%s.nginx.mbps\t%s\tMB/s\n' "$key" "$pr" "$key" "$nr" >>results.tsv
done
read -r p_before p_one <phr-one.rss
p_par=$(cat phr-par.rss)
if [ -n "$nginx_bin" ]; then read -r n_before n_one <ngx-one.rss; n_par=$(cat ngx-par.rss); fi
row "RSS after warm-up, before the single download" "$(kib "$p_before")" "$(col kib "${n_before:-0}")" ""
row "peak RSS during 1 download" "$(kib "$p_one")" "$(col kib "${n_one:-0}")" ""
row "peak RSS during $c parallel (C x image = $(awk -v v="$((c * size))" 'BEGIN { printf "%.0f", v / 1048576 }') MiB)" \
  "$(kib "$p_par")" "$(col kib "${n_par:-0}")" ""
pe=$(mean_ms phr-export.out) ne=$(col mean_ms ngx-export.out)
zmb=$(awk -v s="$zip_size" 'BEGIN { printf "%.1f", s / 1e6 }')
row "Phase F ZIP $zmb MB ($k patients) x $m  ms" "$pe" "$ne" "$(ratio "$pe" "$ne")"
pr=$(mbps phr-export.out) nr=$(col mbps ngx-export.out)
row "Phase F ZIP  MB/s (pacing 1 TB/s, not 50 MB/s)" "$pr" "$nr" "$(ratio "$pr" "$nr")"
printf 'RESULT\tstream.export.phr.mbps\t%s\tMB/s\nRESULT\tstream.export.nginx.mbps\t%s\tMB/s\n' "$pr" "$nr" >>results.tsv
printf 'RESULT\tstream.image_par.phr.peak_rss\t%s\tKiB\n' "$p_par" >>results.tsv
row "RSS after the export build, before the downloads" "$(kib "$phr_export_rss")" "$(col kib "${ngx_export_rss:-0}")" ""
row "peak RSS during the ZIP download" "$(kib "$phr_export_hwm")" "$(col kib "${ngx_export_hwm:-0}")" ""
printf 'export job built in %s s; ratio = phr-server / nginx (ms: lower is better, MB/s: higher is better)\n' "$build_s"
growth=$((p_par - p_one))
if [ "$growth" -gt $((c * size / 1024 / 2)) ]; then
  printf 'WARNING: phr-server peak RSS grew by %s MiB from 1 to %s parallel downloads (>= half of C x image size)\n' \
    "$(kib "$growth")" "$c"
fi
[ -n "$nginx_bin" ] || printf '\n***** nginx columns SKIPPED: nginx is not installed *****\n'
[ -s results.tsv ] && cat results.tsv
