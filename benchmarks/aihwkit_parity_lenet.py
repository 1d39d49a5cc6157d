#!/usr/bin/env python3
"""End-to-end parity with AIHWKit 1.1.0: full-MNIST LeNet-5 training of the fair settings, per device seed.

Runs only in the side virtual environment with ``aihwkit==1.1.0`` and ``torch`` (``../shared/spec`` build notes
§12; never a dependency of the project)::

    /work/venvs/aihwkit/bin/python benchmarks/aihwkit_parity_lenet.py --data-dir ../shared/data/mnist \\
        --out docs/study_runs/aihwkit_parity.jsonl

Appends one JSON line per (setting, states, seed) to ``--out`` and skips those already there (an interrupted run
continues where it stopped). The mrl_jax side of the comparison is ``examples/sweep.py`` with the same settings
(``--presets fair``; MRL with ``--warm-start none``); ``docs/results.md`` puts both side by side.

The configurations are ``mrl_jax.optim.presets``' fair ones written as AIHWKit objects: every analog layer on
``SoftBoundsDevice(w_min=-1, w_max=1, dw_min=2/n_states)`` with AIHWKit's default spreads and noise, perfect
forward, backward and transfer reads, digital biases, ``AnalogSGD(lr=0.05)``, batch 8, the data order of
``mrl_jax.data.batching.epoch_order(60000, 0, epoch)`` (numpy PCG64 seeded ``[0, epoch]``):

* ``FP``: ``FloatingPointRPUConfig``.
* ``SGD``: ``SingleRPUConfig`` with the device, ``UpdateParameters()`` (BL 31, UM, UBLM).
* ``TT-v1``: ``TransferCompound`` of 2 devices, γ 0, one column every mini-batch, ``fast_lr`` 0.1,
  ``transfer_lr`` 1 × the SGD lr.
* ``TT-v2``: ``BufferedTransferCompound`` as TT-v1 with ``thres_scale`` 1, gradient write BL 10, transfer writes
  BL 1 without update management (``presets.ttv2``).
* ``MRL``: ``TransferCompound`` of 7 devices, ``gamma_vec`` 0.5^(6−k), ``transfer_every_vec`` 2·5^k mini-batches,
  ``transfer_lr_vec`` 0.1·1.2^(6−k) unscaled, ``fast_lr`` 1 (``presets.resl_mnist`` without the warm start,
  which upstream AIHWKit does not have).

A seed ``s`` sets ``torch.manual_seed(s)`` (initial weights), every device's ``construction_seed`` to ``s + 1``
(device-to-device variation) and the simulator's run-time RNG (libc ``srand(s + 2)``, cycle-to-cycle noise and
pulse trains). Seconds are wall time of the training epoch with ``torch.set_num_threads(--threads)``.
"""

import argparse
import ctypes
import ctypes.util
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import aihwkit
from aihwkit.nn import AnalogConv2d, AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import FloatingPointRPUConfig, IOParameters, SingleRPUConfig, UnitCellRPUConfig
from aihwkit.simulator.configs import UpdateParameters
from aihwkit.simulator.configs.compounds import BufferedTransferCompound, TransferCompound
from aihwkit.simulator.configs.devices import SoftBoundsDevice

SETTINGS = ("FP", "SGD", "TT-v1", "TT-v2", "MRL")
LR = 0.05
BATCH = 8
K = 7


def perfect():
    return IOParameters(is_perfect=True)


def device(n_states, seed):
    return SoftBoundsDevice(w_min=-1.0, w_max=1.0, dw_min=2.0 / n_states, construction_seed=seed + 1)


def rpu_config(setting, n_states, seed):
    """The AIHWKit configuration of one fair setting."""
    if setting == "FP":
        cfg = FloatingPointRPUConfig()
    elif setting == "SGD":
        cfg = SingleRPUConfig(device=device(n_states, seed), update=UpdateParameters())
    else:
        common = dict(units_in_mbatch=True, n_reads_per_transfer=1, transfer_forward=perfect())
        if setting == "TT-v1":
            unit = TransferCompound(unit_cell_devices=[device(n_states, seed) for _ in range(2)], gamma=0.0,
                                    transfer_every=1.0, fast_lr=0.1, transfer_lr=1.0, scale_transfer_lr=True,
                                    **common)
        elif setting == "TT-v2":
            unit = BufferedTransferCompound(
                unit_cell_devices=[device(n_states, seed) for _ in range(2)], gamma=0.0, transfer_every=1.0,
                fast_lr=0.1, transfer_lr=1.0, scale_transfer_lr=True, thres_scale=1.0,
                transfer_update=UpdateParameters(desired_bl=1, update_management=False, update_bl_management=False),
                **common)
        else:
            unit = TransferCompound(
                unit_cell_devices=[device(n_states, seed) for _ in range(K)],
                gamma_vec=[0.5 ** (K - 1 - k) for k in range(K)],
                transfer_every_vec=[2.0 * 5**k for k in range(K)],
                transfer_lr_vec=[0.1 * 1.2 ** (K - 1 - k) for k in range(K)],
                scale_transfer_lr=False, fast_lr=1.0, **common)
        cfg = UnitCellRPUConfig(device=unit)
        if setting == "TT-v2":
            cfg.update = UpdateParameters(desired_bl=10)
    if setting != "FP":
        cfg.forward, cfg.backward = perfect(), perfect()
    cfg.mapping.digital_bias = True
    return cfg


