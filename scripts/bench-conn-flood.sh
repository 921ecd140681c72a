#!/usr/bin/env bash
# A flood of half-sent requests against a release phr-server under `ulimit -n 1024`, and what it costs
# everyone else (issue 11, point 3).
#
#   idle     N sequential normal calls (GET allergy/P0001, right password, a fresh TLS connection each):
#            their p50.
#   flood    C TLS connections, each with a valid client certificate, that send only `GET /x HTTP/1.1\r\n` and
#            then hold the connection (the slowloris of the issue), opened as fast as the flooder can, while
#            the same normal calls run beside it: how many the server kept open, how many it closed at once
#            (connection cap) or after the header-read timeout, the normal calls' p50 and failures meanwhile,
#            the server's peak RSS.
#   shutdown SIGTERM while the flood's connections are still held: seconds until the process has exited
#            (it must not wait the grace period for connections with nothing in flight).
# The flooder is python3's ssl module (one process, non-blocking sockets), so the flood costs little CPU.
# Usage: scripts/bench-conn-flood.sh [C]   (default 1006; BENCH_NORMAL=N (50), BENCH_HOLD=seconds the flood
#        is held after the last connection opened (5; the header-read timeout closes them after 10),
#        BENCH_PORT / BENCH_OPS_PORT, BENCH_PHR_SERVER=<binary>; PHR_* in the environment reach the server,
#        e.g. PHR_MAX_CONNECTIONS or PHR_HEADER_READ_TIMEOUT_SECONDS). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-pki.sh
. bench/lib.sh
connections="${1:-1006}"
normal="${BENCH_NORMAL:-50}"
hold="${BENCH_HOLD:-5}"
port="${BENCH_PORT:-28455}"
ops_port="${BENCH_OPS_PORT:-29476}"
work="$(mktemp -d)"
server_pid=""
flooder_pid=""
cleanup() {
  [ -n "$flooder_pid" ] && kill "$flooder_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

phr_server="$(bench_phr_server)"

cd "$work"
bench_pki
export PHR_DATABASE_URL="sqlite:$work/phr.db" PHR_IMAGE_STORE_DIR="$work/images" PHR_SEED_USER_PASSWORD="bench-pass"
"$phr_server" seed --patients 2 >/dev/null 2>seed.log || { cat seed.log >&2; bench_die "seed failed"; }

# The server runs under the issue's descriptor limit.
(
  ulimit -n 1024
  exec env PHR_TLS_CERT=server.pem PHR_TLS_KEY=server.key PHR_TLS_CLIENT_CA=ca.pem PHR_LISTEN="127.0.0.1:$port" \
    PHR_OPS_LISTEN="127.0.0.1:$ops_port" PHR_LAYER_KEY_OPTIONAL=true PHR_LOG=error "$phr_server" serve
) 2>>server.log &
server_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null || bench_die "phr-server not ready on 127.0.0.1:$ops_port"

phr="https://localhost:$port/openDolphin/resources/20/adm/phr/allergy/P0001"
call() { # trace id; prints "<status> <seconds>"
  curl -s -o /dev/null -m 20 -w '%{http_code} %{time_total}\n' --cacert ca.pem --cert client.pem --key client.key \
    -u "F001:ops:bench-pass" -H "X-Trace-Id: $1" -H "X-Facility-Id: F001" "$phr" || echo "000 0"
}
p50_ms() { awk '$1 == 200 { print $2 }' "$1" | sort -n | awk '{ t[NR] = $1 } END { if (NR) printf "%.1f", t[int((NR + 1) / 2)] * 1000; else print "-" }'; }
status_kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$server_pid/status"; }
metric() { curl -fs "http://127.0.0.1:$ops_port/metrics" | awk -v s="$1" 'index($0, s) == 1 { t += $NF } END { print t + 0 }'; }

cat >flood.py <<'EOF'
# Opens the connections, sends half a request on each, holds them; reports how many completed the handshake
# and how many the server has closed, then waits to be killed.
import os, resource, selectors, socket, ssl, sys, time
count, port, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 64, max(count + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
ctx = ssl.create_default_context(cafile="ca.pem")
ctx.load_cert_chain("client.pem", "client.key")
held, refused = [], 0
for _ in range(count):
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"GET /x HTTP/1.1\r\n")
        tls.setblocking(False)
        held.append(tls)
    except (OSError, ssl.SSLError):
        refused += 1
print(f"handshaken {len(held)} refused_at_handshake {refused}", flush=True)
deadline = time.monotonic() + hold
sel = selectors.DefaultSelector()
for s in held:
    sel.register(s, selectors.EVENT_READ)
closed = 0
while time.monotonic() < deadline and closed < len(held):
    for key, _ in sel.select(timeout=0.5):
        try:
            data = key.fileobj.recv(4096)
        except ssl.SSLWantReadError:
            continue
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            closed += 1
print(f"closed_by_server_within_hold {closed} still_open {len(held) - closed}", flush=True)
open("flood.held", "w").close()
time.sleep(3600)
EOF

for i in $(seq 1 "$normal"); do call "idle-$i"; done >idle.out
echo 5 >"/proc/$server_pid/clear_refs" 2>/dev/null || true
python3 flood.py "$connections" "$port" "$hold" >flood.out 2>flood.err &
flooder_pid=$!
(while [ ! -e flood.held ]; do call busy; done >busy.out) &
beside=$!
for _ in $(seq 1 $((hold * 10 + 600))); do [ -e flood.held ] && break; kill -0 "$flooder_pid" 2>/dev/null || break; sleep 0.1; done
[ -e flood.held ] || { cat flood.err >&2; bench_die "the flooder stopped early"; }
wait "$beside"
open_during=$(metric phr_connections_open)
refused_cap=$(metric phr_connections_refused_total)
closed_reasons=$(curl -fs "http://127.0.0.1:$ops_port/metrics" | { grep '^phr_connections_closed_total' || true; } | tr '\n' ' ')
[ -n "$closed_reasons" ] || closed_reasons="none"
peak=$(status_kib VmHWM)
t0=$(date +%s.%N)
kill -TERM "$server_pid"
wait "$server_pid" 2>/dev/null || true
t1=$(date +%s.%N)
server_pid=""

printf '== slow-header flood: %s TLS connections held %ss, server under ulimit -n 1024\n' "$connections" "$hold"
sed 's/^/flooder: /' flood.out
printf 'server: connections open at the end of the hold %s; refused at once by the cap %s; closed by a limit so far: %s\n' \
  "$open_during" "$refused_cap" "$closed_reasons"
printf 'server peak RSS during the flood: %s MB\n' "$(awk -v k="$peak" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')"
idle=$(p50_ms idle.out)
busy=$(p50_ms busy.out)
printf 'normal call p50: idle %s ms, during the flood %s ms (%s calls, %s not 200) -> %sx\n' "$idle" "$busy" \
  "$(wc -l <busy.out)" "$(awk '$1 != 200' busy.out | wc -l)" \
  "$(awk -v a="$busy" -v b="$idle" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }')"
printf 'SIGTERM with the flood still connected: exited after %s s (grace period %s s)\n' \
  "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "${PHR_SHUTDOWN_GRACE_SECONDS:-30}"
