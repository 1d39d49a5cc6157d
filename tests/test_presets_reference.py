"""Reference presets pinned to ``docs/seed-parity.md`` (every field of every setting of ``Mnist_LeNet5.py`` and
``CIFAR-Resnet.py``), the fixes of the fair presets, and the compound's gradient-write granularity against
AIHWKit 1.1.0."""

import json
import operator

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import mrl_jax as M
from mrl_jax import optim as O
from mrl_jax.aihwkit import from_rpu_config
from mrl_jax.io import PERFECT_IO, BoundManagement, IOParameters, NoiseManagement
from mrl_jax.models import LeNet5
from mrl_jax.optim import AnalogGradient
from mrl_jax.optim import presets as P
from mrl_jax.pulses import UpdateParameters
from tests.conftest import CLEAN, load_fixture

NOISY = IOParameters()
READ_NO_MGMT = IOParameters(noise_management=NoiseManagement.NONE, bound_management=BoundManagement.NONE)
UP31 = UpdateParameters()
UP5 = UpdateParameters(desired_bl=5)
UP10 = UpdateParameters(desired_bl=10)
BL1 = UpdateParameters(desired_bl=1, update_management=False, update_bl_management=False)
BL1_UM = UpdateParameters(desired_bl=1, update_management=True, update_bl_management=True)
MNIST_SBREF = {"device_class": "SoftBoundsReferenceDevice", "device.dw_min": 0.2, "device.w_max": 1.0,
               "device.w_min": -1.0, "device.w_max_dtod": 0.3, "device.w_min_dtod": 0.3, "device.dw_min_dtod": 0.3,
               "device.dw_min_std": 0.3, "device.up_down_dtod": 0.01, "device.mult_noise": False,
               "device.reference_std": 0.0, "n_states": 10.0}
CIFAR_SBREF = {"device_class": "SoftBoundsReferenceDevice", "device.dw_min": 0.5, "device.w_max": 1.0,
               "device.w_min": -1.0, "device.w_max_dtod": 0.0, "device.w_min_dtod": 0.0, "device.dw_min_dtod": 0.3,
               "device.dw_min_std": 0.3, "device.mult_noise": False, "n_states": 4.0}
SB4 = {"device_class": "SoftBoundsDevice", "device.dw_min": 0.5, "device.w_max": 1.0, "device.w_min": -1.0,
       "device.w_max_dtod": 0.3, "device.mult_noise": True, "n_states": 4.0}
MNIST_RUN = {"learning_rate": 0.05, "momentum": 0.0, "lr_decay_every": 50, "lr_decay_factor": 0.1, "epochs": 200,
             "batch_size": 8, "loss": "nll_log_softmax"}
CIFAR_RUN = {"learning_rate": 0.1, "momentum": 0.0, "lr_decay_every": 100, "lr_decay_factor": 0.1, "epochs": 200,
             "batch_size": 128, "loss": "label_smoothing"}
MAP_NONE = {"mapping.learn_out_scaling": False, "mapping.weight_scaling_omega": 0.0}


def _tt1(transfer_io, fb_io, device_fields):
  return {**device_fields, "algorithm": "transfer_compound", "config_type": "TransferCompound",
          "config.n_tiles": 2, "config.gammas": (0.0, 1.0), "config.transfer_every": (1.0, 0.0),
          "config.transfer_lr": (1.0, 1.0), "config.scale_transfer_lr": True, "config.fast_lr": 0.1,
          "config.n_reads_per_transfer": 1, "config.transfer_columns": True, "config.update": UP31,
          "config.transfer_update": UP31, "config.transfer_io": transfer_io, "config.warm_start": "none",
          "config.buffer": None, "forward_io": fb_io, "backward_io": fb_io, "mapping.learn_out_scaling": True,
          "mapping.weight_scaling_columnwise": True, "mapping.weight_scaling_omega": 0.0, "no_self_transfer": True,
          "unsupported_fields": ()}


