#!/usr/bin/env bash
# One-command proof on a real card (issue 11, item 7): everything that needs a GPU, one table,
# about 6 minutes of one H100. The logic is scripts/bench/gpu_check.py; this picks the Python.
#
# Here (no GPU), from the repository root:
#   bash scripts/bench/gpu_check.sh prepare     # once: .gpu/ = the gpu-kit copy + .gpu/parts/1..N
#                                                #   (wheels the GPU image lacks, static ffmpeg/ffprobe,
#                                                #   Whisper base's real weights), and prints the plan
#   bash scripts/bench/gpu_check.sh plan        # the device calls again, sizes checked against 64 MiB
#   bash scripts/bench/gpu_check.sh --dry-run   # every step on this CPU at tiny sizes (~2-3 min);
#                                                #   or GPU_CHECK_DRY_RUN=1 bash scripts/bench/gpu_check.sh
#
# On the device, back to back (the machine is given back 30 s after a call, and with it what the
# earlier stages installed); `plan` prints the exact list, today four calls:
#   run  carry [".gpu/parts/1"]  command: bash scripts/bench/gpu_check.sh stage 1
#   run  carry [".gpu/parts/2"]  command: bash scripts/bench/gpu_check.sh stage 2
#   run  carry [".gpu/parts/3"]  command: bash scripts/bench/gpu_check.sh stage 3
#   run  carry [".gpu/parts/4"]  command: bash scripts/bench/gpu_check.sh run        (timeout_s 420)
# Each stage checks its part's SHA-256 and installs what the part completes (kit wheels, ffmpeg,
# faster-whisper, ctranslate2, the Whisper weights reassembled and checked against the bundled
# model's SHA-256) into .gpu/dev/. `run` installs its own part, then runs every step, each in its
# own process with its own time budget (a step that fails or runs out of time fills its rows with
# "failed: reason"; the others still run), and prints one table. Table and JSON land in $OUT.
#   bash scripts/bench/gpu_check.sh run --steps wh_ours,wh_fw   # again, only some steps (warm machine)
#   bash scripts/bench/gpu_check.sh run --help                  # every option
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

args=("$@")
[ ${#args[@]} -eq 0 ] && args=(run)
case "${args[0]}" in
  --dry-run) args=(run "${args[@]}") ;;
  -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
dry="${GPU_CHECK_DRY_RUN:-0}"
for a in "${args[@]}"; do [ "$a" = "--dry-run" ] && dry=1; done

if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
  PY="$GPU_CHECK_PYTHON"
elif [ "$dry" = 1 ] || [ "${args[0]}" = prepare ] || [ "${args[0]}" = plan ]; then
  PY="$ROOT/.venv/bin/python"; [ -x "$PY" ] || PY=python3   # here: the project's venv
else
  PY=python3                                                # the device's Python (torch, CUDA)
fi
export PYTHONUNBUFFERED=1
exec "$PY" scripts/bench/gpu_check.py "${args[@]}"
