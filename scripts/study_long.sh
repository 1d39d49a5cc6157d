#!/usr/bin/env bash
# The long LeNet-5 / MNIST study of docs/results.md: the full 60,000 training images, batch 8, lr 0.05, 3 device
# seeds per grid point (one vmapped program each), fair presets unless named. Every line resumes: finished points
# are kept, an interrupted point reruns, a changed grid is refused. Run it again to continue.
#   bash scripts/study_long.sh [OUT_ROOT=runs/study] [extra sweep flags, e.g. --data-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/study}
shift || true
PY=${PYTHON:-python}
COMMON=(--seeds 3 --resume "$@")
# TT-v3 and TT-v4 transfer after every row (AIHWKit's chopped compounds), which on a CPU makes a LeNet-5 epoch about
# ten times longer than the other settings': the first pass defers them, the second trains them.
for pass in first second; do
  SLOW=()
  [ "$pass" = first ] && SLOW=(--defer TTv3 TTv4)
  # Main comparison, 10 epochs: MRL with the reference warm start (cuda_exact, plateau checked once per epoch) and
  # without, the Tiki-Taka family, analog SGD and FP at 4 states; MP in its own folder (added after the first).
  $PY examples/sweep.py --settings MRL TTv1 TTv2 TTv3 TTv4 SGD FP --n-states 4 --warm-start cuda_exact none \
    --epochs 10 "${COMMON[@]}" "${SLOW[@]}" --out "$OUT/fair_s4"
  $PY examples/sweep.py --settings MP --n-states 4 --epochs 10 "${COMMON[@]}" --out "$OUT/fair_s4_mp"
  # Ablations at 4 states, 5 epochs (K = 7, γ = 0.5 is the main comparison's point).
  $PY examples/sweep.py --settings MRL --n-states 4 --tiles 3 5 --warm-start cuda_exact --epochs 5 "${COMMON[@]}" \
    --out "$OUT/ablation_tiles"
  $PY examples/sweep.py --settings MRL --n-states 4 --gamma 0.4 0.6 --warm-start cuda_exact --epochs 5 \
    "${COMMON[@]}" --out "$OUT/ablation_gamma"
  $PY examples/sweep.py --settings MRL TTv1 TTv2 TTv3 TTv4 MP SGD --n-states 10 --warm-start cuda_exact none \
    --epochs 10 "${COMMON[@]}" "${SLOW[@]}" --out "$OUT/fair_s10"
  # The reference scripts' own configurations (Mnist_LeNet5.py; each fixes its state count).
  $PY examples/sweep.py --presets reference --settings MRL TTv1 TTv2 TTv3 TTv4 MP SGD --epochs 10 "${COMMON[@]}" \
    "${SLOW[@]}" --out "$OUT/reference"
done
