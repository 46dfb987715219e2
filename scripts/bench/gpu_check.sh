#!/usr/bin/env bash
# One-command proof on a real card (issue 11, item 7; issue 17): everything that needs a GPU, one
# table, in about 9 of a session's 15 device minutes, staging included. The logic is
# scripts/bench/gpu_check.py; this picks the Python.
#
# Here (no GPU), from the repository root:
#   bash scripts/bench/gpu_check.sh prepare     # once (~6 min): .gpu/ = the gpu-kit copy + .gpu/parts/1..4
#                                                #   (cp312 wheels the GPU image lacks: pynvml, onnxruntime,
#                                                #   ctranslate2, faster-whisper, opencc; static ffmpeg/ffprobe;
#                                                #   Whisper base's real weights) and prints the calls + time plan
#   bash scripts/bench/gpu_check.sh plan        # the device calls again, sizes checked against 64 MiB
#   bash scripts/bench/gpu_check.sh --dry-run   # every step on this CPU at tiny sizes (~3 min);
#                                                #   or GPU_CHECK_DRY_RUN=1 bash scripts/bench/gpu_check.sh
#   bash scripts/bench/gpu_check.sh rehearse --python /tmp/venv312/bin/python
#                                                # the device's path with its Python (3.12): stage every part
#                                                #   in a copy of the tree, then a staged dry run; a wheel
#                                                #   missing from the parts fails here, not on the card
#
# On the device, back to back (the machine is given back 30 s after a call, and with it what the
# stages installed; `plan` prints the exact list and the time plan):
#   run  carry [".gpu/parts/1"]  command: bash scripts/bench/gpu_check.sh stage 1   (timeout_s 120)
#   run  carry [".gpu/parts/2"]  command: bash scripts/bench/gpu_check.sh stage 2   (timeout_s 120)
#   run  carry [".gpu/parts/3"]  command: bash scripts/bench/gpu_check.sh stage 3   (timeout_s 120)
#   run  carry [".gpu/parts/4"]  command: bash scripts/bench/gpu_check.sh run       (timeout_s 360)
# Time plan: start ~90 s + 3 x 25 s staging + the run's 360 s = 525 s of 900, 375 s left to rerun.
# Parts 1-3 hold what only the Whisper steps need (its weights, ctranslate2, onnxruntime); part 4,
# the run's own, holds what every other step needs (kit, ffmpeg, pynvml, opencc), so a run on a
# machine that lost the stages still proves SenseVoice/Paraformer, the co-tenant, the cap and Nano.
# Each stage checks its part's SHA-256 and installs what the part completes into .gpu/dev/. `run`
# installs its own part, then runs every step in priority order, each in its own process with its
# own time cap (a step that fails or runs out of time fills its rows with "failed: reason"; the
# others still run). Rows print as they land; after each step the table so far is rewritten to
# $OUT/gpu_check.txt and .json, so a call cut at its limit still brings back its figures.
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
elif [ "$dry" = 1 ] || [ "${args[0]}" = prepare ] || [ "${args[0]}" = plan ] || [ "${args[0]}" = rehearse ]; then
  PY="$ROOT/.venv/bin/python"; [ -x "$PY" ] || PY=python3   # here: the project's venv
else
  PY=python3                                                # the device's Python (torch, CUDA)
fi
export PYTHONUNBUFFERED=1
exec "$PY" scripts/bench/gpu_check.py "${args[@]}"
