"""Partially analog ResNet-18/34 on CIFAR-10 with MRL or a baseline (the reference ``CIFAR-Resnet.py``).

    python examples/cifar_resnet.py --optimizer ResL -block-number 2 2 2 2 -block-type D D D A A A --io-perfect \
        --out runs/r18_resl

Settings: MRL (multi-tile residual learning with warm start; the reference's ResL), TTv1, TTv2 (buffered),
TTv3 (chopped), TTv4 (AGAD), MP (mixed precision), SGD (analog SGD), FP (floating point: the reference's "FP SGD", plain SGD without momentum). With ``--preset fair``
(the default) every analog setting uses ``SoftBoundsDevice(±1, dw_min = 2/n_states)``; ``--preset reference`` runs
the setting exactly as ``CIFAR-Resnet.py`` configures it (``docs/seed-parity.md``): flags it fixes (``--n-states``,
``--tiles``, ``--gamma``, ``--transfer-read``, ``--label-smoothing``) are refused, run-length and size flags
(``--epochs``, ``--batch-size``, ``--lr``, ``--lr-step``, ``--width``, ``--no-cutout``, ``--no-autoaugment``) win and
are reported, ``--io-perfect`` is the reference's own flag, fields ``mrl_jax`` cannot model need
``--approximate FIELD``, and Cutout and AutoAugment are on. Defaults follow the reference: batch 128, lr 0.1 (0.2
for FP), ×0.1 every 100 epochs, 200 epochs, label smoothing 0.1 as coded (true class 0.9, others 0.1/(C − 1)),
Normalize(0.5, 0.5), pad-4 random crop and horizontal flip (``--cutout --autoaugment`` complete the reference
pipeline), perfect forward/backward I/O; the transfer read of MRL stays at AIHWKit's noisy default as in the
reference, TT-v1/TT-v2 read through the forward/backward I/O (``--transfer-read`` overrides both).
``--synthetic N`` trains on synthetic CIFAR-shaped data (CPU smoke runs). ``OUT/meta.json`` records the settings
and the data files (sha256); metrics go to ``OUT/metrics.jsonl``; a checkpoint is written every epoch. An existing run
directory needs ``--resume`` (continue, same settings except e.g. ``--epochs``) or ``--overwrite`` (delete it first).
Ctrl-C checkpoints and prints the command that resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too

import mrl_jax as M  # noqa: E402
from mrl_jax import data, optim  # noqa: E402
from mrl_jax.io import PERFECT_IO, IOParameters  # noqa: E402
from mrl_jax.models.resnet import ResNet  # noqa: E402
from mrl_jax.nn import analog_partition  # noqa: E402
from mrl_jax.optim import presets  # noqa: E402
from mrl_jax.pulses import UpdateParameters  # noqa: E402
from mrl_jax.training import cli  # noqa: E402
from mrl_jax.training.loop import FitConfig, fit  # noqa: E402

SETTINGS = presets.SETTINGS
MEAN, STD = 0.5, 0.5  # the reference's Normalize(0.5, 0.5)


# --------------------------------------------------------------------------------------------------------------
# Augmentation (host side, numpy; AutoAugment through PIL)
# --------------------------------------------------------------------------------------------------------------

class Augmentation(NamedTuple):
  """Training-time augmentation, applied in the reference's order: pad + random crop → cutout → horizontal
  flip → AutoAugment.

  Attributes:
    crop_padding: zero padding before the random crop back to the input size (0 = no crop).
    flip: random horizontal flip with probability 1/2.
    cutout: with probability ``cutout_p`` erase one random rectangle (area fraction 0.02–0.4, aspect ratio
      0.4–2.5, both uniform) and fill it with one random gray level (the reference's ``Cutout``, see ``cutout``).
    autoaugment: the CIFAR-10 AutoAugment policy (needs pillow).
  """

  crop_padding: int = 4
  flip: bool = True
  cutout: bool = False
  autoaugment: bool = False
  cutout_p: float = 0.5


def random_crop(images: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
  """Zero-pads ``[N, H, W, C]`` by ``padding`` and crops a random ``H×W`` window per image."""
  if padding <= 0:
    return images
  n, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  top = rng.integers(0, 2 * padding + 1, size=n)
  left = rng.integers(0, 2 * padding + 1, size=n)
  rows = (top[:, None] + np.arange(h))[:, :, None]
  cols = (left[:, None] + np.arange(w))[:, None, :]
  return padded[np.arange(n)[:, None, None], rows, cols]


def random_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Mirrors each image left-right with probability 1/2."""
  flip = rng.random(len(images)) < 0.5
  out = images.copy()
  out[flip] = images[flip, :, ::-1]
  return out


def cutout(images: np.ndarray, rng: np.random.Generator, p: float = 0.5, area=(0.02, 0.4),
           aspect=(0.4, 2.5)) -> np.ndarray:
  """The reference's ``Cutout`` as coded (``CIFAR-Resnet.py`` lines 150-207): with probability ``p`` per image,
  one rectangle of ``s = U(area)·H·W`` pixels and aspect ``r = U(aspect)`` (uniform, one draw), height
  ``int(√(s·r))`` and width ``int(√(s/r))``, at a top-left corner drawn from ``[0, H − h)`` × ``[0, W − w)``, is
  filled with one value ``U{0, …, 254}`` for all its pixels and channels."""
  out = images.copy()
  n, h, w, _ = images.shape
  for i in range(n):
    if rng.random() > p:
      continue
    s = rng.uniform(*area) * h * w
    r = rng.uniform(*aspect)
    eh, ew = min(int(math.sqrt(s * r)), h - 1), min(int(math.sqrt(s / r)), w - 1)
    left, top = rng.integers(0, w - ew), rng.integers(0, h - eh)
    out[i, top:top + eh, left:left + ew] = rng.integers(0, 255)
  return out


# The CIFAR-10 policy of AutoAugment (Cubuk et al. 2019): 25 sub-policies of two (operation, probability,
# magnitude bin of 0..9) steps; one sub-policy is drawn per image.
AUTOAUGMENT_CIFAR10 = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)


