"""Float32 rounding bounds for results that XLA reduces in a program- and ISA-dependent order.

Two XLA programs that compute the same sum (a vmapped and a looped step, a sharded and an unsharded one)
may add its terms in different orders; which order XLA picks also depends on the CPU's vector width, so a
result can be bit-identical on an AVX2 machine and differ in the last bits on an AVX-512 one. Tests compare
such results with the bounds below (``docs/reproducibility.md``), never with a blanket rtol.

First-order forward error bounds (Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2): adding
n terms in any order, recursive or tree, has |computed − exact| ≤ (n − 1)·u·Σ|x_i|, u = 2⁻²⁴.
"""

from __future__ import annotations

U = 2.0 ** -24
"""Unit roundoff of float32 (round to nearest)."""


def sum_orders_differ(n_terms: int, abs_sum: float) -> float:
  """The largest |a − b| of two float32 sums of the same n terms in two orders (twice each order's bound)."""
  return 2 * max(n_terms - 1, 0) * U * abs_sum


def epoch_mean_nll(loss: float, batch: int, classes: int, steps: int) -> float:
  """The largest difference of an epoch's mean training loss between two programs that reduce differently.

  The loss is the mean over ``steps`` mini-batches (added up one after the other) of the batch-mean NLL of
  log-softmax outputs over ``classes`` classes, from bit-identical logits. Per row the log-sum-exp adds
  ``classes`` terms in [0, 1]: |Δ log p| ≤ 2u·(C + |log p|); the batch mean adds B of those:
  |Δℓ| ≤ 2u·(C + B·ℓ); the epoch mean of n steps adds n: |ΔL| ≤ 2u·(C + B·L) + (2n − 1)·u·L.

  Args:
    loss: the epoch-mean training loss L (≥ 0, nats).
    batch: rows per mini-batch B.
    classes: classes C.
    steps: mini-batches in the epoch n.
  """
  return 2 * U * (classes + batch * loss) + (2 * steps - 1) * U * loss