def _chopped(dynamic, device_fields, transfer_io, fb_io):
  out = {**device_fields, "algorithm": "chopped_transfer",
         "config_type": "DynamicTransfer" if dynamic else "ChoppedTransfer", "config.fast_lr": 0.1,
         "config.auto_scale": True, "config.auto_granularity": 1000.0, "config.in_chop_prob": 0.1,
         "config.in_chop_random": not dynamic, "config.out_chop_prob": 0.0, "config.units_in_mbatch": False,
         "config.transfer_every": 1.0, "config.update": UP5, "config.update.desired_bl": 5,
         "config.transfer_update": BL1_UM if dynamic else BL1, "config.transfer_io": transfer_io,
         "config.momentum": 0.0, "config.buffer_granularity": 1.0, "config.forget_buffer": True,
         "config.transfer_lr": 1.0, "config.scale_transfer_lr": True, "forward_io": fb_io, "backward_io": fb_io,
         "mapping.learn_out_scaling": True, "mapping.weight_scaling_columnwise": True,
         "mapping.weight_scaling_omega": 0.6, "unsupported_fields": ()}
  if dynamic:
    out["config.tail_weightening"] = 10.0
  return out


def _mp(device_fields, fb_io):
  return {**device_fields, **MAP_NONE, "algorithm": "mixed_precision", "config_type": "MixedPrecision",
          "config.granularity": 1.0, "config.transfer_every": 1, "config.update": UP31, "update": UP31,
          "forward_io": fb_io, "backward_io": fb_io, "unsupported_fields": ()}


def _resl(script_fields):
  return {**SB4, "algorithm": "transfer_compound", "config_type": "TransferCompound", "config.fast_lr": 1.0,
          "config.n_reads_per_transfer": 1, "config.transfer_columns": True, "config.update": UP31,
          "config.transfer_update": UP31, "config.warm_start": "cuda_exact", "config.buffer": None,
          "config.scale_fast_lr": False, "unsupported_fields": (), **script_fields}


