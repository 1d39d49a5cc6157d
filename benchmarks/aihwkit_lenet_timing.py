#!/usr/bin/env python3
"""Reference CPU timing of one AIHWKit 1.1.0 LeNet-5 training step (FP, TT-v1, MRL).

Runs only under the side virtual environment with ``aihwkit==1.1.0`` and
``torch==2.10.0``::

    /work/venvs/aihwkit/bin/python benchmarks/aihwkit_lenet_timing.py [--steps 10]

Prints ONE JSON line on stdout::

    {"FP": ms, "TT-v1": ms, "MRL": ms, "aihwkit": "1.1.0", "threads": n, "steps": n}

Each value is the median wall time (milliseconds) of one full training step --
forward, NLL loss backward and ``AnalogSGD.step()`` -- of the fully analog
LeNet-5 of the MRL MNIST experiment (``mrl_jax/models/lenet.py``):

    AnalogConv2d(1->16, k5) -> Tanh -> MaxPool2 -> AnalogConv2d(16->32, k5) -> Tanh
    -> MaxPool2 -> Tanh -> Flatten(512) -> AnalogLinear(512->128) -> Tanh
    -> AnalogLinear(128->10) -> LogSoftmax

at batch 8 on consecutive batches of the embedded MNIST subset
(``mrl_jax/data/mnist_subset.npz``, pixels / 255, the batches
``benchmarks/bench_lenet_step.py`` trains on), ``AnalogSGD(lr=0.05)``, digital
biases for every setting.  Two warm-up steps, then ``--steps`` timed steps
(default 10).  ``--threads N``
sets ``torch.set_num_threads(N)`` (default: torch's default, one per core).
The numbers are very sensitive to CPU contention: with torch's OpenMP threads
on an oversubscribed machine a step can be ~50x slower than on an idle one, so
run it on a quiet machine (or with ``--threads 1``) and compare the
``threads`` field.

Settings (``mrl_jax/optim/presets.py``, ``docs/seed-parity.md``):

* ``FP``: ``FloatingPointRPUConfig()``.
* ``TT-v1``: ``TransferCompound`` of 2 x ``SoftBoundsDevice(w_min=-1, w_max=1,
  dw_min=0.5)`` (4 states), gamma 0, transfer every 1 mini-batch, 1 column per
  transfer, ``fast_lr=0.1``, ``transfer_lr=1`` scaled by the SGD lr, perfect
  forward, backward and transfer read.  (The reference TT-v1 MNIST run uses a
  10-state ``SoftBoundsReferenceDevice`` and noisy I/O; here it shares the
  MRL devices and perfect I/O so that the three timings are comparable with
  ``benchmarks/bench_lenet_step.py``.)
* ``MRL``: ``TransferCompound`` of 7 x ``SoftBoundsDevice(w_min=-1, w_max=1,
  dw_min=0.5)``, ``gamma_vec = [0.5^(6-k)]``, ``transfer_every_vec = [2*5^k]``
  mini-batches, ``transfer_lr_vec = [0.1*1.2^(6-k)]`` unscaled, perfect I/O.
  This is the MRL configuration without the (non-upstream) warm start and
  plateau hook, i.e. plain upstream ``TransferCompound``.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import torch
from torch import nn

import aihwkit
from aihwkit.nn import AnalogConv2d, AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import (
    FloatingPointRPUConfig,
    IOParameters,
    UnitCellRPUConfig,
)
from aihwkit.simulator.configs.compounds import TransferCompound
from aihwkit.simulator.configs.devices import SoftBoundsDevice

BATCH = 8
LR = 0.05
N_MRL = 7


def sb_device():
    return SoftBoundsDevice(w_min=-1.0, w_max=1.0, dw_min=0.5)


def perfect_io(cfg):
    cfg.forward = IOParameters(is_perfect=True)
    cfg.backward = IOParameters(is_perfect=True)
    return cfg


def fp_config():
    cfg = FloatingPointRPUConfig()
    cfg.mapping.digital_bias = True
    return cfg


def ttv1_config():
    device = TransferCompound(
        unit_cell_devices=[sb_device(), sb_device()],
        gamma=0.0,
        transfer_every=1.0,
        units_in_mbatch=True,
        n_reads_per_transfer=1,
        fast_lr=0.1,
        transfer_lr=1.0,
        scale_transfer_lr=True,
        transfer_forward=IOParameters(is_perfect=True),
    )
    cfg = perfect_io(UnitCellRPUConfig(device=device))
    cfg.mapping.digital_bias = True
    return cfg


def mrl_config():
    # In aihwkit 1.1.0 ``gamma_vec``, ``transfer_every_vec`` and ``transfer_lr_vec``
    # are plain ``List[float]`` fields with one entry per device (n = 7), so they
    # are passed as given.  ``transfer_lr_vec`` is indexed by the source device;
    # the last entries (self transfer of device 6) have no effect.  Only
    # ``unit_cell_devices[0]`` and ``[1]`` are read by the bindings (``[1]`` is
    # replicated for devices 2..6), which is harmless here since all are equal.
    device = TransferCompound(
        unit_cell_devices=[sb_device() for _ in range(N_MRL)],
        gamma_vec=[0.5 ** (N_MRL - 1 - k) for k in range(N_MRL)],
        transfer_every_vec=[2.0 * 5**k for k in range(N_MRL)],
        transfer_lr_vec=[0.1 * 1.2 ** (N_MRL - 1 - k) for k in range(N_MRL)],
        scale_transfer_lr=False,
        units_in_mbatch=True,
        n_reads_per_transfer=1,
        transfer_forward=IOParameters(is_perfect=True),
    )
    cfg = perfect_io(UnitCellRPUConfig(device=device))
    cfg.mapping.digital_bias = True
    return cfg


def lenet5(rpu_config):
    return AnalogSequential(
        AnalogConv2d(1, 16, kernel_size=5, rpu_config=rpu_config),
        nn.Tanh(),
        nn.MaxPool2d(kernel_size=2),
        AnalogConv2d(16, 32, kernel_size=5, rpu_config=rpu_config),
        nn.Tanh(),
        nn.MaxPool2d(kernel_size=2),
        nn.Tanh(),
        nn.Flatten(),
        AnalogLinear(512, 128, rpu_config=rpu_config),
        nn.Tanh(),
        AnalogLinear(128, 10, rpu_config=rpu_config),
        nn.LogSoftmax(dim=1),
    )


def time_setting(rpu_config, batches, steps, warmup=2):
    model = lenet5(rpu_config)
    model.train()
    opt = AnalogSGD(model.parameters(), lr=LR)
    loss_fn = nn.NLLLoss()

    def step(i):
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for i in range(warmup):
        step(i)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        loss = step(warmup + i)
        times.append((time.perf_counter() - t0) * 1e3)
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss.item()}")
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch intra-op threads (default 0: keep torch's default)",
    )
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    subset = np.load(Path(__file__).resolve().parents[1] / "mrl_jax" / "data" / "mnist_subset.npz")
    n = (args.steps + 2) * BATCH
    images = torch.from_numpy(subset["train_images"][:n].astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    labels = torch.from_numpy(subset["train_labels"][:n].astype(np.int64))
    batches = [(images[i:i + BATCH], labels[i:i + BATCH]) for i in range(0, n, BATCH)]

    out = {}
    for name, make in (("FP", fp_config), ("TT-v1", ttv1_config), ("MRL", mrl_config)):
        out[name] = round(time_setting(make(), batches, args.steps), 3)
    out.update(
        aihwkit=aihwkit.__version__,
        threads=torch.get_num_threads(),
        steps=args.steps,
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