def _magnitude(op: str, bin_: int, size: int) -> tuple[float, bool]:
  """``(magnitude, signed)`` of bin ``bin_`` (0..9) of an operation, for ``size``-pixel images."""
  t = bin_ / 9.0
  if op in ("ShearX", "ShearY"):
    return 0.3 * t, True
  if op in ("TranslateX", "TranslateY"):
    return 150.0 / 331.0 * size * t, True
  if op == "Rotate":
    return 30.0 * t, False  # the reference rotates counter-clockwise only (rotate_with_fill, no random sign)
  if op in ("Brightness", "Color", "Contrast", "Sharpness"):
    return 0.9 * t, True
  if op == "Posterize":
    return float(8 - round(bin_ / 2.25)), False
  if op == "Solarize":
    return 256.0 * (1.0 - t), False  # np.linspace(256, 0, 10): bin 0 leaves the image unchanged
  raise ValueError(f"AutoAugment operation {op!r} takes no magnitude")


def _pil():
  try:
    from PIL import Image, ImageEnhance, ImageOps
  except ImportError:
    raise ValueError("--autoaugment needs pillow (pip install pillow); it is not installed") from None
  return Image, ImageEnhance, ImageOps


def _apply_op(img, op: str, m: float):
  """One AutoAugment operation as the reference's ``SubPolicy`` applies it: geometric operations fill with
  gray 128; shears resample bicubically, translations and rotations with nearest neighbours."""
  Image, ImageEnhance, ImageOps = _pil()
  fill = (128,) * len(img.getbands())
  affine = lambda coeffs, resample=Image.Resampling.NEAREST: img.transform(
      img.size, Image.Transform.AFFINE, coeffs, resample, fillcolor=fill)
  if op == "ShearX":
    return affine((1, m, 0, 0, 1, 0), Image.Resampling.BICUBIC)
  if op == "ShearY":
    return affine((1, 0, 0, m, 1, 0), Image.Resampling.BICUBIC)
  if op == "TranslateX":
    return affine((1, 0, m, 0, 1, 0))
  if op == "TranslateY":
    return affine((1, 0, 0, 0, 1, m))
  if op == "Rotate":
    return img.rotate(m, resample=Image.Resampling.NEAREST, fillcolor=fill)
  if op in ("Brightness", "Color", "Contrast", "Sharpness"):
    return getattr(ImageEnhance, op)(img).enhance(1.0 + m)
  if op == "Posterize":
    return ImageOps.posterize(img, int(m))
  if op == "Solarize":
    return ImageOps.solarize(img, m)
  if op == "AutoContrast":
    return ImageOps.autocontrast(img)
  if op == "Equalize":
    return ImageOps.equalize(img)
  if op == "Invert":
    return ImageOps.invert(img)
  raise ValueError(f"unknown AutoAugment operation {op!r}")