EXPECTED = {
    ("mnist", "MRL"): {**MNIST_RUN, **_resl({
        "config.n_tiles": 7, "config.gammas": (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0),
        "config.transfer_every": (2.0, 10.0, 50.0, 250.0, 1250.0, 6250.0, 31250.0),
        "config.transfer_lr": tuple(0.1 * 1.2**n for n in (6, 5, 4, 3, 2, 1, 0)),
        "config.scale_transfer_lr": False, "config.transfer_io": PERFECT_IO, "config.plateau": O.MNIST_RULE,
        "forward_io": PERFECT_IO, "backward_io": PERFECT_IO, "mapping.learn_out_scaling": False,
        "mapping.weight_scaling_columnwise": True, "mapping.weight_scaling_omega": 0.0})},
    ("mnist", "TTv1"): {**MNIST_RUN, **_tt1(READ_NO_MGMT, NOISY, MNIST_SBREF), "construction_seed": (123, 10)},
    ("mnist", "TTv2"): {**MNIST_RUN, "algorithm": "transfer_compound", "device_class": "SoftBoundsDevice",
                        "device.dw_min": 0.1, "device.w_max": 1.0, "device.w_min": -1.0, "n_states": 20.0,
                        "config.n_tiles": 2, "config.gammas": (0.0, 1.0), "config.transfer_every": (1.0, 0.0),
                        "config.transfer_lr": (1.0, 1.0), "config.scale_transfer_lr": True, "config.fast_lr": 0.1,
                        "config.update": UP10, "config.transfer_update": BL1, "config.transfer_io": PERFECT_IO,
                        "config.buffer.thres_scale": 1.0, "config.buffer.momentum": 0.1, "config.buffer.step": 1.0,
                        "config.buffer.forget_buffer": True, "forward_io": PERFECT_IO, "backward_io": PERFECT_IO,
                        "mapping.learn_out_scaling": True, "mapping.weight_scaling_omega": 0.0,
                        "no_self_transfer": True, "unsupported_fields": ()},
    ("mnist", "TTv3"): {**MNIST_RUN, **_chopped(False, MNIST_SBREF, READ_NO_MGMT, NOISY)},
    ("mnist", "TTv4"): {**MNIST_RUN, **_chopped(True, MNIST_SBREF, NOISY, NOISY)},
    ("mnist", "MP"): {**MNIST_RUN, **_mp(MNIST_SBREF, NOISY)},
    ("mnist", "SGD"): {**MNIST_RUN, **MNIST_SBREF, **MAP_NONE, "algorithm": "analog_sgd", "update": UP31,
                       "forward_io": NOISY, "backward_io": NOISY, "unsupported_fields": ()},
    ("mnist", "FP"): {**MNIST_RUN, **MAP_NONE, "algorithm": "sgd", "config": None, "n_states": None,
                      "unsupported_fields": ()},
    ("cifar", "MRL"): {**CIFAR_RUN, **_resl({
        "config.n_tiles": 8, "config.gammas": tuple(0.5 ** (7 - i) for i in range(8)),
        "config.transfer_every": (3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 192.0, 384.0),
        "config.transfer_lr": tuple(0.3 * 1.2**n for n in (7, 6, 5, 4, 3, 2, 1, 0)),
        "config.scale_transfer_lr": True, "config.transfer_io": NOISY, "config.plateau": O.CIFAR_RULE,
        "forward_io": PERFECT_IO, "backward_io": PERFECT_IO, "mapping.learn_out_scaling": True,
        "mapping.weight_scaling_columnwise": True, "mapping.weight_scaling_omega": 0.0})},
    ("cifar", "TTv1"): {**CIFAR_RUN, **_tt1(PERFECT_IO, PERFECT_IO, CIFAR_SBREF)},
    ("cifar", "TTv2"): {**CIFAR_RUN, **SB4, "algorithm": "transfer_compound", "config.n_tiles": 2,
                        "config.transfer_every": (1.0, 0.0), "config.transfer_lr": (1.0, 1.0),
                        "config.scale_transfer_lr": True, "config.fast_lr": 0.5, "config.update": UP31,
                        "config.transfer_update": BL1, "config.transfer_io": PERFECT_IO,
                        "config.buffer.thres_scale": 0.9, "config.buffer.momentum": 0.1,
                        "config.buffer.forget_buffer": True, "forward_io": PERFECT_IO, "backward_io": PERFECT_IO,
                        "mapping.learn_out_scaling": True, "mapping.weight_scaling_columnwise": True,
                        "mapping.weight_scaling_omega": 0.3, "no_self_transfer": True,
                        "unsupported_fields": ()},
    ("cifar", "TTv3"): {**CIFAR_RUN, **_chopped(False, CIFAR_SBREF, PERFECT_IO, PERFECT_IO)},
    ("cifar", "TTv4"): {**CIFAR_RUN, **_chopped(True, CIFAR_SBREF, PERFECT_IO, PERFECT_IO)},
    ("cifar", "MP"): {**CIFAR_RUN, **_mp({**SB4}, PERFECT_IO)},
    ("cifar", "SGD"): {**CIFAR_RUN, **CIFAR_SBREF, "algorithm": "analog_sgd", "update": UP31,
                       "forward_io": PERFECT_IO, "backward_io": PERFECT_IO, "mapping.learn_out_scaling": True,
                       "mapping.weight_scaling_omega": 0.0, "unsupported_fields": ()},
    ("cifar", "FP"): {**CIFAR_RUN, **MAP_NONE, "algorithm": "sgd", "config": None, "n_states": None,
                      "learning_rate": 0.2, "momentum": 0.0, "unsupported_fields": ()},
}
BUILD = {"mnist": P.lenet5_mnist_reference, "cifar": P.resnet_cifar10_reference}


def _get(preset, path: str):
  if path == "device_class":
    return type(preset.device).__name__
  if path == "config_type":
    return type(preset.config).__name__
  if path == "unsupported_fields":
    return tuple(f for f, _ in preset.unsupported)
  if path.startswith("device."):
    return operator.attrgetter(path[len("device."):])(preset.device)
  return operator.attrgetter(path)(preset)


@pytest.mark.parametrize("script,setting", sorted(EXPECTED))
def test_reference_preset_fields(script, setting):
  """Every field of the setting equals the value that ``docs/seed-parity.md`` cites from the script."""
  preset = BUILD[script](setting)
  assert preset.setting == setting and preset.script == ("Mnist_LeNet5.py" if script == "mnist" else
                                                         "CIFAR-Resnet.py")
  for path, want in EXPECTED[(script, setting)].items():
    got = _get(preset, path)
    if isinstance(want, tuple) and want and isinstance(want[0], float):
      np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=path)
    else:
      assert got == want, (path, got, want)
  json.dumps(preset.describe())  # the run's meta.json can hold it


