#!/usr/bin/env bash
# On a GPU machine (no internet; jax with the CUDA plugin, nanobind, scikit-build-core, cmake and nvcc
# preinstalled): build with the CUDA handlers, run the CPU/CUDA bit-exactness checks and the timings.
#   bash scripts/gpu_check.sh OUTDIR        (about 3 minutes; writes OUTDIR/{build.log,gpu_check.json,check.log})
set -uo pipefail
OUT=${1:-gpu_out}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
nvidia-smi -L | tee "$OUT/nvidia-smi.txt"
MRL_CUDA=ON python3 -m pip install --no-build-isolation --no-deps -q . >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
# Run outside the source tree (-P: no script dir on sys.path) so the installed package with _mrl_cuda is used.
cd "$OUT" && python3 -P "$REPO/scripts/gpu_check.py" . 2>&1 | tee check.log
exit "${PIPESTATUS[0]}"