def autoaugment(images: np.ndarray, rng: np.random.Generator, policy=AUTOAUGMENT_CIFAR10) -> np.ndarray:
  """AutoAugment of uint8 ``[N, H, W, C]`` images: one random sub-policy per image; each of its steps is
  applied with its probability; signed magnitudes (shear, translate, color, contrast, sharpness, brightness; not
  rotate) get a random sign, as the reference's ``SubPolicy``."""
  Image, _, _ = _pil()
  out = np.empty_like(images)
  for i, image in enumerate(images):
    sub = policy[rng.integers(len(policy))]
    draws, signs = rng.random(len(sub)), rng.random(len(sub)) < 0.5
    img = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    for (op, prob, bin_), u, negative in zip(sub, draws, signs):
      if u > prob:
        continue
      m = 0.0
      if bin_ is not None:
        m, signed = _magnitude(op, bin_, image.shape[1])
        m = -m if (signed and negative) else m
      img = _apply_op(img, op, m)
    out[i] = np.asarray(img).reshape(image.shape)
  return out


def augment_batch(images: np.ndarray, rng: np.random.Generator, aug: Augmentation = Augmentation()) -> np.ndarray:
  """The training augmentation of one uint8 ``[N, H, W, C]`` batch (order as the reference)."""
  images = random_crop(np.asarray(images), aug.crop_padding, rng)
  if aug.cutout:
    images = cutout(images, rng, p=aug.cutout_p)
  if aug.flip:
    images = random_flip(images, rng)
  if aug.autoaugment:
    images = autoaugment(images, rng)
  return images


class TrainBatch(NamedTuple):
  """A training batch. The marker tells the loss that the step trains (BatchNorm on batch statistics, running
  averages updated); plain arrays are evaluation batches (running averages)."""

  images: Any


class AugmentedImages:
  """The training images as ``fit`` indexes them: ``train[idx]`` is a ``TrainBatch`` of augmented images.

  The randomness of a batch is fixed by ``(seed, idx)``; ``fit`` draws ``idx`` from ``(seed, epoch, batch)``,
  so the augmentation is deterministic per batch and a resumed run sees the same augmented batches.
  """

  def __init__(self, images: np.ndarray, aug: Augmentation, seed: int):
    self.images, self.aug, self.seed = images, aug, int(seed)
    if aug.autoaugment:
      _pil()  # fail early without pillow

  def __len__(self) -> int:
    return len(self.images)

  def batch_rng(self, idx) -> np.random.Generator:
    idx = np.asarray(idx, dtype=np.int64).ravel()
    return np.random.default_rng(np.random.SeedSequence([self.seed, len(idx), *idx.tolist()]))

  def __getitem__(self, idx) -> TrainBatch:
    return TrainBatch(augment_batch(self.images[idx], self.batch_rng(idx), self.aug))


def to_input(batch):
  """uint8 images (or a ``TrainBatch`` of them) → float32 NHWC normalized with mean 0.5, std 0.5."""
  if isinstance(batch, TrainBatch):
    return TrainBatch(data.normalize(batch.images, MEAN, STD))
  return data.normalize(batch, MEAN, STD)


def smooth_targets(labels, n_classes: int, smoothing: float):
  """The reference's label smoothing as coded (``CIFAR-Resnet.py`` ``smooth_one_hot``): the true class gets
  ``1 − smoothing``, every other class ``smoothing/(C − 1)`` (not optax's ``(1 − s)·onehot + s/C``)."""
  one_hot = jax.nn.one_hot(labels, n_classes)
  return jnp.where(one_hot > 0, jnp.float32(1 - smoothing), jnp.float32(smoothing / (n_classes - 1)))


