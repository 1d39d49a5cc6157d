"""Transfers between tiles: read a column (or row) of the source through the transfer I/O, write it
into the destination with a pulsed update (AIHWKit ``TransferRPUDevice::readAndUpdate``).

A transfer of source column ``c`` at rate ``lr`` reads ``y = −W_src[:, c]`` (a one-hot forward with
``alpha = −1``, through the transfer-read I/O with noise and bound management off) and applies the
pulsed update with ``x = e_c``, ``d = y``, so that ``E[ΔW_dst[:, c]] = +lr·W_src[:, c]``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mrl_jax.devices import PulsedDevice
from mrl_jax.io import BoundManagement, IOParameters, NoiseManagement, analog_mvm
from mrl_jax.pulses import UpdateParameters
from mrl_jax.tile import TileState, tile_update
from mrl_jax.update import Engine


def transfer_read_io(io: IOParameters) -> IOParameters:
  """AIHWKit forces noise and bound management off for transfer reads."""
  return dataclasses.replace(io, noise_management=NoiseManagement.NONE, bound_management=BoundManagement.NONE,
                             inp_bound=1.0 if io.noise_management != NoiseManagement.NONE else io.inp_bound)


def one_hot_lines(start, n_reads: int, size: int):
  """``float32[n_reads, size]`` one-hot rows for lines ``start … start + n_reads − 1`` (mod size)."""
  idx = (start + jnp.arange(n_reads)) % size
  return jax.nn.one_hot(idx, size, dtype=jnp.float32)


def read_lines(weights, start, n_reads: int, io: IOParameters, key, columns: bool = True):
  """Reads ``n_reads`` consecutive columns (or rows) of ``weights`` negated: ``float32[n_reads, out|in]``.

  Columns are read with forward passes (``y = −W e_c``), rows with backward passes (``y = −Wᵀ e_r``).
  """
  io = transfer_read_io(io)
  size = weights.shape[1] if columns else weights.shape[0]
  probes = one_hot_lines(start, n_reads, size)
  return analog_mvm(weights, probes, io, key, transposed=not columns, alpha=-1.0), probes


def transfer(src: TileState, dst: TileState, start, lr, key, *, n_reads: int, columns: bool,
             read_io: IOParameters, device: PulsedDevice, update: UpdateParameters, engine: Engine = "auto"):
  """One transfer event from tile ``src`` into tile ``dst`` (``TileState`` of ``[out, in]``).

  Args:
    start: int32 first line to read; lines wrap around.
    lr: float32 transfer rate (already scaled by the SGD lr where configured).
    key: PRNG key (read noise and the pulsed write).

  Returns:
    the new destination tile.
  """
  k_read, k_write = jax.random.split(key)
  values, probes = read_lines(src.weights, start, n_reads, read_io, k_read, columns)
  x, d = (probes, values) if columns else (values, probes)
  return tile_update(dst, device, update, x, d, lr, k_write, engine=engine)
