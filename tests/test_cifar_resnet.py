"""CIFAR ResNet: structure of the partially analog ResNet-18, BatchNorm modes, a short training run on synthetic
data, the example's CLI and its host-side augmentation."""

import functools
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mrl_jax import data
from mrl_jax.models.resnet import ResNet
from mrl_jax.nn import ANALOG_LAYERS, AnalogConv2d, AnalogLinear
from mrl_jax.training.loop import FitConfig, fit

ROOT = Path(__file__).resolve().parents[1]
TINY = ["-block-number", "1", "1", "1", "1", "-block-type", "D", "D", "D", "A", "A", "A", "--width", "8"]


@pytest.fixture(scope="module")
def example():
  spec = importlib.util.spec_from_file_location("cifar_resnet", ROOT / "examples" / "cifar_resnet.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def tiny(example):
  """``(args, graphdef, state)`` of a width-8 ResNet 1-1-1-1 with analog layer3, layer4 and fc.

  Initialised from an ``rbg`` key: XLA compiles its initialisation in ~3 s on the CPU, threefry's in ~20 s.
  """
  args = example.build_parser().parse_args(TINY + ["--optimizer", "MRL", "--tiles", "3", "--lr", "0.05"])
  model = ResNet(tuple(args.block_number), tuple(args.block_type), width=args.width,
                 rngs=nnx.Rngs(params=jax.random.key(0, impl="rbg")))
  return (args,) + nnx.split(model)


def _analog_layers(model):
  return {"/".join(map(str, path)): m for path, m in nnx.iter_modules(model) if isinstance(m, ANALOG_LAYERS)}


def test_resnet18_ddd_aaa_structure():
  model = nnx.eval_shape(lambda: ResNet((2, 2, 2, 2), ("D", "D", "D", "A", "A", "A"), rngs=nnx.Rngs(0)))
  analog = {path: tuple(m.weight.shape) for path, m in _analog_layers(model).items()}
  assert analog == {  # the analog tiles of the reference CIFAR-Resnet.py
      "layer3/0/conv1": (256, 1152), "layer3/0/conv2": (256, 2304), "layer3/0/shortcut_conv": (256, 128),
      "layer3/1/conv1": (256, 2304), "layer3/1/conv2": (256, 2304),
      "layer4/0/conv1": (512, 2304), "layer4/0/conv2": (512, 4608), "layer4/0/shortcut_conv": (512, 256),
      "layer4/1/conv1": (512, 4608), "layer4/1/conv2": (512, 4608), "fc": (10, 512)}
  assert model.analog_parts() == ("layer3", "layer4", "fc")
  assert all(m.out_scale is not None for m in _analog_layers(model).values())
  assert all(m.bias is None for m in _analog_layers(model).values() if isinstance(m, AnalogConv2d))
  assert isinstance(model.fc, AnalogLinear) and model.fc.bias is not None
  digital = [p for p, m in nnx.iter_modules(model) if isinstance(m, nnx.Conv)]
  assert {p[0] for p in digital} == {"conv1", "layer1", "layer2"} and len(digital) == 1 + 4 + 5
  assert all(m.bias is None for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Conv))
  assert model.layer1[0].shortcut_conv is None and model.layer2[0].shortcut_conv is not None
  assert sum(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(model)) == 1 + 8 * 2 + 3
  graphdef, state = nnx.split(model)
  out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, jax.ShapeDtypeStruct((2, 32, 32, 3),
                                                                                            jnp.float32))
  assert out.shape == (2, 10)
  r34 = nnx.eval_shape(lambda: ResNet((3, 4, 6, 3), ("D",) * 6, rngs=nnx.Rngs(0)))
  assert [len(getattr(r34, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3] and not _analog_layers(r34)


@pytest.mark.parametrize("kwargs, match", [
    (dict(block_number=(2, 2, 2)), "block_number"), (dict(block_number=(2, 0, 2, 2)), "block_number"),
    (dict(block_number=(2, 2.0, 2, 2)), "block_number"), (dict(block_type=("D",) * 5), "block_type"),
    (dict(block_type=("D", "D", "D", "A", "A", "X")), "block_type"), (dict(block_type="DDDAAA"), "block_type"),
    (dict(width=0), "width")])
def test_invalid_configuration_raises(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ResNet(**{"block_number": (1, 1, 1, 1), "block_type": ("D",) * 6, **kwargs}, rngs=nnx.Rngs(0))


def test_batchnorm_uses_batch_statistics_in_training_and_running_averages_in_eval(tiny):
  _, graphdef, state = tiny

  @functools.partial(jax.jit, static_argnums=2)
  def forward(state, x, use_running_average):
    model = nnx.merge(graphdef, state)
    return model(x, use_running_average=use_running_average), nnx.state(model, nnx.BatchStat)

  x = jnp.asarray(data.normalize(data.synthetic_cifar(8, seed=5)[0], 0.5, 0.5))
  y_train, stats_train = forward(state, x, False)
  y_eval, stats_eval = forward(state, x, True)
  before = nnx.state(nnx.merge(graphdef, state), nnx.BatchStat)
  changed = lambda a, b: any(not np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert changed(stats_train, before) and not changed(stats_eval, before)
  assert not np.allclose(y_train, y_eval)
  # running averages: one example's output does not depend on the rest of the batch; batch statistics do
  y_eval_one, _ = forward(state, x[:1].repeat(8, 0), True)
  y_train_one, _ = forward(state, x[:1].repeat(8, 0), False)
  np.testing.assert_allclose(y_eval_one[0], y_eval[0], rtol=1e-4, atol=1e-5)
  assert not np.allclose(y_train_one[0], y_train[0])
  # nnx train/eval switch the default mode
  model = nnx.merge(graphdef, state)
  model.eval()
  assert all(m.use_running_average for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm))
  model.train()
  assert not any(m.use_running_average for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm))


def test_short_resl_run_lowers_the_loss_and_updates_batch_statistics(example, tiny):
  args, graphdef, state = tiny
  model = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))
  initial = jax.tree.map(np.asarray, nnx.state(model))
  images, labels = data.synthetic_cifar(160, seed=1)
  train = (example.AugmentedImages(images, example.Augmentation(), seed=0), labels)
  test = data.synthetic_cifar(64, seed=2)
  tx = example.make_optimizer(args, nnx.state(model, nnx.Param), steps_per_epoch=10)
  # Five steps per dispatch: the training input is a pytree (TrainBatch), stacked leaf by leaf for lax.scan.
  cfg = FitConfig(epochs=2, batch_size=16, eval_batch_size=64, progress=False, seed=0, steps_per_dispatch=5)
  model, history, _ = fit(model, tx, train, test, cfg, loss_fn=example.make_loss(0.1), to_input=example.to_input)
  assert history[1]["train_loss"] < history[0]["train_loss"] < 2.6
  assert all(np.isfinite([r["test_loss"], r["test_acc"]]).all() for r in history)
  # It learns: the second epoch's training accuracy (160 images) is above chance (0.1) by more than three
  # standard errors of a chance-level accuracy, sqrt(0.1·0.9/160). (64 test images after 20 steps cannot
  # tell learning from chance: their standard error is 0.0375.)
  assert history[-1]["train_acc"] > 0.1 + 3 * (0.1 * 0.9 / 160) ** 0.5
  final = nnx.state(model)
  assert not np.array_equal(final["bn1"]["mean"][...], initial["bn1"]["mean"])
  assert not np.array_equal(final["layer4"][0]["bn2"]["var"][...], initial["layer4"][0]["bn2"]["var"])
  assert not np.array_equal(final["layer4"][0]["conv2"]["weight"][...], initial["layer4"][0]["conv2"]["weight"])