def make_loss(label_smoothing: float = 0.1):
  """``loss_fn(model, x, y) -> (loss, n_correct)``: label-smoothed cross-entropy of the logits (``smooth_targets``).

  ``x`` is a ``TrainBatch`` in the training step (BatchNorm uses and updates batch statistics) and a plain
  array in evaluation (BatchNorm uses running averages).
  """

  def loss_fn(model, x, y):
    train = isinstance(x, TrainBatch)
    logits = model(x.images if train else x, use_running_average=not train)
    targets = smooth_targets(y, logits.shape[-1], label_smoothing)
    loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
    return loss, jnp.sum(jnp.argmax(logits, axis=-1) == y)

  return loss_fn


# --------------------------------------------------------------------------------------------------------------
# CLI, model and optimizer
# --------------------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter,
                              epilog=cli.EPILOG)
  p.add_argument("--optimizer", "--setting", "--SETTING", dest="setting", default="MRL", type=setting_arg,
                 help="one of " + ", ".join(SETTINGS) + " (or the reference's names: TT-v1, mp, 'Analog SGD', …)")
  p.add_argument("--preset", default="fair", choices=("fair", "reference"),
                 help="fair: every method on SoftBoundsDevice(±1, 2/n_states); reference: the setting exactly as "
                      "CIFAR-Resnet.py configures it (docs/seed-parity.md)")
  p.add_argument("--approximate", action="append", default=[], metavar="FIELD",
                 help="with --preset reference: run although mrl_jax cannot model FIELD yet (a "
                      "field the preset lists as unsupported, docs/seed-parity.md); recorded in meta.json")
  p.add_argument("-block-number", "--block-number", dest="block_number", nargs=4, type=int, default=[2, 2, 2, 2],
                 metavar="N", help="BasicBlocks of layer1..layer4 (2 2 2 2 = ResNet-18, 3 4 6 3 = ResNet-34)")
  p.add_argument("-block-type", "--block-type", dest="block_type", nargs=6, default=["D", "D", "D", "A", "A", "A"],
                 choices=("D", "A"), metavar="T", help="D(igital)/A(nalog) for stem, layer1..layer4, fc")
  p.add_argument("--width", type=int, default=64, help="channels of layer1 (64 in the reference)")
  p.add_argument("--n-states", "--N_STATES", dest="n_states", type=float, default=4.0)
  p.add_argument("--tiles", type=int, default=8, help="MRL tiles K")
  p.add_argument("--gamma", type=float, default=0.5, help="MRL significance ratio γ")
  p.add_argument("--warm-start", default="via_tile1", choices=("direct", "via_tile1", "cuda_exact", "none"),
                 help="MRL warm-start mode (see below)")
  p.add_argument("--epochs", "--EPOCHS", dest="epochs", type=int, default=200)
  p.add_argument("--batch-size", "--BATCH_SIZE", dest="batch_size", type=int, default=128)
  p.add_argument("--lr", "--LR", dest="lr", type=cli.learning_rate_arg, default=None,
                 help="SGD learning rate (default 0.1; 0.2 for FP, as the reference's torch baseline)")
  p.add_argument("--lr-step", "--lr-decay-every", dest="lr_step", type=int, default=100,
                 help="epochs between ×0.1 learning-rate steps (StepLR)")
  p.add_argument("--label-smoothing", type=float, default=0.1)
  p.add_argument("--seed", type=int, default=0, help="device, initialisation, data-order and augmentation seed")
  p.add_argument("--io-perfect", action=argparse.BooleanOptionalAction, default=True,
                 help="perfect forward/backward I/O (else AIHWKit's default noisy, quantized I/O)")
  p.add_argument("--transfer-read", default="reference", choices=("reference", "perfect", "noisy"),
                 help="I/O of the transfer read: reference = noisy for MRL, as --io-perfect for TT-v1/TT-v2")
  p.add_argument("--crop-padding", type=int, default=4, help="pad + random crop (0 = off)")
  p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="random horizontal flip")
  p.add_argument("--cutout", action=argparse.BooleanOptionalAction, default=None,
                 help="the reference's Cutout (p 0.5, one random gray level; default: on with --preset reference)")
  p.add_argument("--autoaugment", action=argparse.BooleanOptionalAction, default=None,
                 help="AutoAugment, CIFAR-10 policy (needs pillow; default: on with --preset reference)")
  p.add_argument("--synthetic", type=int, default=0, metavar="N",
                 help="train on N synthetic CIFAR-shaped images (test: N // 5, at least 100) instead of CIFAR-10")
  p.add_argument("--data-dir", default=None, help="directory with the CIFAR-10 binary batches (or $MRL_DATA_DIR)")
  p.add_argument("--data-npz", default=None,
                 help="CIFAR-10 (or a subset) as one .npz with uint8 x_train, x_test [N, 32, 32, 3] and int y_train, "
                      "y_test (see scripts/gpu_cifar.sh --prepare)")
  p.add_argument("--train-subset", type=int, default=0, help="use only the first N training images (0 = all)")
  p.add_argument("--test-subset", type=int, default=0, help="use only the first N test images (0 = all)")
  cli.add_run_dir_arguments(p)
  p.add_argument("--log-jsonl", default=None, help="also append the per-epoch records to this file")
  cli.add_loop_arguments(p)
  p.add_argument("--engine", default="auto", choices=("auto", "native", "jnp"))
  p.add_argument("--no-progress", action="store_true")
  return p


