#!/usr/bin/env bash
# Release binaries to ship: `cargo build --release` for the whole workspace, then each binary's debug info
# split off into a file beside it rather than thrown away. target/dist/<bin> is the binary without its debug
# sections and symbol table and with a `.gnu_debuglink` to target/dist/<bin>.debug, which holds them (the
# symbols, the line tables of every crate, and the C libraries' DWARF). Keep the two together: gdb, addr2line
# and Rust's own backtraces find the `.debug` file beside the binary (or under /usr/lib/debug), so a crash
# report still names file and line.
# Why not cargo's `split-debuginfo`: on Linux it moves only the split DWARF units out and keeps the line
# tables and the C code's DWARF in the binary (109 MB connrun, 84 MB phr-server against 34 MB and 24 MB
# here; BENCHMARKS.md).
# Usage: scripts/dist.sh   (CARGO_TARGET_DIR honoured; OBJCOPY=… to use another objcopy)
set -euo pipefail
cd "$(dirname "$0")/.."
objcopy="${OBJCOPY:-objcopy}"
command -v "$objcopy" >/dev/null || { echo "dist: $objcopy is missing (Debian: binutils)" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --workspace --locked -q
mkdir -p "$target/dist"
for bin in connrun phr-server; do
  out="$target/dist/$bin"
  rm -f "$out" "$out.debug"
  "$objcopy" --only-keep-debug "$target/release/$bin" "$out.debug"
  # The link is made from inside the folder so it records the bare file name, looked up beside the binary.
  (cd "$target/dist" && "$objcopy" --strip-all --add-gnu-debuglink="$bin.debug" "../release/$bin" "$bin")
  chmod 644 "$out.debug"
  printf '%s\t%s bytes\t%s.debug\t%s bytes\n' "$out" "$(stat -c %s "$out")" "$out" "$(stat -c %s "$out.debug")"
done
