#!/usr/bin/env bash
# The CPU study of docs/results.md: LeNet-5 / MNIST, 6,000 training images, 3 epochs (2,250 mini-batches of 8),
# 3 device seeds per grid point (one vmapped program each). Rerunning resumes: finished grid points are reused.
#   bash scripts/study_cpu.sh [OUT_ROOT=runs]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs}
PY=${PYTHON:-python}
COMMON=(--seeds 3 --epochs 3 --train-subset 6000 --resume)
$PY examples/sweep.py --settings ResL TTv1 TTv2 MP SGD FP --n-states 4 "${COMMON[@]}" --out "$OUT/study_s4"
$PY examples/sweep.py --settings ResL TTv1 TTv2 MP SGD --n-states 10 "${COMMON[@]}" --out "$OUT/study_s10"
$PY examples/sweep.py --settings ResL --n-states 4 --tiles 2 3 4 5 6 8 "${COMMON[@]}" --out "$OUT/ablation_tiles"
$PY examples/sweep.py --settings ResL --n-states 4 --gamma 0.3 0.4 0.6 0.7 "${COMMON[@]}" --out "$OUT/ablation_gamma"
# Investigation of ResL's decay over epochs: the same grid point without warm start and with direct hops.
$PY examples/sweep.py --settings ResL --n-states 4 --warm-start none "${COMMON[@]}" --out "$OUT/ablation_warm_none"
$PY examples/sweep.py --settings ResL --n-states 4 --warm-start direct "${COMMON[@]}" --out "$OUT/ablation_warm_direct"
# The plateau controller checked every 250 mini-batches (9 checks instead of 2), i.e. the warm start's
# epoch-based schedule compressed like the rest of the protocol.
$PY examples/sweep.py --settings ResL --n-states 4 10 --plateau-every 250 "${COMMON[@]}" --out "$OUT/ablation_plateau250"