def setting_arg(text: str) -> str:
  """argparse ``type`` of ``--optimizer``: mrl_jax's or the reference script's name of a setting."""
  try:
    return presets.canonical_setting(text)
  except ValueError as err:
    raise argparse.ArgumentTypeError(str(err)) from None


def learning_rate(args) -> float:
  return args.lr if args.lr is not None else (0.2 if args.setting == "FP" else 0.1)


def reference_preset(args) -> presets.ReferencePreset:
  """The ``CIFAR-Resnet.py`` preset of the (resolved) ``args``."""
  kw = {"warm_start": args.warm_start} if args.setting == "MRL" else {}
  return presets.resnet_cifar10_reference(args.setting, io_perfect=args.io_perfect, **kw)


def resolve_reference(parser: argparse.ArgumentParser, args, argv) -> presets.ReferencePreset:
  """``--preset reference``: refuses the flags the reference fixes, reports the flags that win over the
  reference's values, and writes the resolved values into ``args`` (so that ``meta.json`` shows them)."""
  given = cli.given_flags(parser, argv)
  ref = f"CIFAR-Resnet.py {presets.REFERENCE_NAMES[args.setting]}"
  for name, flag in (("n_states", "--n-states"), ("tiles", "--tiles"), ("gamma", "--gamma"),
                     ("transfer_read", "--transfer-read"), ("label_smoothing", "--label-smoothing")):
    if name in given:
      parser.error(f"{flag} conflicts with --preset reference: {ref} fixes it (docs/seed-parity.md); drop the flag "
                   "or use --preset fair")
  if "warm_start" in given and (args.setting != "MRL" or args.warm_start not in ("cuda_exact", "direct")):
    parser.error(f"--warm-start {args.warm_start} conflicts with --preset reference: {ref} runs "
                 + ("cuda_exact (the published --CUDA=0 commands) or direct (the fork's CPU build)"
                    if args.setting == "MRL" else "no warm start"))
  if args.setting == "MRL" and "warm_start" not in given:
    args.warm_start = "cuda_exact"
  preset = reference_preset(args)
  for name, flag, value in (("epochs", "--epochs", preset.epochs), ("batch_size", "--batch-size", preset.batch_size),
                            ("lr", "--lr", preset.learning_rate), ("lr_step", "--lr-step", preset.lr_decay_every),
                            ("width", "--width", 64), ("cutout", "--cutout", True),
                            ("autoaugment", "--autoaugment", True)):
    if name not in given or getattr(args, name) is None:
      setattr(args, name, value)
    elif getattr(args, name) != value:
      print(f"--preset reference: {flag} {getattr(args, name)} wins over {ref}'s {value}", file=sys.stderr)
  args.n_states, args.label_smoothing, args.transfer_read = preset.n_states, 0.1, None
  if args.setting != "MRL":
    args.tiles = args.gamma = args.warm_start = None
  return preset


