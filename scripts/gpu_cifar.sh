#!/usr/bin/env bash
# ResNet-18 (-block-type D D D A A A) on CIFAR-10 on a GPU machine: MRL vs TT-v2 vs FP at 4 states for a few
# epochs each (about 8 minutes in all), per-epoch accuracy and seconds per epoch written to OUTDIR.
#
# Only the repository travels to the GPU machine, so the data must be copied into a git-ignored folder of the
# repository first. The full CIFAR-10 (139 MB of .xz batches) is over the 64 MiB a run may carry, so prepare a
# subset here:
#   bash scripts/gpu_cifar.sh --prepare build/gpu_data   # writes build/gpu_data/cifar10_subset.npz (~42 MB)
# and carry build/gpu_data to the GPU machine, then there:
#   bash scripts/gpu_cifar.sh OUTDIR [DATA]              # DATA: a .npz as above (default
#                                                          # build/gpu_data/cifar10_subset.npz) or a folder with
#                                                          # the canonical CIFAR-10 files (passed as --data-dir)
# Writes OUTDIR/{env.txt, <setting>.log, epochs.jsonl, summary.txt}; the first epoch's seconds include compilation
# (MRL's 8-tile step compiles slowest). Environment:
#   SETTINGS      settings to run (default "MRL TTv2 FP")
#   EPOCHS        epochs per setting (3); TRAIN_SUBSET training images used (10000, 78 steps of 128)
#   RUN_TIMEOUT   seconds per setting (default MRL 200, TTv2 150, others 100; epochs done by then are kept)
#   ENGINE        pulsed-update engine (jnp: the source tree travels without compiled kernels)
#   N_TRAIN, N_TEST  images in the prepared subset (12000, 3000)
#   EXTRA_ARGS    appended to every run, e.g. a CPU dry run with TRAIN_SUBSET=256 EPOCHS=1
#                 EXTRA_ARGS="--width 8 -block-number 1 1 1 1 --test-subset 200 --batch-size 32"
#   PYTHON        interpreter (python3)
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}

if [[ "${1:-}" == "--prepare" ]]; then
  DEST=${2:?usage: gpu_cifar.sh --prepare DIR}
  mkdir -p "$DEST"
  cd "$REPO" && "$PY" - "$DEST/cifar10_subset.npz" "${N_TRAIN:-12000}" "${N_TEST:-3000}" <<'EOF'
import sys
import numpy as np
from mrl_jax import data
path, n_train, n_test = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x, y = data.load_dataset("cifar10", "train")
xt, yt = data.load_dataset("cifar10", "test")
np.savez_compressed(path, x_train=x[:n_train], y_train=y[:n_train], x_test=xt[:n_test], y_test=yt[:n_test])
print(f"{path}: {n_train} train, {n_test} test images")
EOF
  ls -l "$DEST/cifar10_subset.npz"
  exit $?
fi

OUT=${1:-gpu_cifar_out}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
DATA=${2:-$REPO/build/gpu_data/cifar10_subset.npz}
cd "$REPO"
if [[ -f "$DATA" ]]; then
  DATA_FLAG=(--data-npz "$DATA")
elif [[ -d "$DATA" ]]; then
  DATA_FLAG=(--data-dir "$DATA")
else
  echo "no data at $DATA: run 'bash scripts/gpu_cifar.sh --prepare build/gpu_data' first" | tee "$OUT/summary.txt"
  exit 2
fi

CHECK="import jax, flax, optax, orbax.checkpoint;print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__)"
{ nvidia-smi -L || echo "no nvidia-smi"; "$PY" -c "$CHECK"; } >"$OUT/env.txt" 2>&1 \
  || { cat "$OUT/env.txt"; echo "missing packages on this machine (see env.txt)" | tee "$OUT/summary.txt"; exit 3; }
cat "$OUT/env.txt"

: >"$OUT/epochs.jsonl"
: >"$OUT/summary.txt"
for S in ${SETTINGS:-MRL TTv2 FP}; do
  echo "== $S" | tee -a "$OUT/summary.txt"
  start=$(date +%s)
  case "$S" in MRL|ResL) limit=200 ;; TTv2) limit=150 ;; *) limit=100 ;; esac
  timeout "${RUN_TIMEOUT:-$limit}" "$PY" examples/cifar_resnet.py --optimizer "$S" -block-number 2 2 2 2 \
    -block-type D D D A A A --io-perfect --n-states 4 --epochs "${EPOCHS:-3}" --batch-size 128 \
    --train-subset "${TRAIN_SUBSET:-10000}" "${DATA_FLAG[@]}" --engine "${ENGINE:-jnp}" --no-progress \
    --log-jsonl "$OUT/epochs.jsonl" ${EXTRA_ARGS:-} >"$OUT/$S.log" 2>&1
  rc=$?
  echo "$S: exit $rc after $(( $(date +%s) - start )) s (124 = timed out; completed epochs are in epochs.jsonl)" \
    | tee -a "$OUT/summary.txt"
  tail -5 "$OUT/$S.log"
done

"$PY" - "$OUT/epochs.jsonl" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'setting':8} {'epoch':>5} {'train_loss':>10} {'train_acc':>9} {'test_acc':>8} {'seconds':>8}")
for r in rows:
  print(f"{r['setting']:8} {r['epoch']:5d} {r['train_loss']:10.4f} {r['train_acc']:9.4f} {r['test_acc']:8.4f} "
        f"{r['seconds']:8.1f}")
EOF
