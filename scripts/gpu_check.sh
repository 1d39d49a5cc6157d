#!/usr/bin/env bash
# On a GPU machine (no internet; jax with the CUDA plugin, nanobind, scikit-build-core, cmake and nvcc
# preinstalled): build with the CUDA handlers, run the CPU/CUDA bit-exactness checks and the timings.
#   bash scripts/gpu_check.sh OUTDIR        (about 3 minutes; writes OUTDIR/{build.log,gpu_check.json,check.log})
# then, when compute-sanitizer is installed, memcheck and racecheck over a few kernel launches (up to 2 minutes
# each; OUTDIR/sanitize_{memcheck,racecheck}.log). SANITIZE=0 skips them.
set -uo pipefail
OUT=${1:-gpu_out}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
nvidia-smi -L | tee "$OUT/nvidia-smi.txt"
MRL_CUDA=ON python3 -m pip install --no-build-isolation --no-deps -q . >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
# Run outside the source tree (-P: no script dir on sys.path) so the installed package with _mrl_cuda is used.
cd "$OUT" && python3 -P "$REPO/scripts/gpu_check.py" . 2>&1 | tee check.log
RC=${PIPESTATUS[0]}
if [[ "${SANITIZE:-1}" == 1 ]] && command -v compute-sanitizer >/dev/null; then
  for TOOL in memcheck racecheck; do
    XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 120 compute-sanitizer --tool "$TOOL" --error-exitcode 9 \
      python3 -P "$REPO/scripts/gpu_check.py" . --sanitize >"sanitize_$TOOL.log" 2>&1
    SRC=$?
    echo "compute-sanitizer $TOOL: exit $SRC ($(grep -c 'ERROR SUMMARY: 0 errors' "sanitize_$TOOL.log") clean summaries)"
    [[ $SRC -eq 0 ]] || RC=1
  done
fi
exit "$RC"