def resolved_config(args) -> dict:
  """The full configuration that runs (for ``meta.json``)."""
  if args.preset == "reference":
    return {"preset": "reference", **reference_preset(args).describe(), "approximated": list(args.approximate)}
  io = PERFECT_IO if args.io_perfect else IOParameters()
  return {"preset": "fair", "analog": presets.to_jsonable(fair_config(args)), "forward_io": presets.to_jsonable(io),
          "backward_io": presets.to_jsonable(io), "learn_out_scale": True}


def transfer_read_io(args) -> IOParameters:
  """I/O of the transfer read: the reference keeps AIHWKit's noisy default for MRL and makes it perfect for
  the TT settings only with ``--io-perfect``."""
  if args.transfer_read == "perfect" or (args.transfer_read == "reference" and args.setting != "MRL"
                                         and args.io_perfect):
    return PERFECT_IO
  return IOParameters()


def fair_config(args):
  """The analog configuration of ``args.setting`` under the fair preset (a device for SGD, None for FP)."""
  n, io = args.n_states, transfer_read_io(args)
  if args.setting == "MRL":
    cfg = optim.mrl_cifar(n, n_tiles=args.tiles, gamma=args.gamma, warm_start=args.warm_start, transfer_io=io)
    return cfg.replace(engine=args.engine)
  if args.setting == "TTv1":
    return optim.ttv1(n, fast_lr=0.1, transfer_io=io).replace(engine=args.engine)
  if args.setting == "TTv2":
    # CIFAR reference: fast_lr 0.5, thres_scale 0.9, default gradient pulses (BL 31), transfer writes of BL 1.
    cfg = optim.ttv2(n, fast_lr=0.5, thres_scale=0.9, transfer_io=io)
    return cfg.replace(update=UpdateParameters(), engine=args.engine)
  if args.setting in ("TTv3", "TTv4"):
    return (optim.ttv3 if args.setting == "TTv3" else optim.ttv4)(n, transfer_io=io).replace(engine=args.engine)
  if args.setting == "MP":
    return optim.mixed_precision_preset(n)
  if args.setting == "SGD":
    return M.limited_state_soft_bounds(n)
  return None


def make_optimizer(args, params, steps_per_epoch: int):
  key = jax.random.key(args.seed)
  if getattr(args, "preset", "fair") == "reference":
    preset = reference_preset(args)
    lr = optax.exponential_decay(learning_rate(args), steps_per_epoch * args.lr_step, preset.lr_decay_factor,
                                 staircase=True)
    analog = preset.analog_optimizer(lr, key=key, engine=args.engine, approximate=args.approximate)
    return analog_partition(analog, preset.digital_optimizer(lr), params)
  lr = optax.exponential_decay(learning_rate(args), steps_per_epoch * args.lr_step, 0.1, staircase=True)
  cfg = fair_config(args)
  if args.setting in ("MRL", "TTv1", "TTv2"):
    analog = optim.transfer_compound(cfg, lr, key=key, engine=args.engine)
  elif args.setting in ("TTv3", "TTv4"):
    analog = optim.chopped_transfer(cfg, lr, key=key, engine=args.engine)
  elif args.setting == "MP":
    analog = optim.mixed_precision(cfg, lr, key=key, engine=args.engine)
  elif args.setting == "SGD":
    analog = optim.analog_sgd(cfg, lr, key=key, engine=args.engine)
  else:  # FP: the reference's "FP SGD", AnalogSGD on floating-point tiles = plain SGD, no momentum
    analog = optax.chain(optim.densify(), optax.sgd(lr))
  return analog_partition(analog, optax.sgd(lr), params)


def build_model(args) -> ResNet:
  """The ResNet of the CLI settings, initialised in one compiled call (eager init compiles op by op)."""
  if getattr(args, "preset", "fair") == "reference":
    io = reference_preset(args).layer_kwargs()
  else:
    io = dict.fromkeys(("forward_io", "backward_io"), PERFECT_IO if args.io_perfect else IOParameters())
    io["learn_out_scale"] = True
  create = lambda rngs: ResNet(tuple(args.block_number), tuple(args.block_type), rngs=rngs, width=args.width, **io)
  return nnx.jit(create)(nnx.Rngs(params=args.seed, noise=args.seed + 1))