def test_every_setting_has_a_reference_preset():
  assert {s for _, s in EXPECTED} == set(P.SETTINGS)
  assert {P.canonical_setting(P.REFERENCE_NAMES[s]) for s in P.SETTINGS} == set(P.SETTINGS)
  with pytest.raises(ValueError, match=r"setting = 'TT-v5' is invalid: allowed is one of 'MRL' \('ResL'\)"):
    P.canonical_setting("TT-v5")


def test_script_options():
  """The scripts' flags that change a preset: MNIST --dwmin/--Wmax (TT-v2), CIFAR --io-perfect and -TTST."""
  tt2 = P.lenet5_mnist_reference("TT-v2", tt2_dwmin=0.5, tt2_wmax=1.0)
  assert tt2.n_states == 4.0 and tt2.config.buffer.thres_scale == 1.0
  noisy = P.resnet_cifar10_reference("TTv3", io_perfect=False)
  assert noisy.forward_io == NOISY and noisy.config.transfer_io == READ_NO_MGMT
  assert P.resnet_cifar10_reference("MRL", io_perfect=False).config.transfer_io == NOISY
  st = P.resnet_cifar10_reference("TT-v1", self_transfer=True)
  assert st.no_self_transfer is False and [f for f, _ in st.unsupported] == ["no_self_transfer"]
  with pytest.raises(ValueError, match="self_transfer = True is invalid for MRL"):
    P.resnet_cifar10_reference("MRL", self_transfer=True)
  assert P.lenet5_mnist_reference("MRL", warm_start="direct").config.warm_start == "direct"
  with pytest.raises(ValueError, match="warm_start = 'via_tile1' is invalid"):
    P.lenet5_mnist_reference("MRL", warm_start="via_tile1")


def test_unsupported_fields_refuse_unless_approximated():
  """Self transfers are kept in the data; using them raises, naming the field."""
  v3 = P.resnet_cifar10_reference("TTv3")
  v3.analog_optimizer(0.1, key=0)  # the omega mapping is modelled (in the layers)
  P.lenet5_mnist_reference("mp").analog_optimizer(0.05, key=0)  # so is AIHWKit's MP commit
  with pytest.raises(ValueError, match="approximate = 'no_self_transfer' is invalid for CIFAR-Resnet.py TT-v3"):
    v3.analog_optimizer(0.1, key=0, approximate=("no_self_transfer",))
  with pytest.raises(NotImplementedError, match="no_self_transfer"):
    P.resnet_cifar10_reference("TTv1", self_transfer=True).analog_optimizer(0.1, key=0)
  with pytest.raises(ValueError, match="allowed is nothing"):
    P.lenet5_mnist_reference("MRL").check_supported(("mapping.weight_scaling_omega",))


