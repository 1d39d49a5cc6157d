#!/usr/bin/env python3
"""Reference CPU timing of AIHWKit 1.1.0's pulsed update and forward pass.

Runs only under the side virtual environment with ``aihwkit==1.1.0`` and
``torch==2.10.0``::

    /work/venvs/aihwkit/bin/python benchmarks/aihwkit_update_timing.py [--repeats 5]

Prints ONE JSON line on stdout::

    {"constant_step_ms": ..., "soft_bounds_ms": ..., "forward_ms": ...,
     "aihwkit": "1.1.0", "threads": torch.get_num_threads(), ...}

* ``constant_step_ms`` / ``soft_bounds_ms``: median wall time of
  ``tile.update(x, d)`` on a 512x512 tile (out = in = 512, no bias) with
  ``ConstantStepDevice()`` / ``SoftBoundsDevice()`` defaults and default
  ``UpdateParameters`` (desired_bl 31, update management and update BL
  management on), ``set_learning_rate(0.1)``, batch 64, x ~ U(-1, 1) and d ~
  U(-1, 1) rescaled so that max|d| = 1 in every row.  With dw_min = 0.001 that
  makes k = lr*max|x|*max|d|/dw_min >= 31 in every row (checked), i.e. BL = 31
  pulses per row.  The weights are reset to the same values (outside the timed
  region) before every call.
* ``forward_ms``: median wall time of ``tile.forward(x)`` of the ConstantStep
  tile with default ``IOParameters`` (noisy, NM ABS_MAX, BM ITERATIVE).

One warm-up call, then ``--repeats`` timed calls (default 5).
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

import aihwkit
from aihwkit.simulator.configs import SingleRPUConfig
from aihwkit.simulator.configs.devices import ConstantStepDevice, SoftBoundsDevice
from aihwkit.simulator.tiles.analog import AnalogTile

SIZE = 512
BATCH = 64
LR = 0.1


def make_tile(device):
    cfg = SingleRPUConfig(device=device)
    cfg.mapping.digital_bias = True
    tile = AnalogTile(SIZE, SIZE, cfg)
    tile.set_learning_rate(LR)
    return tile


def time_calls(fn, before, repeats):
    before()
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        before()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-1, 1, (BATCH, SIZE)).astype(np.float32)
    d = rng.uniform(-1, 1, (BATCH, SIZE)).astype(np.float32)
    d /= np.abs(d).max(axis=1, keepdims=True)
    w0 = rng.uniform(-0.1, 0.1, (SIZE, SIZE)).astype(np.float32)
    xt, dt, wt = torch.from_numpy(x), torch.from_numpy(d), torch.from_numpy(w0)

    result = {}
    details = {}
    for name, device in (
        ("constant_step_ms", ConstantStepDevice()),
        ("soft_bounds_ms", SoftBoundsDevice()),
    ):
        dw_min = device.dw_min
        k = LR * np.abs(x).max(axis=1) * np.abs(d).max(axis=1) / dw_min
        if np.any(k < 31):
            sys.exit(f"k < 31 in some row for {name}: min k = {k.min()}")
        tile = make_tile(device)
        med, times = time_calls(
            lambda tile=tile: tile.update(xt, dt), lambda tile=tile: tile.set_weights(wt),
            args.repeats,
        )
        result[name] = round(med, 3)
        details[name] = [round(t, 3) for t in times]
        if name == "constant_step_ms":
            tile.set_weights(wt)
            with torch.no_grad():
                med_f, times_f = time_calls(lambda tile=tile: tile.forward(xt), lambda: None,
                                            args.repeats)
            result["forward_ms"] = round(med_f, 3)
            details["forward_ms"] = [round(t, 3) for t in times_f]

    out = {
        "constant_step_ms": result["constant_step_ms"],
        "soft_bounds_ms": result["soft_bounds_ms"],
        "forward_ms": result["forward_ms"],
        "aihwkit": aihwkit.__version__,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "shape": [SIZE, SIZE],
        "batch": BATCH,
        "desired_bl": 31,
        "lr": LR,
        "repeats": args.repeats,
        "times_ms": details,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