def load_data(args, with_provenance: bool = False):
  """``(train, test)`` of the CLI's data settings; with ``with_provenance`` also where they came from (for
  ``meta.json``: files with sha256, or the synthetic generator's settings)."""
  if args.synthetic:
    train = data.synthetic_cifar(args.synthetic, seed=args.seed)
    test = data.synthetic_cifar(max(args.synthetic // 5, 100), seed=args.seed + 1)
    provenance = {split: {"source": "synthetic", "n": len(part[0]), "seed": seed, "files": []}
                  for split, part, seed in (("train", train, args.seed), ("test", test, args.seed + 1))}
  elif args.data_npz:
    with np.load(args.data_npz) as f:
      train = (f["x_train"], f["y_train"].astype(np.int32))
      test = (f["x_test"], f["y_test"].astype(np.int32))
    record = {"source": "npz", "files": [{"path": str(Path(args.data_npz).resolve()),
                                          "sha256": data.sources.sha256_file(args.data_npz)}]}
    provenance = {"train": record, "test": record}
  else:
    train, train_source = data.load_with_provenance("cifar10", "train", data_dir=args.data_dir)
    test, test_source = data.load_with_provenance("cifar10", "test", data_dir=args.data_dir)
    provenance = {"train": train_source, "test": test_source}
  if args.train_subset:
    train = (train[0][: args.train_subset], train[1][: args.train_subset])
  if args.test_subset:
    test = (test[0][: args.test_subset], test[1][: args.test_subset])
  return (train, test, provenance) if with_provenance else (train, test)


def main(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  preset = resolve_reference(parser, args, argv) if args.preset == "reference" else None
  cli.check_approximations(parser, args.approximate, preset)
  args.cutout, args.autoaugment = bool(args.cutout), bool(args.autoaugment)
  (images, labels), test, provenance = load_data(args, with_provenance=True)
  aug = Augmentation(crop_padding=args.crop_padding, flip=args.flip, cutout=args.cutout,
                     autoaugment=args.autoaugment)
  train = (AugmentedImages(images, aug, args.seed), labels)
  model = build_model(args)
  steps_per_epoch = len(images) // args.batch_size
  tx = make_optimizer(args, nnx.state(model, nnx.Param), steps_per_epoch)
  analog = preset.config if preset is not None else fair_config(args)
  if "lr" in cli.given_flags(parser, argv) and cli.analog_lr_notice(analog):
    print(f"notice: {cli.analog_lr_notice(analog)}", file=sys.stderr)
  name = {(2, 2, 2, 2): "ResNet-18", (3, 4, 6, 3): "ResNet-34"}.get(tuple(args.block_number), "ResNet")
  print(f"{name} {' '.join(map(str, args.block_number))} / {' '.join(args.block_type)} (analog: "
        f"{', '.join(model.analog_parts()) or 'none'}) on {'synthetic' if args.synthetic else 'CIFAR-10'}: "
        f"{len(images)} train, {len(test[0])} test images; setting {args.setting} ({args.preset} preset), "
        f"{f'{args.n_states:g} states' if args.n_states else 'floating point'}, "
        f"lr {learning_rate(args):g}, {steps_per_epoch} steps per epoch", file=sys.stderr)
  cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, out_dir=args.out, resume=args.resume,
                  overwrite=args.overwrite, resume_safe_fields=cli.SAFE_TO_CHANGE,
                  checkpoint_every_steps=args.checkpoint_every_steps,
                  steps_per_dispatch=args.steps_per_dispatch, seed=args.seed, progress=not args.no_progress)

  def on_epoch(record, state):
    if args.log_jsonl:
      Path(args.log_jsonl).parent.mkdir(parents=True, exist_ok=True)
      with open(args.log_jsonl, "a") as f:
        f.write(json.dumps({"setting": args.setting, **record}) + "\n")

  # The learning rate as resolved (its default depends on the setting), so that a resume compares what ran.
  run_meta = {**vars(args), "lr": learning_rate(args), "resolved": resolved_config(args)}
  _, history, _ = fit(model, tx, train, test, cfg, loss_fn=make_loss(args.label_smoothing), to_input=to_input,
                      run_meta=run_meta, on_epoch=on_epoch, provenance=provenance)
  final = history[-1] if history else {}
  print(f"final test accuracy: {final.get('test_acc', float('nan')):.4f}")
  return final


if __name__ == "__main__":
  cli.run(main)
