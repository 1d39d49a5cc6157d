"""Analog nnx layers: outputs equal the tile MVM, im2col equals lax.conv, the tape yields (x, d)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import mrl_jax as M
from mrl_jax import nn as mnn
from mrl_jax import optim as O
from mrl_jax.io import IOParameters, analog_mvm
from mrl_jax.tile import analog_matmul
from tests import rounding


def test_linear_output_equals_tile_mvm():
  io = IOParameters(out_noise=0.0)
  layer = mnn.AnalogLinear(20, 7, forward_io=io, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (5, 20))
  expected = analog_mvm(layer.weight.value, x, io, jax.random.key(2)) + layer.bias.value
  np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(expected))


def test_noisy_linear_uses_its_noise_stream():
  layer = mnn.AnalogLinear(20, 7, forward_io=IOParameters(), rngs=nnx.Rngs(params=0, noise=1))
  x = jnp.ones((3, 20))
  assert not np.array_equal(np.asarray(layer(x)), np.asarray(layer(x)))  # fresh output noise per call


@pytest.mark.parametrize("kw", [dict(kernel_size=5), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, dilation=2, padding="SAME"),
                                dict(kernel_size=(3, 2), stride=(1, 2), padding="VALID")])
def test_conv_im2col_equals_lax_conv(kw):
  conv = mnn.AnalogConv2d(3, 6, rngs=nnx.Rngs(0), **kw)
  x = jax.random.normal(jax.random.key(1), (2, 11, 12, 3))
  kh, kw_ = conv.kernel_size
  kernel = conv.weight.value.reshape(6, 3, kh, kw_).transpose(2, 3, 1, 0)  # (C, kh, kw) order → HWIO
  run = lambda x, kernel: jax.lax.conv_general_dilated(x, kernel, conv.stride, conv.padding,
                                                       rhs_dilation=conv.dilation,
                                                       dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")
  ref = np.asarray(run(x, kernel) + conv.bias.value)
  # im2col + matmul and XLA's convolution add the K = C·kh·kw products in their own orders; both add the bias.
  bound = rounding.matmul_orders_differ(kernel[..., 0].size, run(jnp.abs(x), jnp.abs(kernel))) + 2 * rounding.U * np.abs(ref)
  assert np.all(np.abs(np.asarray(conv(x)) - ref) <= bound)


def test_tape_gives_rows_and_output_gradients():
  """Σ_rows dᵀx of the tape equals the dense weight gradient; x rows are the layer inputs/patches."""

  class Net(nnx.Module):
    def __init__(self):
      self.conv = mnn.AnalogConv2d(2, 3, 3, rngs=nnx.Rngs(0))
      self.fc = mnn.AnalogLinear(3 * 4 * 4, 5, rngs=nnx.Rngs(1))

    def __call__(self, x):
      h = jnp.tanh(self.conv(x))
      return self.fc(h.reshape(h.shape[0], -1))

  net = Net()
  x = jax.random.normal(jax.random.key(2), (4, 6, 6, 2))
  y = jnp.array([0, 1, 2, 3])
  loss_fn = lambda m, x, y: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
  loss, grads = mnn.value_and_analog_grad(loss_fn)(net, x, y)
  dense = nnx.grad(loss_fn)(net, x, y)
  for name in ("conv", "fc"):
    g = getattr(grads, name)["weight"].value
    assert isinstance(g, O.AnalogGradient)
    # Σ over the rows (64 conv patches, 4 samples) in two programs: within the float32 summation bound.
    rows = g.x.shape[0]
    bound = rounding.matmul_orders_differ(rows, jnp.abs(g.d).T @ jnp.abs(g.x))
    assert np.all(np.abs(np.asarray(g.d.T @ g.x) - np.asarray(getattr(dense, name)["weight"].value)) <= bound)
    bias_bound = rounding.sum_orders_differ(rows, 1.0) * np.asarray(jnp.abs(g.d).sum(0))
    assert np.all(np.abs(np.asarray(getattr(grads, name)["bias"].value) -
                         np.asarray(getattr(dense, name)["bias"].value)) <= bias_bound)
  assert grads.conv["weight"].value.x.shape == (4 * 4 * 4, 18)  # one row per output position
  np.testing.assert_allclose(np.asarray(grads.conv["weight"].value.x[:16]),
                             np.asarray(net.conv.patches(x)[0].reshape(16, 18)))
  assert float(loss) == pytest.approx(float(loss_fn(net, x, y)))


def test_convert_to_analog_keeps_outputs():
  class Digital(nnx.Module):
    def __init__(self):
      self.conv = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=nnx.Rngs(0))
      self.fc = nnx.Linear(4 * 6 * 6, 5, rngs=nnx.Rngs(1))

    def __call__(self, x):
      return self.fc(self.conv(x).reshape(x.shape[0], -1))

  model = Digital()
  x = jax.random.normal(jax.random.key(3), (2, 8, 8, 3))
  before = np.asarray(model(x))
  w_conv, w_fc = jnp.abs(model.conv.kernel[...]), jnp.abs(model.fc.kernel[...])
  abs_conv = jax.lax.conv_general_dilated(jnp.abs(x), w_conv, (1, 1), "VALID",
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))
  conv_out = np.asarray(model.conv(x))
  mnn.convert_to_analog(model)
  assert isinstance(model.conv, mnn.AnalogConv2d) and isinstance(model.fc, mnn.AnalogLinear)
  # The conv's K = 27 products and the linear layer's K = 144 are added in other orders by im2col + matmul: the
  # conv's bound (plus its bias rounding) carried through |W_fc|, plus the linear layer's own.
  conv_err = (rounding.matmul_orders_differ(27, abs_conv) + 2 * rounding.U * np.abs(conv_out)).reshape(2, -1)
  h = np.abs(conv_out).reshape(2, -1) + conv_err
  bound = (conv_err @ np.asarray(w_fc) + rounding.matmul_orders_differ(144, h @ np.asarray(w_fc))
           + 2 * rounding.U * np.abs(before))
  assert np.all(np.abs(np.asarray(model(x)) - before) <= bound)


def test_layer_validation():
  with pytest.raises(ValueError, match="kernel_size"):
    mnn.AnalogConv2d(1, 2, 0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="padding"):
    mnn.AnalogConv2d(1, 2, 3, padding="FULL", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"AnalogLinear: expected inputs \[..., 4\]"):
    mnn.AnalogLinear(4, 2, rngs=nnx.Rngs(0))(jnp.ones((3, 5)))
  with pytest.raises(TypeError, match="forward_io"):
    mnn.AnalogLinear(4, 2, forward_io="perfect", rngs=nnx.Rngs(0))


def test_tape_writes_back_noise_counters():
  """Noisy I/O draws from the layer's RNG stream inside the differentiated step; the advanced counter
  must be written back to the model (a second step draws fresh noise)."""
  layer = mnn.AnalogLinear(6, 3, forward_io=IOParameters(), backward_io=IOParameters(), rngs=nnx.Rngs(params=0, noise=1))
  loss_fn = lambda m, x: jnp.sum(m(x) ** 2)
  x = jnp.ones((2, 6))
  count0 = int(layer.noise_rngs.noise.count[...])
  _, g1 = mnn.value_and_analog_grad(loss_fn)(layer, x)
  assert int(layer.noise_rngs.noise.count[...]) > count0
  _, g2 = mnn.value_and_analog_grad(loss_fn)(layer, x)
  assert not np.array_equal(np.asarray(g1.weight.get_value().d), np.asarray(g2.weight.get_value().d))


def test_max_pool_equals_nnx_max_pool_with_ties():
  """Values and gradients bit for bit, under jit, also where a window holds several equal maxima (the gradient
  goes to the first in row-major order, as nnx.max_pool's and torch's)."""
  x = jnp.round(jax.random.normal(jax.random.key(0), (3, 8, 6, 5)) * 2) / 2  # many tied windows
  x = x.at[0, :4, :4, 0].set(0.3)
  ref = lambda x: nnx.max_pool(x, (2, 2), (2, 2))
  loss = lambda pool: jax.jit(jax.value_and_grad(lambda x: jnp.sum(jnp.sin(pool(x) * 3.0 + jnp.arange(5)))))
  np.testing.assert_array_equal(jax.jit(mnn.max_pool)(x), ref(x))
  (v1, g1), (v2, g2) = loss(ref)(x), loss(mnn.max_pool)(x)
  assert v1 == v2
  np.testing.assert_array_equal(g1, g2)
  with pytest.raises(ValueError, match="multiples of the window"):
    mnn.max_pool(jnp.ones((1, 5, 4, 1)))
