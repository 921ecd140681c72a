#!/usr/bin/env bash
# Compares two run folders (or two artifacts roots) with what differs from run to run masked: times and
# durations, loopback ports, RUN_IDs, hashes, sizes of files that hold those, generated certificate facts and
# tokens. Prints the unified diff of the normalised trees; exits 0 when they match, 1 when they differ.
# Used to show that a refactoring left a demo run's evidence unchanged:
#   connrun demo --artifacts /tmp/a   (old build)      connrun demo --artifacts /tmp/b   (new build)
#   scripts/evidence-diff.sh /tmp/a /tmp/b
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 <tree-a> <tree-b>" >&2; exit 2; }

normalise() {
  local root=$1 out=$2
  mkdir -p "$out"
  (cd "$root" && find . -type f | sort) | while read -r file; do
    local name=${file#./}
    # The RUN_ID is in folder names too.
    local masked_name
    masked_name=$(printf '%s' "$name" | sed -E 's/[0-9]{8}T[A-Za-z0-9]+Z[0-9]+/RUN_ID/g; s/[0-9]{8}T[0-9]{6}Z/RUN_ID/g')
    mkdir -p "$out/$(dirname "$masked_name")"
    case "$name" in
      *.gz) zcat "$root/$name" ;;
      *) cat "$root/$name" ;;
    esac | LC_ALL=C sed -E \
      -e 's/[0-9]{8}T[A-Za-z0-9]+Z[0-9]+/RUN_ID/g' \
      -e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2}| JST| UTC)?/TIME/g' \
      -e 's/[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT/HTTP-DATE/g' \
      -e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}/DATE/g' \
      -e 's/^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6} /CLOCK /' \
      -e 's/(127\.0\.0\.1|localhost|\[::1\]):[0-9]+/\1:PORT/g' \
      -e 's/[0-9a-fA-F]{64}/SHA256/g' \
      -e 's/[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){8,}/HEX/g' \
      -e 's/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_<>A-Z-]*)?/JWT/g' \
      -e 's/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/UUID/g' \
      -e 's/[0-9]+(\.[0-9]+)? ?ms/N ms/g' \
      -e 's/("?[a-z_]*(_ms|Ms|_bytes|size|time|wait|send|receive|connect|ssl|dns|blocked)"?[:=] ?)-?[0-9]+(\.[0-9]+)?/\1N/g' \
      -e 's/(serial[^0-9A-Fa-f]*)[0-9A-Fa-f:]+/\1SERIAL/g' \
      -e 's/[0-9]+ days left/N days left/g' \
      -e 's/(time|duration)="[0-9.]+"/\1="N"/g' \
      -e 's/connrun-demo-[0-9a-f]{32}/SCRATCH/g' \
      -e 's/(tmp|Size|bytes|size)[ =:]+[0-9]+/\1 N/g' \
      > "$out/$masked_name"
  done
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
normalise "$1" "$work/a"
normalise "$2" "$work/b"
if diff -ru "$work/a" "$work/b"; then
  echo "evidence trees match (times, ports, ids, hashes and generated certificates masked): $(cd "$work/a" && find . -type f | wc -l) files"
else
  exit 1
fi
