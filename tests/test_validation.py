"""Bad input raises a clear error at construction or trace time, naming the field, value and range."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import mrl_jax as M
from mrl_jax import nn as mnn
from mrl_jax import optim as O
from mrl_jax.io import IOParameters
from mrl_jax.optim.plateau import PlateauRule
from mrl_jax.update import pulsed_update

_W, _X, _D = jnp.zeros((3, 4)), jnp.ones((2, 4)), jnp.ones((2, 3))
_P = M.ConstantStepDevice().init(jax.random.key(0), (3, 4))


def _update(**kw):
  args = dict(weights=_W, params=_P, x=_X, d=_D, lr=0.1, key=jax.random.key(0), device=M.ConstantStepDevice(),
              update=M.UpdateParameters())
  args.update(kw)
  return pulsed_update(**args)


BAD = [
    # devices
    (lambda: M.ConstantStepDevice(dw_min=0.0), ValueError, r"ConstantStepDevice\.dw_min = 0\.0 .* > 0"),
    (lambda: M.ConstantStepDevice(dw_min=-1e-3), ValueError, r"dw_min = -0\.001 .* > 0"),
    (lambda: M.ConstantStepDevice(dw_min=float("nan")), ValueError, r"dw_min = nan .* finite"),
    (lambda: M.SoftBoundsDevice(w_min=1.0, w_max=1.0), ValueError, r"w_min = 1\.0 must be < w_max = 1\.0"),
    (lambda: M.SoftBoundsDevice(w_min=2.0, w_max=-1.0), ValueError, r"w_min = 2\.0 must be < w_max"),
    (lambda: M.ConstantStepDevice(dw_min_std=-0.1), ValueError, r"dw_min_std = -0\.1 .* >= 0"),
    (lambda: M.ConstantStepDevice(dw_min_dtod=-0.3), ValueError, r"dw_min_dtod = -0\.3 .* >= 0"),
    (lambda: M.ConstantStepDevice(w_max_dtod=-1.0), ValueError, r"w_max_dtod = -1\.0"),
    (lambda: M.ConstantStepDevice(up_down_dtod=-0.01), ValueError, r"up_down_dtod"),
    (lambda: M.ConstantStepDevice(reset_std=-1.0), ValueError, r"reset_std = -1\.0"),
    (lambda: M.ConstantStepDevice(lifetime=-5.0), ValueError, r"lifetime = -5\.0"),
    (lambda: M.ConstantStepDevice(diffusion=-0.1), ValueError, r"diffusion = -0\.1"),
    (lambda: M.ConstantStepDevice(corrupt_devices_prob=1.5), ValueError, r"corrupt_devices_prob = 1\.5 .* \[0\.0, 1\.0\]"),
    (lambda: M.ConstantStepDevice(write_noise_std=1.0), ValueError, r"write_noise_std = 1\.0: allowed range is 0"),
    (lambda: M.ConstantStepDevice(enforce_consistency="yes"), ValueError, r"enforce_consistency = 'yes' .* True or False"),
    (lambda: M.LinearStepDevice(gamma_up_dtod=-0.1), ValueError, r"LinearStepDevice\.gamma_up_dtod"),
    (lambda: M.LinearStepDevice(mult_noise=1), ValueError, r"mult_noise = 1"),
    (lambda: M.SoftBoundsReferenceDevice(reference_std=-0.2), ValueError, r"reference_std = -0\.2"),
    (lambda: M.ExpStepDevice(dw_min_std_add=-1.0), ValueError, r"dw_min_std_add"),
    (lambda: M.PowStepDevice(pow_gamma_dtod=-0.1), ValueError, r"pow_gamma_dtod"),
    (lambda: M.PiecewiseStepDevice(piecewise_up=(), piecewise_down=()), ValueError, r"piecewise_up = \(\) .* 1 to 64"),
    (lambda: M.PiecewiseStepDevice(piecewise_up=(1.0, 2.0), piecewise_down=(1.0,)), ValueError,
     r"piecewise_down has 1 values but piecewise_up has 2"),
    (lambda: M.PiecewiseStepDevice(piecewise_up=(1.0, -1.0), piecewise_down=(1.0, 1.0)), ValueError, r"piecewise_up"),
    (lambda: M.SoftBoundsDevice(w_max=1, w_min=-1).with_n_states(1), ValueError, r"n_states = 1 .* >= 2"),
    (lambda: M.limited_state_soft_bounds(float("inf")), ValueError, r"n_states .* finite"),
    (lambda: M.ConstantStepDevice().init(jax.random.key(0), (3,)), ValueError, r"shape = \(3,\) .* \(out, in\)"),
    # update parameters
    (lambda: M.UpdateParameters(desired_bl=0), ValueError, r"desired_bl = 0 .* \[1, 31\]"),
    (lambda: M.UpdateParameters(desired_bl=32), ValueError, r"desired_bl = 32 .* \[1, 31\]"),
    (lambda: M.UpdateParameters(desired_bl=3.5), ValueError, r"desired_bl = 3\.5"),
    (lambda: M.UpdateParameters(pulse_type="bitline"), ValueError, r"pulse_type = 'bitline' .* one of"),
    (lambda: M.UpdateParameters(res=2.0), ValueError, r"res = 2\.0 .* \[0\.0, 1\.0\]"),
    (lambda: M.UpdateParameters(um_grad_scale=0.0), ValueError, r"um_grad_scale = 0\.0 .* > 0"),
    (lambda: M.UpdateParameters(fixed_bl=None), ValueError, r"fixed_bl = None"),
    # I/O
    (lambda: IOParameters(out_bound=0.0), ValueError, r"IOParameters\.out_bound = 0\.0 .* > 0"),
    (lambda: IOParameters(inp_res=-1.0), ValueError, r"inp_res = -1\.0 .* >= 0"),
    (lambda: IOParameters(out_noise=-0.06), ValueError, r"out_noise = -0\.06"),
    (lambda: IOParameters(noise_management="mean"), ValueError, r"noise_management = 'mean' .* one of"),
    (lambda: IOParameters(bound_management="shift"), ValueError, r"bound_management = 'shift'"),
    (lambda: IOParameters(w_noise_type="gaussian"), ValueError, r"w_noise_type = 'gaussian'"),
    (lambda: IOParameters(inp_bound=2.0), ValueError, r"inp_bound = 2\.0 .* 1\.0 when noise_management"),
    (lambda: IOParameters(max_bm_factor=0), ValueError, r"max_bm_factor = 0 .* >= 1"),
    (lambda: IOParameters(inp_asymmetry=2.0), ValueError, r"inp_asymmetry = 2\.0"),
    # pulsed update operands (trace time)
    (lambda: _update(x=jnp.ones((2, 5))), ValueError, r"weights \(3, 4\) needs x \[rows, 4\] .* got x \(2, 5\)"),
    (lambda: _update(d=jnp.ones((3, 3))), ValueError, r"equal rows; got x \(2, 4\) and d \(3, 3\)"),
    (lambda: _update(x=jnp.ones(4)), ValueError, r"x and d must be 2-D"),
    (lambda: _update(x=jnp.ones((2, 4), jnp.float16)), ValueError, r"x: expected dtype float32, got float16"),
    (lambda: _update(weights=jnp.zeros(12)), ValueError, r"weights: expected float32\[out, in\]"),
    (lambda: _update(lr=jnp.ones(2)), ValueError, r"lr: expected a scalar, got shape \(2,\)"),
    (lambda: _update(engine="gpu"), ValueError, r"engine = 'gpu' .* 'auto', 'native', 'jnp'"),
    (lambda: _update(key=jnp.zeros(3, jnp.uint32)), ValueError, r"key: expected a Threefry key"),
    # algorithms
    (lambda: O.TransferCompound(device=M.SoftBoundsDevice(), n_tiles=1), ValueError, r"n_tiles = 1 .* \[2, 32\]"),
    (lambda: O.TransferCompound(device=M.SoftBoundsDevice(), gamma=1.5), ValueError, r"gamma = 1\.5 .* \[0, 1\]"),
    (lambda: O.TransferCompound(device=M.SoftBoundsDevice(), n_tiles=3, transfer_every=(1.0, 0.0)), ValueError,
     r"transfer_every has 2 entries: allowed is exactly n_tiles = 3 \(or one number\)"),
    (lambda: O.TransferCompound(device=M.SoftBoundsDevice(), transfer_every=(0.5, 0.0)), ValueError,
     r"transfer_every\[0\] = 0\.5 .* whole mini-batches"),
    (lambda: O.TransferCompound(device=M.SoftBoundsDevice(), transfer_lr=(-1.0, 1.0)), ValueError, r"transfer_lr"),
    (lambda: O.TransferCompound(device=M.SoftBoundsDevice(), warm_start="cold"), ValueError,
     r"warm_start = 'cold' .* one of 'none', 'direct', 'via_tile1', 'cuda_exact'"),
    (lambda: O.TransferCompound(device=M.SoftBoundsDevice(), warm_start="direct"), ValueError,
     r"warm_start = 'direct' needs n_tiles >= 3"),
    (lambda: O.TransferCompound(device="softbounds"), TypeError, r"device must be a PulsedDevice"),
    (lambda: O.BufferSettings(momentum=1.5), ValueError, r"momentum = 1\.5"),
    (lambda: O.MixedPrecision(device=M.SoftBoundsDevice(), granularity=0.0), ValueError, r"granularity = 0\.0"),
    (lambda: PlateauRule(rule="loss_fall"), ValueError, r"rule = 'loss_fall'"),
    (lambda: PlateauRule(window=3, min_violations=4), ValueError, r"min_violations = 4 .* \[1, window = 3\]"),
    (lambda: O.analog_sgd("softbounds", 0.1, key=0), TypeError, r"analog_sgd: device must be a PulsedDevice"),
    # layers
    (lambda: mnn.AnalogLinear(0, 3, rngs=nnx.Rngs(0)), ValueError, r"AnalogLinear\.in_features = 0 .* >= 1"),
    (lambda: mnn.AnalogConv2d(1, 2, (3, 3, 3), rngs=nnx.Rngs(0)), ValueError, r"kernel_size = \(3, 3, 3\)"),
    (lambda: mnn.AnalogConv2d(1, 2, 3, stride=0, rngs=nnx.Rngs(0)), ValueError, r"stride = \(0, 0\)"),
]


def test_table_has_enough_cases():
  assert len(BAD) >= 40


@pytest.mark.parametrize("make,exc,pattern", BAD, ids=[f"case{i}" for i in range(len(BAD))])
def test_bad_input_raises_clear_error(make, exc, pattern):
  with pytest.raises(exc, match=pattern):
    make()
