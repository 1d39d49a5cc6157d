"""Float32 rounding bounds for results that XLA reduces in a program- and ISA-dependent order.

Two XLA programs that compute the same sum (a vmapped and a looped step, a sharded and an unsharded one)
may add its terms in different orders; which order XLA picks also depends on the CPU's vector width, so a
result can be bit-identical on an AVX2 machine and differ in the last bits on an AVX-512 one. Tests compare
such results with the bounds below (``docs/reproducibility.md``), never with a blanket rtol.

First-order forward error bounds (Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2): adding
n terms in any order, recursive or tree, has |computed − exact| ≤ (n − 1)·u·Σ|x_i|, u = 2⁻²⁴.
"""

from __future__ import annotations

import math

import numpy as np

U = 2.0 ** -24
"""Unit roundoff of float32 (round to nearest)."""


def sum_orders_differ(n_terms: int, abs_sum: float) -> float:
  """The largest |a − b| of two float32 sums of the same n terms in two orders (twice each order's bound)."""
  return 2 * max(n_terms - 1, 0) * U * abs_sum


def epoch_mean_nll(loss: float, batch: int, classes: int, steps: int) -> float:
  """The largest difference of an epoch's mean training loss between two programs that reduce differently.

  The loss is the mean over ``steps`` mini-batches (added up one after the other, then divided) of the
  batch-mean NLL of log-softmax outputs over ``classes`` classes, from bit-identical logits. Per row the
  log-sum-exp adds C terms in [0, 1] and rounds a log of a value ≤ C: |Δ log p| ≤ 2u·(C + ln C + |log p|);
  the batch mean adds B of those: |Δℓ| ≤ 2u·(C + ln C + B·ℓ); the epoch mean of n steps adds n and divides:
  |ΔL| ≤ 2u·(C + ln C + B·L) + 2n·u·L.

  Args:
    loss: the epoch-mean training loss L (≥ 0, nats).
    batch: rows per mini-batch B.
    classes: classes C.
    steps: mini-batches in the epoch n.
  """
  return 2 * U * (classes + math.log(classes) + batch * loss) + 2 * steps * U * loss


def matmul_orders_differ(k: int, abs_products):
  """Elementwise bound on two float32 matmuls (or convolutions) that add their K products in different
  orders: ``abs_products`` is the same product on absolute values (``|A|·|B|``), i.e. Σ|aᵢbᵢ| per element;
  each product rounds once, the same in both."""
  return sum_orders_differ(k, 1.0) * np.asarray(abs_products, np.float64)
