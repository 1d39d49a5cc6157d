"""``mrl_jax.aihwkit.from_rpu_config`` on the seed's AIHWKit configurations, without AIHWKit.

The configurations are AIHWKit 1.1.0 objects written in plain form by ``tests/fixtures/make_rpu_config_fixtures.py``
(side environment); each is translated here and compared field by field with the hand-written reference preset of
the same setting, so the translator and ``optim.presets`` check each other.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mrl_jax
import mrl_jax as M
from mrl_jax import aihwkit as A
from mrl_jax.io import PERFECT_IO
from mrl_jax.optim.presets import lenet5_mnist_reference, resnet_cifar10_reference
from mrl_jax.pulses import PulseType

from conftest import FIXTURES

CONFIGS = json.loads((FIXTURES / "aihwkit_rpu_configs.json").read_text())
SCRIPTS = {"lenet5_mnist": lenet5_mnist_reference, "resnet_cifar10": resnet_cifar10_reference}
CASES = [(script, setting) for script in SCRIPTS for setting in sorted(CONFIGS[script])]


def _effective_io(io):
  """A perfect MVM ignores every other I/O field (the scripts set ``is_perfect`` on top of NM/BM ``none``)."""
  return PERFECT_IO if io.is_perfect else io


def _translate(script, setting):
  preset = SCRIPTS[script](setting)
  extra = {}
  if preset.algorithm == "transfer_compound":  # the fork's warm start is no AIHWKit 1.1.0 field
    extra = dict(warm_start=preset.config.warm_start, plateau=preset.config.plateau)
  return A.from_rpu_config(CONFIGS[script][setting], **extra), preset


def _comparable(config):
  """The config with its I/O fields reduced to what they do, and γ as the per-tile vector."""
  if config is None or not dataclasses.is_dataclass(config):
    return config
  changes = {f.name: _effective_io(getattr(config, f.name)) for f in dataclasses.fields(config)
             if f.name.endswith("_io")}
  if hasattr(config, "gammas"):
    changes.update(gamma=0.0, gamma_vec=config.gammas)
  return dataclasses.replace(config, **changes)


def test_fixture_holds_every_seed_setting():
  assert CONFIGS["aihwkit_version"].startswith("1.1.")
  for script in SCRIPTS:
    assert sorted(CONFIGS[script]) == sorted(("ResL", "TTv1", "TTv2", "TTv3", "TTv4", "MP", "SGD", "FP"))


@pytest.mark.parametrize("script,setting", CASES)
def test_seed_configuration_matches_reference_preset(script, setting):
  got, preset = _translate(script, setting)
  assert got.algorithm == preset.algorithm
  assert _comparable(got.config) == _comparable(preset.config)
  assert _effective_io(got.forward_io) == _effective_io(preset.forward_io)
  assert _effective_io(got.backward_io) == _effective_io(preset.backward_io)
  assert got.mapping == preset.mapping
  if preset.update is not None:
    assert got.update == preset.update
  assert got.layer_kwargs() == {**preset.layer_kwargs(), "forward_io": got.forward_io,
                                "backward_io": got.backward_io}
  # deliberate differences (MP's commit) are the preset's unsupported fields, construction seeds are recorded
  assert [f for f, _ in got.approximations] == [f for f, _ in preset.unsupported]
  assert sorted({s for _, s in got.construction_seeds}) == sorted(set(preset.construction_seed or ()))


@pytest.mark.parametrize("script,setting", CASES)
def test_seed_configuration_builds_its_optimizer(script, setting):
  got, _ = _translate(script, setting)
  tx = got.optimizer(0.05, key=jax.random.key(0), approximate=[f for f, _ in got.approximations])
  state = tx.init({"w": jnp.full((3, 4), 0.1, jnp.float32)})
  assert bool(jax.tree.leaves(state)) == (got.algorithm != "sgd")  # floating point SGD keeps no state


def test_json_round_trip_and_partial_plain_form():
  plain = CONFIGS["lenet5_mnist"]["SGD"]
  assert A.from_rpu_config(json.loads(json.dumps(plain))) == A.from_rpu_config(plain)
  # omitted fields take AIHWKit's defaults; a nested dict without "__class__" has its default's class
  short = {"__class__": "SingleRPUConfig",
           "device": {"__class__": "SoftBoundsReferenceDevice", "dw_min": 0.2, "w_max": 1.0, "w_min": -1.0,
                      "construction_seed": 10}}
  assert A.from_rpu_config(short) == A.from_rpu_config(plain)
  perfect = A.from_rpu_config({**short, "forward": {"is_perfect": True}})
  assert perfect.forward_io == PERFECT_IO and perfect.backward_io == A.from_rpu_config(short).backward_io


def test_enum_spellings():
  cfg = A.from_rpu_config({"__class__": "SingleRPUConfig",
                           "update": {"pulse_type": "PulseType.DETERMINISTIC_IMPLICIT", "desired_bl": 5},
                           "forward": {"noise_management": "NoiseManagementType.MAX",
                                       "bound_management": "BoundManagementType.NONE"},
                           "device": {"__class__": "ConstantStepDevice"}})
  assert cfg.update.pulse_type is PulseType.DETERMINISTIC_IMPLICIT and cfg.update.desired_bl == 5
  assert cfg.forward_io.noise_management.value == "max" and cfg.forward_io.bound_management.value == "none"
  message = (r"rpu_config\.forward\.noise_management = 'NoiseManagementType\.AVERAGE_ABS_MAX'"
             r".*'NoiseManagementType.ABS_MAX'")
  with pytest.raises(A.UnsupportedRPUConfig, match=message):
    A.from_rpu_config({"__class__": "SingleRPUConfig", "forward": {"noise_management":
                                                                   "NoiseManagementType.AVERAGE_ABS_MAX"}})


def _unsupported_resl():
  c = copy.deepcopy(CONFIGS["lenet5_mnist"]["ResL"])
  dev = c["device"]
  dev.update(bogus=3)
  dev["unit_cell_devices"][3]["dw_min"] = 0.2
  dev["unit_cell_devices"][0]["reverse_up"] = True
  dev["transfer_forward"]["ir_drop"] = 0.5
  c["update"]["d_sparsity"] = True
  c["mapping"].update(learn_out_scaling=True, out_scaling_columnwise=True)
  c["runtime"]["data_type"] = "RPUDataType.DOUBLE"
  return c


def test_unsupported_fields_raise_one_error_naming_each():
  with pytest.raises(A.UnsupportedRPUConfig) as err:
    A.from_rpu_config(_unsupported_resl())
  expected = {
      "rpu_config.device.bogus": 3, "rpu_config.device.unit_cell_devices[3].dw_min": 0.2,
      "rpu_config.device.unit_cell_devices[0].reverse_up": True,
      "rpu_config.device.transfer_forward.ir_drop": 0.5, "rpu_config.update.d_sparsity": True,
      "rpu_config.mapping.out_scaling_columnwise": True, "rpu_config.runtime.data_type": "RPUDataType.DOUBLE"}
  assert {path: value for path, value, _ in err.value.problems} == expected
  message = str(err.value)
  for path, value in expected.items():
    assert f"{path} = {value!r}" in message
  assert isinstance(err.value, ValueError)


def test_transfer_compound_options_translate():
  """Row-counted periods, random selection and column resets are modelled; ``no_self_transfer`` changes nothing
  in AIHWKit 1.1.0 (measured: ``tests/fixtures/make_row_period_fixtures.py``, case ``k3_rows_vec``) and is
  accepted either way; a reset probability on the buffered compound, which AIHWKit ignores, is refused."""
  c = copy.deepcopy(CONFIGS["lenet5_mnist"]["ResL"])
  c["device"].update(units_in_mbatch=False, no_self_transfer=False, random_selection=True, with_reset_prob=0.1)
  cfg = A.from_rpu_config(c).config
  assert (cfg.units_in_mbatch, cfg.random_selection, cfg.with_reset_prob) == (False, True, 0.1)
  assert cfg.row_periods((6, 25)) == (2, 10, 50, 250, 1250, 6250)
  three = copy.deepcopy(CONFIGS["lenet5_mnist"]["TTv1"])
  three["device"]["unit_cell_devices"].append(three["device"]["unit_cell_devices"][1])
  three = A.from_rpu_config(three).config  # no transfer_every_vec: AIHWKit's T·(out/n_reads)^k per weight
  assert three.transfer_every == 1.0 and three.batch_periods((10, 5)) == (1, 10)
  v2 = copy.deepcopy(CONFIGS["lenet5_mnist"]["TTv2"])
  v2["device"]["with_reset_prob"] = 0.1
  with pytest.raises(A.UnsupportedRPUConfig, match=r"rpu_config\.device\.with_reset_prob = 0\.1: AIHWKit's buffered "
                                                   r"compound ignores it"):
    A.from_rpu_config(v2)


def test_bad_structure_and_warm_start_are_named():
  with pytest.raises(A.UnsupportedRPUConfig, match=r"rpu_config = 'InferenceRPUConfig'.*SingleRPUConfig"):
    A.from_rpu_config({"__class__": "InferenceRPUConfig"})
  with pytest.raises(A.UnsupportedRPUConfig, match=r"warm_start = 'cuda_exact' needs n_tiles >= 3, got 2"):
    A.from_rpu_config(CONFIGS["lenet5_mnist"]["TTv1"], warm_start="cuda_exact")
  with pytest.raises(A.UnsupportedRPUConfig, match=r"unit_cell_devices = '3 device\(s\)': allowed is exactly 2"):
    chopped = copy.deepcopy(CONFIGS["lenet5_mnist"]["TTv3"])
    chopped["device"]["unit_cell_devices"].append(chopped["device"]["unit_cell_devices"][1])
    A.from_rpu_config(chopped)
  with pytest.raises(TypeError, match="rpu_config must be"):
    A.from_rpu_config("SingleRPUConfig")


def test_fast_device_and_approximations():
  c = copy.deepcopy(CONFIGS["lenet5_mnist"]["TTv1"])
  c["device"]["unit_cell_devices"][0]["dw_min"] = 0.1
  got = A.from_rpu_config(c)
  assert got.config.fast_device.dw_min == 0.1 and got.config.device.dw_min == 0.2 and got.device.dw_min == 0.1
  mp = A.from_rpu_config(CONFIGS["lenet5_mnist"]["MP"])
  assert mp.approximations == () and mp.config.update == mp.update  # the commit's pulse train: AIHWKit's
  mp.optimizer(0.05, key=0)
  with pytest.raises(ValueError, match="approximate = 'x' is invalid"):
    mp.optimizer(0.05, key=0, approximate=("x",))


def test_found_from_the_package():
  assert mrl_jax.from_rpu_config is A.from_rpu_config
  assert "from_rpu_config" in (mrl_jax.__doc__ or "")


def test_with_aihwkit_objects_when_importable():
  """Only where AIHWKit is installed (never in CI): an object and its plain form translate alike."""
  configs = pytest.importorskip("aihwkit.simulator.configs")
  cfg = configs.SingleRPUConfig(device=configs.SoftBoundsReferenceDevice(dw_min=0.2, w_max=1.0, w_min=-1.0,
                                                                         construction_seed=10))
  assert A.from_rpu_config(cfg) == A.from_rpu_config(CONFIGS["lenet5_mnist"]["SGD"])


def test_tile_split_sizes():
  base = {"__class__": "SingleRPUConfig", "device": {"__class__": "ConstantStepDevice"}}
  assert A.from_rpu_config({**base, "mapping": {"max_input_size": 0, "max_output_size": 0}})
  with pytest.raises(A.UnsupportedRPUConfig, match=r"rpu_config\.mapping\.max_input_size = 256: mrl_jax keeps one"):
    A.from_rpu_config({**base, "mapping": {"max_input_size": 256}})
  with pytest.raises(A.UnsupportedRPUConfig, match=r"rpu_config = None: .*names every class in '__class__'"):
    A.from_rpu_config({"device": {}})


def test_single_parts():
  dev = A.device_from_plain({"__class__": "GokmenVlasovPresetDevice", "dw_min": 0.01})
  assert dev == M.GokmenVlasovPresetDevice(dw_min=0.01)  # an AIHWKit preset keeps its own defaults
  assert A.device_from_plain({"__class__": "SoftBoundsDevice", "dw_min": 0.5, "w_max": 1.0, "w_min": -1.0}) == \
      M.SoftBoundsDevice(dw_min=0.5, w_max=1.0, w_min=-1.0)
  assert A.io_from_plain({"is_perfect": True}) == PERFECT_IO
  assert A.update_from_plain({"desired_bl": 1, "update_management": False}).desired_bl == 1
  with pytest.raises(A.UnsupportedRPUConfig) as err:
    A.device_from_plain({"__class__": "SoftBoundsDevice", "reverse_up": True, "drift": {"nu": 0.1}})
  assert {(p, v) for p, v, _ in err.value.problems} == {("device.reverse_up", True), ("device.drift.nu", 0.1)}
  with pytest.raises(A.UnsupportedRPUConfig, match=r"device = 'IdealDevice': not a device mrl_jax models"):
    A.device_from_plain({"__class__": "IdealDevice"})
  with pytest.raises(A.UnsupportedRPUConfig, match=r"io = 'UpdateParameters': allowed is an AIHWKit IOParameters"):
    A.io_from_plain({"__class__": "UpdateParameters"})


PRESETS = ("ReRamESPresetDevice", "ReRamSBPresetDevice", "CapacitorPresetDevice", "EcRamPresetDevice",
           "EcRamMOPresetDevice", "IdealizedPresetDevice", "GokmenVlasovPresetDevice", "PCMPresetDevice")


@pytest.mark.parametrize("name", PRESETS)
def test_aihwkit_presets_equal_mrl_jax_presets(name):
  """AIHWKit's preset devices (their recorded defaults) against ``mrl_jax.devices``' hand-written presets: equal in
  float32, the precision both simulate in (AIHWKit's ReRamSB ``w_min_dtod`` is 0.39999999999999997, ours 0.4)."""
  got, ours = A.device_from_plain({"__class__": name}), getattr(M, name)()
  assert type(got) is type(ours)
  for f in dataclasses.fields(ours):
    a, b = getattr(got, f.name), getattr(ours, f.name)
    if isinstance(b, float):
      assert np.float32(a) == np.float32(b), (f.name, a, b)
    else:
      assert a == b, (f.name, a, b)


def _fixture_configs():
  """``(file, case, plain_rpu_config)`` of every case of every AIHWKit fixture (case "" for a file's only one)."""
  out = []
  for path in sorted(FIXTURES.glob("aihwkit_*.npz")):
    meta = json.loads(str(np.load(path)["meta_json"]))
    if "plain_rpu_config" in meta:
      out.append((path.stem, "", meta["plain_rpu_config"]))
    for case, entry in {**meta.get("cases", {}), **meta.get("devices", {})}.items():
      out.append((path.stem, case, entry["plain_rpu_config"]))
  return out


def test_every_fixture_configuration_translates():
  """Every case of the AIHWKit fixtures records its configuration in plain form, and the translator, which the
  fixture tests build theirs with, takes each."""
  configs = _fixture_configs()
  assert len(configs) == 59
  for stem, case, plain in configs:
    assert A.from_rpu_config(plain).rpu_config_class == plain["__class__"], (stem, case)