@pytest.mark.parametrize("script,setting", sorted(EXPECTED))
def test_reference_optimizers_run_one_step(script, setting):
  """Every preset builds its transformations and takes a step on a small analog weight."""
  preset = BUILD[script](setting)
  tx = preset.analog_optimizer(preset.learning_rate_schedule(10), key=3, engine="jnp",
                               approximate=[f for f, _ in preset.unsupported])
  params = {"w": jnp.zeros((3, 4), jnp.float32)}
  grads = {"w": AnalogGradient(jnp.full((2, 4), 0.5), jnp.full((2, 3), 0.2))}
  state = tx.init(params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  assert np.all(np.isfinite(np.asarray(updates["w"])))
  assert preset.learning_rate_schedule(10)(10 * preset.lr_decay_every) == pytest.approx(
      preset.learning_rate * preset.lr_decay_factor)


# ---- fair presets -----------------------------------------------------------------------------------------

def test_fair_chopped_presets_write_gradients_with_bl_5():
  """The reference's ``build_config("ttv3" | "ttv4")`` writes the gradient with ``UpdateParameters(desired_bl=5)``."""
  for cfg in (O.ttv3(4), O.ttv4(10)):
    assert cfg.update == UpdateParameters(desired_bl=5)
    assert cfg.update.update_management and cfg.update.update_bl_management


# ---- gradient-write granularity ---------------------------------------------------------------------------

GRAN, GRAN_META = load_fixture("aihwkit_compound_granularity")


def test_compound_granularity_is_the_mean_over_tiles():
  fast, slow = M.ConstantStepDevice(dw_min=0.01, **CLEAN), M.ConstantStepDevice(dw_min=0.1, **CLEAN)
  cfg = O.TransferCompound(device=slow, fast_device=fast, n_tiles=3, gamma=0.5, transfer_every=(5, 5, 0),
                           transfer_lr=(1, 1, 1))
  assert cfg.gradient_granularity == pytest.approx((0.01 + 2 * 0.1) / 3)


@pytest.mark.parametrize("case", sorted(GRAN_META["cases"]))
def test_compound_gradient_write_matches_aihwkit(case):
  """One gradient write of a compound whose fast device differs from the others: AIHWKit 1.1.0 manages it with the
  mean granularity over all tiles (``VectorRPUDevice::populate``), not the fast device's (which the meta
  parameter's ``calcWeightGranularity`` would give)."""
  spec = GRAN_META["cases"][case]
  k, dw_fast, dw_slow = spec["n_tiles"], spec["dw_fast"], spec["dw_slow"]
  ref = np.asarray(GRAN[f"{case}_samples"], np.float64)
  cfg = from_rpu_config(spec["plain_rpu_config"]).config.replace(engine="jnp")
  assert cfg.batch_periods((1, 1)) == (0,) * (k - 1)  # AIHWKit's transfer_every 0: no transfers
  assert (cfg.n_tiles, cfg.fast_device.dw_min, cfg.device.dw_min) == (k, dw_fast, dw_slow)
  assert cfg.fast_lr == GRAN_META["fast_lr"] and cfg.transfer_io == PERFECT_IO
  params = {"w": jnp.zeros((1, 1), jnp.float32)}
  grads = {"w": AnalogGradient(jnp.ones((1, 1)), jnp.ones((1, 1)))}

  def one(key):
    tx = O.transfer_compound(cfg, GRAN_META["fast_lr"], key=key)
    _, state = tx.update(grads, tx.init(params), params)
    return state.leaves["w"].tiles[0].weights[0, 0]

  ours = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(17), len(ref))), np.float64)
  se = np.sqrt((ours.var(ddof=1) + ref.var(ddof=1)) / len(ref))
  assert abs(ours.mean() - ref.mean()) <= 4 * se + 1e-7, (ours.mean(), ref.mean(), se)
  # The fast-device granularity would give a clearly different mean.
  g_fast = dw_fast
  bl = int(np.ceil(GRAN_META["fast_lr"] / g_fast - 1e-9))
  fast_only = -dw_fast * bl * min(1.0, GRAN_META["fast_lr"] / (g_fast * bl))
  assert abs(fast_only - ref.mean()) > 10 * se


# ---- examples/mnist_lenet5.py --preset ---------------------------------------------------------------------