def test_cli_accepts_the_reference_flags(example):
  parser = example.build_parser()
  args = parser.parse_args(["-block-number", "2", "2", "2", "2", "-block-type", "D", "D", "D", "A", "A", "A",
                            "--optimizer", "MRL", "--io-perfect"])
  assert args.block_number == [2, 2, 2, 2] and args.block_type == ["D", "D", "D", "A", "A", "A"]
  assert (args.setting, args.io_perfect, args.batch_size, args.epochs, args.tiles) == ("MRL", True, 128, 200, 8)
  assert (example.learning_rate(args), args.lr_step, args.label_smoothing) == (0.1, 100, 0.1)
  # ResL keeps the reference's noisy transfer read; TT-v1 reads perfectly with --io-perfect
  assert not example.transfer_read_io(args).is_perfect
  tt = parser.parse_args(["--block-number", "3", "4", "6", "3", "--setting", "TTv1", "--n-states", "10"])
  assert tt.block_number == [3, 4, 6, 3] and tt.n_states == 10.0 and example.transfer_read_io(tt).is_perfect
  assert example.learning_rate(parser.parse_args(["--optimizer", "FP"])) == 0.2
  for bad in (["--optimizer", "Adam"], ["-block-type", "D", "D", "D", "A", "A", "B"], ["-block-number", "2", "2"]):
    with pytest.raises(SystemExit):
      parser.parse_args(bad)


def test_augmentation_is_deterministic_per_batch(example):
  images, _ = data.synthetic_cifar(64, seed=3)
  aug = example.Augmentation(cutout=True, autoaugment=importlib.util.find_spec("PIL") is not None)
  train = example.AugmentedImages(images, aug, seed=7)
  idx = np.arange(16, 32)
  a, b = train[idx], train[idx.copy()]
  assert isinstance(a, example.TrainBatch) and a.images.dtype == np.uint8 and a.images.shape == (16, 32, 32, 3)
  np.testing.assert_array_equal(a.images, b.images)
  assert not np.array_equal(a.images, train[idx[::-1]].images[::-1])  # another batch, other draws
  assert not np.array_equal(a.images, example.AugmentedImages(images, aug, seed=8)[idx].images)
  assert not np.array_equal(a.images, images[idx])
  # crop without padding and no flip is the identity; crop keeps the image up to a shift
  plain = example.augment_batch(images[:4], np.random.default_rng(0), example.Augmentation(crop_padding=0,
                                                                                           flip=False))
  np.testing.assert_array_equal(plain, images[:4])
  flipped = example.random_flip(images[:64], np.random.default_rng(0))
  mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images)]
  assert 10 < sum(mirrored) < 54 and all(m or np.array_equal(f, i) for m, f, i in zip(mirrored, flipped, images))
  x = example.to_input(images[:2])
  assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1


def test_autoaugment_operations_keep_shape_and_dtype(example):
  Image = pytest.importorskip("PIL.Image")
  images, _ = data.synthetic_cifar(4, seed=4)
  ops = {op for sub in example.AUTOAUGMENT_CIFAR10 for op, _, _ in sub}
  assert len(example.AUTOAUGMENT_CIFAR10) == 25 and len(ops) == 13
  rng = np.random.default_rng(0)
  for op in sorted(ops | {"ShearX"}):
    for image in images:
      bins = [None] if op in ("AutoContrast", "Equalize", "Invert") else [0, 9]
      for bin_ in bins:
        m = 0.0 if bin_ is None else example._magnitude(op, bin_, 32)[0]
        out = np.asarray(example._apply_op(Image.fromarray(image), op, m))
        assert out.shape == image.shape and out.dtype == np.uint8
  out = example.autoaugment(images, rng)
  assert out.shape == images.shape and out.dtype == np.uint8
