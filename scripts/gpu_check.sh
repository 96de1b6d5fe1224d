#!/usr/bin/env bash
# Full-size figures on one GPU with random weights in the real shapes (docs/performance/README.md), ~10 minutes.
# usage: scripts/gpu_check.sh [--dry-run] [--out DIR] [--only PART]
#   PART: reward | editor | grpo | reward-train. Each part runs in its own process under its own timeout and writes
#   every figure as it is measured, so a part that is cut off still reports. --dry-run: CPU, tiny shapes, written to a
#   temporary folder unless --out is given. GPU_CHECK_TIMEOUT_SCALE=2 doubles every timeout (a slower GPU).
set -u
cd "$(dirname "$0")/.."

out="" dry=() only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=(--dry-run) ;;
    --out) out="$2"; shift ;;
    --only) only="$2"; shift ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --dry-run, --out DIR, --only PART)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$out" ]; then
  if [ ${#dry[@]} -gt 0 ]; then out=$(mktemp -d -t gpu-check-dry-XXXXXX); else out=docs/performance; fi
fi
mkdir -p "$out"
[ -f "$out/README.md" ] || cp docs/performance/README.md "$out/"  # the table is regenerated inside a copy of it

declare -A limit=([reward]=100 [editor]=170 [grpo]=160 [reward-train]=100)
scale="${GPU_CHECK_TIMEOUT_SCALE:-1}"
py=(python -m editrl.gpu_check --out "$out")

json=$("${py[@]}" --init ${dry[@]+"${dry[@]}"}) || exit 1
echo "gpu-check: writing $json"
status=0
for part in reward editor grpo reward-train; do
  if [ -n "$only" ] && [ "$only" != "$part" ]; then continue; fi
  seconds=$(( ${limit[$part]} * scale ))
  echo "gpu-check: part $part (timeout ${seconds}s)"
  timeout -k 15 "$seconds" "${py[@]}" --json "$json" --part "$part" --budget $(( seconds - 15 )) ${dry[@]+"${dry[@]}"}
  rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    "${py[@]}" --json "$json" --mark "$part=cut off by its ${seconds}s timeout"
  elif [ $rc -gt 1 ]; then
    "${py[@]}" --json "$json" --mark "$part=the process died (exit status $rc)"
  fi
  [ $rc -ne 0 ] && status=1
done
"${py[@]}" --table
echo "gpu-check: results in $json and $out/README.md"
exit $status