def lenet5(cfg):
    """The reference LeNet-5 (the same layers as ``mrl_jax.models.LeNet5``)."""
    return AnalogSequential(
        AnalogConv2d(1, 16, kernel_size=5, rpu_config=cfg), nn.Tanh(), nn.MaxPool2d(2),
        AnalogConv2d(16, 32, kernel_size=5, rpu_config=cfg), nn.Tanh(), nn.MaxPool2d(2), nn.Tanh(),
        nn.Flatten(), AnalogLinear(512, 128, rpu_config=cfg), nn.Tanh(), AnalogLinear(128, 10, rpu_config=cfg),
        nn.LogSoftmax(dim=1))


def read_idx(path):
    """An IDX file (gzip) as a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(Path(data_dir) / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(Path(data_dir) / f"{prefix}-labels-idx1-ubyte.gz")
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def run(setting, n_states, seed, train, test, epochs):
    torch.manual_seed(seed)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.srand(ctypes.c_uint(seed + 2))
    model = lenet5(rpu_config(setting, n_states, seed))
    opt = AnalogSGD(model.parameters(), lr=LR)
    loss_fn = nn.NLLLoss()
    images, labels = train
    n_batches = len(images) // BATCH
    records = []
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(np.random.default_rng([0, epoch]).permutation(len(images))[: n_batches * BATCH])
        t0, loss_sum = time.time(), 0.0
        for b in range(n_batches):
            idx = order[b * BATCH:(b + 1) * BATCH]
            opt.zero_grad()
            loss = loss_fn(model(images[idx]), labels[idx])
            loss.backward()
            opt.step()
            loss_sum += loss.item()
        seconds = time.time() - t0
        model.eval()
        with torch.no_grad():
            correct, test_loss = 0, 0.0
            for i in range(0, len(test[0]), 1000):
                out = model(test[0][i:i + 1000])
                test_loss += nn.functional.nll_loss(out, test[1][i:i + 1000], reduction="sum").item()
                correct += int((out.argmax(1) == test[1][i:i + 1000]).sum())
        records.append({"epoch": epoch + 1, "train_loss": loss_sum / n_batches, "test_loss": test_loss / len(test[0]),
                        "test_acc": correct / len(test[0]), "seconds": seconds})
    return records


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p.add_argument("--n-states", nargs="+", type=float, default=[4.0, 10.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-subset", type=int, default=0, help="first N training images (0 = all; smoke tests)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--data-dir", required=True, help="folder with the MNIST IDX .gz files")
    p.add_argument("--out", required=True, help="JSONL to append to")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train, test = load(args.data_dir, "train"), load(args.data_dir, "test")
    if args.train_subset:
        train = (train[0][: args.train_subset], train[1][: args.train_subset])
    out = Path(args.out)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["setting"], r["n_states"], r["seed"], r["epochs"], r["train_images"]))
    for setting in args.settings:
        for n in ([None] if setting == "FP" else args.n_states):
            for seed in args.seeds:
                if (setting, n, seed, args.epochs, len(train[0])) in done:
                    continue
                records = run(setting, n or 4.0, seed, train, test, args.epochs)
                row = {"setting": setting, "n_states": n, "seed": seed, "epochs": args.epochs,
                       "train_images": len(train[0]), "records": records,
                       "aihwkit": aihwkit.__version__, "torch": torch.__version__, "threads": args.threads}
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                last = records[-1]
                print(f"{setting} {n} seed {seed}: test acc {last['test_acc']:.4f}, train loss "
                      f"{last['train_loss']:.4f}, {sum(r['seconds'] for r in records):.0f} s", flush=True)


if __name__ == "__main__":
    main()
