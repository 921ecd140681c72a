# Sourced by the bench scripts (not run on its own): how a figure is reported, how a peer is found, which
# binaries are measured.
#
# Every figure is one line `RESULT<TAB>name<TAB>value<TAB>unit` on stdout; bench/run.sh collects them from all
# scripts into bench/results/<date>.json and the Markdown table. The binaries are the ones bench/run.sh built
# once for the whole suite (BENCH_PHR_SERVER, BENCH_CONNRUN), so every script measures the same build.

bench_result() { # name value unit
  printf 'RESULT\t%s\t%s\t%s\n' "$1" "$2" "$3"
}

bench_die() {
  printf '\n%s: FAILED: %s\n' "$(basename "$0")" "$*" >&2
  for log in "${work:-/nonexistent}/server.log" "${work:-/nonexistent}/nginx/error.log"; do
    [ -s "$log" ] && { printf -- '--- tail of %s\n' "$log" >&2; tail -n 20 "$log" >&2; }
  done
  exit 1
}

# The path of a peer tool, or a clear failure naming how to install it.
bench_need() { # command how-to-install
  local found
  found="$(command -v "$1" || true)"
  [ -n "$found" ] || { [ -x "/usr/sbin/$1" ] && found="/usr/sbin/$1"; } || true
  [ -n "$found" ] || { [ -x "$HOME/.cargo/bin/$1" ] && found="$HOME/.cargo/bin/$1"; } || true
  [ -n "$found" ] || bench_die "$1 not found: install it ($2)"
  printf '%s\n' "$found"
}

# The release binaries under measurement: BENCH_PHR_SERVER / BENCH_CONNRUN, else the workspace's release
# build (built here when missing, with the whole workspace so features unify as in bench/run.sh).
bench_release() { # binary-name
  local bin="$PWD/target/release/$1"
  [ -x "$bin" ] || cargo build --release --workspace -q >&2
  printf '%s\n' "$bin"
}
bench_phr_server() { printf '%s\n' "${BENCH_PHR_SERVER:-$(bench_release phr-server)}"; }
bench_connrun() { printf '%s\n' "${BENCH_CONNRUN:-$(bench_release connrun)}"; }
