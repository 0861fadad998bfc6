#!/usr/bin/env bash
# Measures the simulation's power: puts each known money-safety hole back (sim/holes/*.patch,
# one at a time, in a scratch worktree) and counts the seeds the simulation needs to find it.
# A hole it cannot find within --seeds is a gap in the simulator.
#
#   scripts/sim-holes.sh [--seeds N] [hole-name-substring] [-- withdraw-sim options]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seeds=200
filter=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) filter="$1"; shift ;;
  esac
done
wt="$(mktemp -d /tmp/withdraw-holes.XXXXXX)"
trap 'git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
git -C "$root" worktree add --detach -q "$wt" HEAD
export CARGO_TARGET_DIR="$root/target/holes"
printf '%-50s %s\n' "hole" "found by"
for patch in "$root"/sim/holes/*.patch; do
  name="$(basename "$patch" .patch)"
  [[ -n "$filter" && "$name" != *"$filter"* ]] && continue
  git -C "$wt" checkout -q -- .
  # What is measured is the working tree: uncommitted changes go in under the hole.
  git -C "$wt" clean -fdq
  git -C "$root" diff HEAD -- . ':!sim/holes' | git -C "$wt" apply --allow-empty
  (cd "$root" && git ls-files --others --exclude-standard -z -- . ':!sim/holes' | xargs -0 -r cp --parents -t "$wt")
  if ! git -C "$wt" apply "$patch" 2>/tmp/sim-holes-apply.log; then
    printf '%-50s DOES NOT APPLY (%s)\n' "$name" "$(head -1 /tmp/sim-holes-apply.log)"
    continue
  fi
  if ! (cd "$wt" && cargo build --release -q -p withdraw-sim 2>/tmp/sim-holes-build.log); then
    printf '%-50s DOES NOT BUILD (see /tmp/sim-holes-build.log)\n' "$name"
    continue
  fi
  started=$(date +%s)
  out="$("$CARGO_TARGET_DIR/release/withdraw-sim" --seeds "$seeds" "${extra[@]}" 2>&1 || true)"
  took=$(( $(date +%s) - started ))
  seed="$(grep -oE '^seed [0-9]+ FAILED' <<<"$out" | head -1 | grep -oE '[0-9]+' || true)"
  if [[ -n "$seed" ]]; then
    what="$(grep -m1 'violation:' <<<"$out" | sed 's/^ *violation: //' | cut -c1-110)"
    printf '%-50s seed %s (%s seeds, %ss): %s\n' "$name" "$seed" "$seed" "$took" "$what"
  else
    printf '%-50s NOT FOUND in %s seeds (%ss)\n' "$name" "$seeds" "$took"
  fi
done