def _lenet_example():
  import importlib.util
  from pathlib import Path
  path = Path(__file__).resolve().parents[1] / "examples" / "mnist_lenet5.py"
  spec = importlib.util.spec_from_file_location("mnist_lenet5_presets", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _resolve(example, argv):
  parser = example.build_parser()
  args = parser.parse_args(argv)
  return args, example.resolve_reference(parser, args, argv)


def test_mnist_cli_reference_preset_resolves_and_reports(capsys):
  example = _lenet_example()
  args, preset = _resolve(example, ["--preset", "reference", "--SETTING", "TT-v1", "--epochs", "1"])
  assert preset == P.lenet5_mnist_reference("TTv1") and args.setting == "TTv1"
  assert (args.epochs, args.batch_size, args.lr, args.lr_decay_every, args.n_states) == (1, 8, 0.05, 50, 10.0)
  assert "--epochs 1 wins over Mnist_LeNet5.py TT-v1's 200" in capsys.readouterr().err
  args, preset = _resolve(example, ["--preset", "reference", "--setting", "TTv2", "--n-states", "4"])
  assert preset.n_states == 4.0 and preset.config.device.dw_min == 0.5
  assert "sets TT-v2's --dwmin 0.5" in capsys.readouterr().err
  args, preset = _resolve(example, ["--preset", "reference", "--setting", "MRL", "--warm-start", "direct"])
  assert preset.config.warm_start == "direct"
  resolved = example.resolved_config(args)
  assert resolved["preset"] == "reference" and resolved["config"]["warm_start"] == "direct"
  json.dumps(resolved)
  fair = example.build_parser().parse_args(["--setting", "TTv3"])
  assert example.resolved_config(fair)["analog"]["update"]["desired_bl"] == 5


def test_mnist_model_kwargs_carry_the_mapping():
  """The reference TT-v3 builds its LeNet-5 with ω = 0.6 columnwise (every layer mapped), the fair preset
  without mapping."""
  example = _lenet_example()
  args, _ = _resolve(example, ["--preset", "reference", "--setting", "TTv3"])
  kw = example.model_kwargs(args)
  assert (kw["weight_scaling_omega"], kw["weight_scaling_columnwise"], kw["learn_out_scale"]) == (0.6, True, True)
  model = LeNet5(rngs=nnx.Rngs(0), **kw)
  assert all(layer.mapping_scale is not None for layer in (model.conv1, model.conv2, model.fc1, model.fc2))
  fair = example.build_parser().parse_args(["--setting", "TTv3"])
  assert "weight_scaling_omega" not in example.model_kwargs(fair)


@pytest.mark.parametrize("argv,message", [
    (["--setting", "TT-v1", "--n-states", "4"], "--n-states 4 conflicts with --preset reference: Mnist_LeNet5.py "
                                                "TT-v1 fixes 10 states"),
    (["--setting", "MRL", "--tiles", "5"], "--tiles conflicts with --preset reference"),
    (["--setting", "SGD", "--no-io-perfect"], "--io-perfect/--no-io-perfect conflicts with --preset reference"),
    (["--setting", "MRL", "--warm-start", "via_tile1"], "ResL runs cuda_exact"),
    (["--setting", "SGD", "--approximate", "mapping.weight_scaling_omega"], "approximate = "
                                                                            "'mapping.weight_scaling_omega' is invalid"),
])
def test_mnist_cli_reference_preset_refuses_conflicts(argv, message, capsys):
  with pytest.raises(SystemExit) as exit_info:
    _lenet_example().main(["--preset", "reference", "--embedded", "--epochs", "1", *argv])
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err


# ---- examples/cifar_resnet.py --preset --------------------------------------------------------------------

def _cifar_example():
  import importlib.util
  from pathlib import Path
  path = Path(__file__).resolve().parents[1] / "examples" / "cifar_resnet.py"
  spec = importlib.util.spec_from_file_location("cifar_resnet_presets", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_cifar_cli_reference_preset_resolves_and_reports(capsys):
  example = _cifar_example()
  parser = example.build_parser()
  argv = ["--preset", "reference", "--optimizer", "TT-v3", "--epochs", "1", "--width", "8", "--no-io-perfect"]
  args = parser.parse_args(argv)
  preset = example.resolve_reference(parser, args, argv)
  assert preset == P.resnet_cifar10_reference("TTv3", io_perfect=False)
  assert (args.epochs, args.batch_size, args.lr, args.lr_step, args.width, args.cutout, args.autoaugment,
          args.n_states) == (1, 128, 0.1, 100, 8, True, True, 4.0)
  err = capsys.readouterr().err
  assert "--epochs 1 wins over CIFAR-Resnet.py TT-v3's 200" in err and "--width 8 wins" in err
  fp = parser.parse_args(["--preset", "reference", "--optimizer", "FP SGD"])
  example.resolve_reference(parser, fp, ["--preset", "reference", "--optimizer", "FP SGD"])
  assert fp.lr == 0.2 and example.resolved_config(fp)["momentum"] == 0.0
  for argv, message in ((["--optimizer", "MRL", "--n-states", "10"], "--n-states conflicts"),
                        (["--optimizer", "TTv1", "--label-smoothing", "0.2"], "--label-smoothing conflicts"),
                        (["--optimizer", "TTv1", "--approximate", "mixed_precision.commit"],
                         "approximate = 'mixed_precision.commit' is invalid")):
    with pytest.raises(SystemExit):
      example.main(["--preset", "reference", "--synthetic", "64", *argv])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("script,setting", sorted(EXPECTED))
def test_layer_kwargs_carry_io_scale_and_mapping(script, setting):
  """``ReferencePreset.layer_kwargs()`` (what both example scripts build their models with) is the table's I/O,
  learned output scale and ω mapping."""
  preset, want = BUILD[script](setting), EXPECTED[(script, setting)]
  kw = preset.layer_kwargs()
  assert kw["weight_scaling_omega"] == want["mapping.weight_scaling_omega"]
  assert kw["learn_out_scale"] == want.get("mapping.learn_out_scaling", False)
  assert kw["weight_scaling_columnwise"] == preset.mapping.weight_scaling_columnwise
  assert (kw["forward_io"], kw["backward_io"]) == (preset.forward_io, preset.backward_io)


def test_cifar_reference_model_is_mapped():
  """``examples/cifar_resnet.py --preset reference --optimizer TT-v2`` builds its analog layers with ω 0.3."""
  example = _cifar_example()
  parser = example.build_parser()
  argv = ["--preset", "reference", "--optimizer", "TT-v2", "--width", "2", "--block-number", "1", "1", "1", "1"]
  args = parser.parse_args(argv)
  example.resolve_reference(parser, args, argv)
  model = example.build_model(args)
  for layer in (model.fc, model.layer4[0].conv1):
    w = np.asarray(layer.weight[...])
    np.testing.assert_allclose(np.abs(w).max(axis=1), 0.3, rtol=1e-6)
    assert layer.mapping_scale[...].shape == (w.shape[0],)
  assert model.layer1[0].conv1.__class__.__name__ == "Conv"  # digital parts carry no mapping


def test_cifar_label_smoothing_as_coded():
  """``smooth_one_hot``: the true class 1 − s, the other classes s/(C − 1)."""
  targets = np.asarray(_cifar_example().smooth_targets(jnp.array([2, 0]), 10, 0.1))
  np.testing.assert_allclose(targets[0], [0.1 / 9] * 2 + [0.9] + [0.1 / 9] * 7, rtol=1e-6)
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)


# ---- the fork's set_flags semantics ----------------------------------------------------------------------------

def test_request_switch_has_set_flags_semantics():
  """``tile.set_flags``: the flag is overwritten (False after True cancels), several True are one switch, and
  once the cascade runs requests do nothing."""
  cfg = O.mrl_mnist(4, n_tiles=3).replace(transfer_every=(2.0, 4.0, 8.0), transfer_lr=(0.2, 0.1, 0.1),
                                          warm_start="direct", engine="jnp")
  tx = O.transfer_compound(cfg, 0.05, key=0)
  params = {"w": jnp.zeros((3, 4), jnp.float32)}
  grads = {"w": AnalogGradient(jnp.full((1, 4), 0.1), jnp.full((1, 3), 0.1))}
  step = jax.jit(lambda st: tx.update(grads, st, params)[1])
  target = lambda st: int(O.warm_start_target(st))
  state = step(O.request_switch(O.request_switch(tx.init(params)), False))
  assert target(state) == 2
  state = step(O.request_switch(O.request_switch(state)))
  assert target(state) == 1
  for _ in range(2):
    state = step(O.request_switch(state))
  assert target(state) == -1
  state = step(O.request_switch(state))
  assert target(state) == -1
  with pytest.raises(ValueError, match="request_switch.requested = 1 is invalid"):
    O.request_switch(state, 1)


def test_cifar_cutout_and_autoaugment_as_coded():
  """Cutout: one rectangle of one gray level per image; AutoAugment: gray-128 fill, rotation without a random sign,
  solarize threshold 256·(1 − bin/9)."""
  example = _cifar_example()
  white = np.full((32, 32, 32, 3), 255, np.uint8)
  out = example.cutout(white, np.random.default_rng(0), p=1.0)
  for img in out:
    changed = np.any(img != 255, axis=-1)
    rows, cols = np.nonzero(changed)
    assert changed.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # a full rectangle
    assert len(np.unique(img[changed])) == 1  # one value for every pixel and channel
  pytest.importorskip("PIL")
  from PIL import Image
  assert example._magnitude("Rotate", 9, 32) == (30.0, False)
  assert example._magnitude("Solarize", 0, 32) == (256.0, False)
  shifted = np.asarray(example._apply_op(Image.fromarray(white[0]), "TranslateX", 16.0))
  assert np.all(shifted[:, 16:] == 128) and np.all(shifted[:, :16] == 255)
