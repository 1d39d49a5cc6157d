"""A model's analog tiles from the outside: list them, read and set their weights and hidden parameters, and run
one tile's forward and backward MVM.

An analog weight ``[out, in]`` of a model (``model.l1.weight``) is what the layer reads, the *visible* weight
``W̄``. Behind it, in the analog optimizer's state, are one or more tiles: one for analog SGD and mixed precision,
K for a transfer compound (TT-v1, MRL, TT-v2), two (A, C) for a chopped compound (TT-v3, AGAD). Tile ``k`` holds
weights ``W_k`` and the visible weight is ``W̄ = Σ_k γ_k W_k`` with the significances ``γ_k`` of the algorithm's
configuration (``significances``). Tile 0 is the least significant ("fast") tile that receives the gradient.

*Conductance* here is the state of a tile's devices in weight units: AIHWKit's normalized conductance, the
difference of a crosspoint's conductance pair scaled so that one device step at w = 0 is ``dw_min`` and each
crosspoint lives in its own ``[min_bound, max_bound]``. Pulses act on it. The tile's *weights* are what its MVM
reads: the conductance itself, or, for a device with write noise, the conductance plus the noise of the last write
(AIHWKit's ``persistent_weights`` are the conductances then).

Every function takes the optimizer state as a whole (an ``optax.partition`` state, ``nnx.Optimizer.opt_state``, a
training state; seeds batched by ``vmap`` keep their leading axis) and names an analog weight by its
``nnx.state(model)`` path, ``("l1", "weight")`` or ``"l1/weight"``. Setters are pure: they return a new optimizer
state and work under ``jit`` (paths and tile indices are static). They leave the model's visible weight alone;
write ``visible_weight(...)`` into the model (``model.l1.weight[...] = ...``) to read the new tiles at once, else
the next update does it.

    >>> tiles = mrl_jax.analog_tiles(opt_state, config)          # [TileInfo(path, index, weights, ...), ...]
    >>> opt_state = mrl_jax.set_tile_weights(opt_state, "l1/weight", 0, jnp.zeros((10, 512)))
    >>> y = mrl_jax.tile_forward(tiles[0].weights, x, io)        # y = x W_0ᵀ through the I/O
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from mrl_jax import _checks as C
from mrl_jax.analog_state import map_weight_state, path_str, weight_states
from mrl_jax.devices import PulsedDevice
from mrl_jax.io import PERFECT_IO, IOParameters, analog_mvm
from mrl_jax.optim.chopped import ChoppedLeafState, ChoppedTransfer
from mrl_jax.optim.compound import CompoundLeafState, TransferCompound
from mrl_jax.optim.mixed_precision import MixedPrecision, MixedPrecisionLeafState
from mrl_jax.tile import TileState, clip_to_bounds, set_weights

CONFIG_TYPES = (PulsedDevice, TransferCompound, ChoppedTransfer, MixedPrecision)
"""What ``config`` may be: the configuration an analog algorithm was built from (a ``PulsedDevice`` for
``analog_sgd``)."""


class TileInfo(NamedTuple):
  """One tile of one analog weight (the arrays carry a leading seed axis when the state is vmapped).

  Attributes:
    path: the weight's ``nnx.state(model)`` path, e.g. ``("l1", "weight")``.
    index: the tile's index k, 0 for the least significant (fast) tile.
    weights: ``float32[out, in]`` the weights the tile's MVM reads (weight units).
    conductance: ``float32[out, in]`` the devices' conductances in weight units (module docstring); equal to
      ``weights`` unless the device has write noise.
    significance: ``γ_k``, the tile's factor in the visible weight ``Σ_k γ_k W_k``; None when no configuration
      was passed.
    hidden: the tile's per-crosspoint device parameters, ``{name: float32[out, in]}`` with AIHWKit's names
      (``max_bound``, ``min_bound``, ``dwmin_up``, ``dwmin_down``, ``decay_scales``, ``diffusion_rates``,
      ``reset_bias``, and the device's own, e.g. ``slope_up``).
  """

  path: tuple
  index: int
  weights: jax.Array
  conductance: jax.Array
  significance: Optional[float]
  hidden: dict


# ---- one weight's device state, whatever the algorithm -----------------------------------------------

def _tiles(leaf) -> list:
  """The ``TileState`` of each tile of one weight's device state, least significant first."""
  if isinstance(leaf, TileState):
    return [leaf]
  if isinstance(leaf, MixedPrecisionLeafState):
    return [leaf.tile]
  return list(leaf.tiles)


def _with_tile(leaf, k: int, tile: TileState):
  if isinstance(leaf, TileState):
    return tile
  if isinstance(leaf, MixedPrecisionLeafState):
    return leaf._replace(tile=tile)
  tiles = list(leaf.tiles)
  tiles[k] = tile
  return leaf._replace(tiles=tiles)


# An entry of the hidden-parameter table: how to read a value from a weight's device state, and how to put one.
_Entry = tuple[Callable[[Any], jax.Array], Callable[[Any, jax.Array], Any]]


def _field(name: str) -> _Entry:
  return (lambda leaf: getattr(leaf, name)), (lambda leaf, v: leaf._replace(**{name: v}))


def _tile_entry(k: int, read: Callable, write: Callable) -> _Entry:
  """The entry of a value of tile ``k``: ``read(tile)``, and ``write(tile, value) -> tile``."""
  return (lambda leaf: read(_tiles(leaf)[k]), lambda leaf, v: _with_tile(leaf, k, write(_tiles(leaf)[k], v)))


def _tile_entries(tiles: list) -> dict[str, _Entry]:
  """Per tile: weights, persistent weights and device parameters, suffixed ``_k`` for several tiles (AIHWKit)."""
  out = {}
  for k, tile in enumerate(tiles):
    sfx = f"_{k}" if len(tiles) > 1 else ""
    if len(tiles) > 1:  # a single tile's weights are the tile's own weights, not hidden (AIHWKit)
      out["hidden_weights" + sfx] = _tile_entry(k, lambda t: t.weights, lambda t, v: t._replace(weights=v))
    if tile.persistent is not None:
      out["persistent_weights" + sfx] = _tile_entry(k, lambda t: t.persistent,
                                                    lambda t, v: t._replace(persistent=v))
    for name in tile.params:
      out[name + sfx] = _tile_entry(k, lambda t, n=name: t.params[n],
                                    lambda t, v, n=name: t._replace(params={**t.params, n: v}))
  return out


def _algorithm_entries(leaf) -> dict[str, _Entry]:
  """Buffers, pointers and counters of the algorithm, by AIHWKit's name where it has one."""
  if isinstance(leaf, MixedPrecisionLeafState):
    # AIHWKit accumulates +lr·dᵀx, mrl_jax −lr·dᵀx: the AIHWKit name carries AIHWKit's sign.
    return {"hidden_weights_chi": (lambda l: -l.chi, lambda l, v: l._replace(chi=-v))}
  if isinstance(leaf, CompoundLeafState):
    out = {"ptr": _field("ptr")}
    if leaf.rows is not None:
      out["rows"] = _field("rows")
    if leaf.buffer is not None:
      for k in range(leaf.buffer.shape[-3]):
        out[f"buffered_FP_weight_{k}"] = (lambda l, k=k: l.buffer[..., k, :, :],
                                          lambda l, v, k=k: l._replace(buffer=l.buffer.at[..., k, :, :].set(v)))
    return out
  if isinstance(leaf, ChoppedLeafState):
    # AIHWKit 1.1.0 names the buffer of a ChoppedTransferCompound buffered_FP_weight_0, a DynamicTransferCompound's
    # (AGAD: the one with running means) buffered_FP_weight.
    agad = leaf.running_mean is not None
    named = {"buffer": "buffered_FP_weight" if agad else "buffered_FP_weight_0",
             "running_mean": "running_mean_weight", "past_mean": "past_mean_weight"}
    return {named.get(f, f): _field(f) for f in leaf._fields if f != "tiles" and getattr(leaf, f) is not None}
  return {}


def _entries(leaf) -> dict[str, _Entry]:
  return {**_tile_entries(_tiles(leaf)), **_algorithm_entries(leaf)}


# ---- configuration: significances and devices ------------------------------------------------------------------

def _check_config(owner: str, config) -> None:
  if config is not None and not isinstance(config, CONFIG_TYPES):
    raise TypeError(f"{owner}: config is a {type(config).__name__}: allowed are None or one of "
                    + ", ".join(t.__name__ for t in CONFIG_TYPES))


def significances(config) -> tuple:
  """``(γ_0, …, γ_{K−1})``: each tile's factor in the visible weight ``W̄ = Σ_k γ_k W_k``.

  Args:
    config: the algorithm's configuration (``CONFIG_TYPES``): a transfer compound's ``gammas`` (γ = 0: only the
      top tile is visible, TT-v1), ``(0, 1)`` for a chopped compound (C is visible), ``(1,)`` for analog SGD (its
      ``PulsedDevice``) and mixed precision.
  """
  _check_config("significances", config)
  if config is None:
    raise TypeError("significances: config is None: allowed are " + ", ".join(t.__name__ for t in CONFIG_TYPES))
  if isinstance(config, TransferCompound):
    return tuple(config.gammas)
  if isinstance(config, ChoppedTransfer):
    return (0.0, 1.0)
  return (1.0,)


def _device(config, k: int) -> PulsedDevice:
  if isinstance(config, PulsedDevice):
    return config
  if isinstance(config, MixedPrecision):
    return config.device
  return config.device_of(k)


def _significances_of(owner: str, config, path: tuple, n_tiles: int) -> tuple:
  if config is None:
    return (None,) * n_tiles
  gammas = significances(config)
  if len(gammas) != n_tiles:
    raise ValueError(f"{owner}: config is a {type(config).__name__} with {len(gammas)} tile(s), but the weight at "
                     f"{path_str(path)} has {n_tiles}: pass the configuration its optimizer was built from")
  return gammas


# ---- finding a weight ---------------------------------------------------------------------------------------

def _lookup(owner: str, opt_state, path) -> tuple[tuple, Any]:
  """``(path, device state)`` of the analog weight named ``path`` (a tuple, or its ``"/"``-joined string)."""
  states = weight_states(opt_state)
  if not states:
    raise ValueError(f"{owner}: opt_state holds no analog weights (no state of an mrl_jax.optim algorithm)")
  for key, leaf in states.items():
    if key == path or (isinstance(path, str) and "/".join(map(str, key)) == path):
      return key, leaf
  C.choice(owner, "path", path, list(states))  # raises, listing every analog weight's path


def _check_index(owner: str, index, leaf) -> int:
  C.integer(owner, "index", index, 0, len(_tiles(leaf)) - 1)
  return index


def _batched(leaf) -> bool:
  """Whether the weight's device state carries a leading seed axis (vmapped seeds): its tiles are 3-D then."""
  return _tiles(leaf)[0].weights.ndim > 2


def _shaped(owner: str, name: str, value, like: jax.Array, batched: bool) -> jax.Array:
  """``value`` as ``like``'s dtype and shape; a value without the seed axis of a vmapped state goes to every seed."""
  value = jnp.asarray(value, like.dtype)
  if value.shape != like.shape and not (batched and value.shape == like.shape[1:]):
    allowed = f"{like.shape}" + (f", or {like.shape[1:]} for every seed alike" if batched else "")
    raise ValueError(f"{owner}.{name} has shape {value.shape}: allowed shape is {allowed}")
  return jnp.broadcast_to(value, like.shape)


# ---- reading -------------------------------------------------------------------------------------------------

def analog_tiles(opt_state, config=None) -> list[TileInfo]:
  """Every tile of every analog weight in ``opt_state``, in tree order (``nnx.state`` sorts names) and least
  significant tile first.

  Args:
    opt_state: an optimizer state (or a training state) holding ``mrl_jax.optim`` algorithms.
    config: the algorithm's configuration (``CONFIG_TYPES``), for the significances; None leaves them None.

  Returns:
    a list of ``TileInfo``.
  """
  _check_config("analog_tiles", config)
  out = []
  for path, leaf in weight_states(opt_state).items():
    tiles = _tiles(leaf)
    gammas = _significances_of("analog_tiles", config, path, len(tiles))
    for k, (tile, gamma) in enumerate(zip(tiles, gammas)):
      out.append(TileInfo(path=path, index=k, weights=tile.weights,
                          conductance=tile.weights if tile.persistent is None else tile.persistent,
                          significance=gamma, hidden=dict(tile.params)))
  return out


def get_tile_weights(opt_state, path, index: int) -> jax.Array:
  """``float32[out, in]`` weights of tile ``index`` of the analog weight at ``path``."""
  _, leaf = _lookup("get_tile_weights", opt_state, path)
  return _tiles(leaf)[_check_index("get_tile_weights", index, leaf)].weights


def visible_weight(opt_state, path, config) -> jax.Array:
  """``W̄ = Σ_k γ_k W_k``, ``float32[out, in]``: the weight the layer at ``path`` reads, from its tiles.

  The same sum, in the same order, as the algorithm computes (terms with γ = 0 are left out, γ = 1 not
  multiplied), so it equals the algorithm's own visible weight bit for bit.
  """
  _check_config("visible_weight", config)
  key, leaf = _lookup("visible_weight", opt_state, path)
  tiles = _tiles(leaf)
  out = None
  for tile, gamma in zip(tiles, _significances_of("visible_weight", config, key, len(tiles))):
    if gamma == 0:
      continue
    term = tile.weights if gamma == 1 else jnp.float32(gamma) * tile.weights
    out = term if out is None else out + term
  return out if out is not None else jnp.zeros_like(tiles[0].weights)


def get_hidden_parameters(opt_state, path) -> dict[str, jax.Array]:
  """The hidden parameters of the analog weight at ``path``, as AIHWKit's ``tile.get_hidden_parameters()`` names
  them.

  Per tile, with the suffix ``_k`` when the weight has several tiles: ``hidden_weights_k`` (the tile's weights),
  ``persistent_weights`` (conductances under write noise), and the device parameters ``max_bound``, ``min_bound``,
  ``dwmin_up``, ``dwmin_down``, ``decay_scales``, ``diffusion_rates``, ``reset_bias`` and the device's own
  (``slope_up``, …), all ``float32[out, in]``. Then the algorithm's state: ``buffered_FP_weight_k`` (TT-v2's
  buffers and the chopped TT-v3's H, ``_0``), ``buffered_FP_weight``, ``running_mean_weight`` and
  ``past_mean_weight`` (AGAD), ``hidden_weights_chi`` (mixed precision's accumulator χ, AIHWKit's sign), and
  pointers and counters by their field names (``ptr``, ``in_chop``, ``out_chop``, ``rows``, ``transfer_counter``,
  ``m_x``, ``m_d``, ``switched``; see the algorithm's ``*LeafState``), which AIHWKit does not list. AIHWKit's
  ``drift_nu`` (per tile) is not among them: ``mrl_jax`` models no drift (the translator refuses drift settings).
  ``tests/test_tile_api.py`` pins these names to AIHWKit 1.1.0's.
  """
  _, leaf = _lookup("get_hidden_parameters", opt_state, path)
  return {name: get(leaf) for name, (get, _) in _entries(leaf).items()}


# ---- setting ----------------------------------------------------------------------------------------------

def set_tile_weights(opt_state, path, index: int, weights, *, config=None, key=None):
  """Programs ``weights`` into tile ``index`` of the analog weight at ``path`` (AIHWKit ``set_weights``).

  The weights are clipped to each crosspoint's ``[min_bound, max_bound]``, exactly and at once, not through
  pulses. A device with write noise draws new noise on the programmed conductances, which needs ``config`` (for
  the noise level) and ``key``.

  Args:
    opt_state: the optimizer state.
    path: the weight's path, ``("l1", "weight")`` or ``"l1/weight"``.
    index: the tile, 0 … K−1.
    weights: ``float32[out, in]`` (or ``[seeds, out, in]`` for a vmapped state; ``[out, in]`` sets every seed).
    config: the algorithm's configuration (``CONFIG_TYPES``); needed only under write noise.
    key: PRNG key of the write noise; needed only under write noise.

  Returns:
    the new optimizer state; everything but that tile unchanged. The model still holds the old visible weight:
    assign ``visible_weight(new_state, path, config)`` to it to read the new tile at once.

  Raises:
    ValueError: an unknown path, a tile index out of range, a shape that does not match, or write noise without
      ``config`` and ``key``.
  """
  owner = "set_tile_weights"
  _check_config(owner, config)
  found, leaf = _lookup(owner, opt_state, path)
  k = _check_index(owner, index, leaf)
  tile = _tiles(leaf)[k]
  weights = _shaped(owner, "weights", weights, tile.weights, _batched(leaf))
  if tile.persistent is None:
    new = tile._replace(weights=clip_to_bounds(weights, tile.params))
  else:
    if config is None or key is None:
      raise ValueError(f"{owner}: the tile at {path_str(found)}[{k}] has write noise: pass config (allowed: "
                       + ", ".join(t.__name__ for t in CONFIG_TYPES) + ") and key (a PRNG key) to draw it")
    new = set_weights(tile, _device(config, k), weights, key)
  return map_weight_state(opt_state, found, lambda l: _with_tile(l, k, new))


def set_hidden_parameters(opt_state, path, values: dict):
  """Sets some of the hidden parameters of the analog weight at ``path`` (names of ``get_hidden_parameters``).

  Values are stored as given (AIHWKit ``set_hidden_parameters``: nothing is clipped or redrawn), in the stored
  dtype; a value without the seed axis of a vmapped state goes to every seed.

  Args:
    opt_state: the optimizer state.
    path: the weight's path, ``("l1", "weight")`` or ``"l1/weight"``.
    values: ``{name: array}`` of the shape ``get_hidden_parameters`` gives.

  Returns:
    the new optimizer state.

  Raises:
    ValueError: an unknown path or name (the message lists the allowed ones) or a shape that does not match.
  """
  owner = "set_hidden_parameters"
  found, leaf = _lookup(owner, opt_state, path)
  entries = _entries(leaf)
  for name in values:
    C.choice(owner, "name", name, list(entries))
  checked = {name: _shaped(owner, name, v, entries[name][0](leaf), _batched(leaf)) for name, v in values.items()}

  def put(leaf):
    for name, value in checked.items():
      leaf = entries[name][1](leaf, value)
    return leaf

  return map_weight_state(opt_state, found, put)


# ---- one tile's MVMs -----------------------------------------------------------------------------------------

def _mvm(owner: str, weights, v, io: IOParameters, key, transposed: bool):
  weights = jnp.asarray(weights, jnp.float32)
  if weights.ndim != 2:
    raise ValueError(f"{owner}: weights has shape {weights.shape}: allowed is [out, in] (vmap over seeds)")
  if not isinstance(io, IOParameters):
    raise TypeError(f"{owner}: io is a {type(io).__name__}: allowed is IOParameters")
  width = weights.shape[0] if transposed else weights.shape[1]
  name = "d" if transposed else "x"
  v = jnp.asarray(v, jnp.float32)
  if v.ndim not in (1, 2) or v.shape[-1] != width:
    raise ValueError(f"{owner}: {name} has shape {v.shape}: allowed is [{width}] or [rows, {width}]")
  if key is None:
    if not io.is_perfect:
      raise ValueError(f"{owner}: key is None: allowed is a PRNG key when io is not perfect (its noise)")
    key = jax.random.key(0)  # unused by a perfect MVM
  y = analog_mvm(weights, v.reshape(-1, width), io, key, transposed=transposed)
  return y[0] if v.ndim == 1 else y


def tile_forward(weights, x, io: IOParameters = PERFECT_IO, key=None) -> jax.Array:
  """The forward MVM of one tile, ``y = W x`` per row of ``x``, through the I/O (AIHWKit ``tile.forward``).

  Args:
    weights: ``float32[out, in]``: a tile's weights (``TileInfo.weights``) or a visible weight.
    x: ``float32[in]`` or ``float32[rows, in]`` inputs.
    io: the layer's ``forward_io`` (default perfect: an exact matmul).
    key: PRNG key of the I/O noise; may be None only for perfect I/O.

  Returns:
    ``float32[out]`` or ``float32[rows, out]``. The layer's forward is ``tile_forward(W̄, x, forward_io)`` (then its
    mapping scale and digital bias).
  """
  return _mvm("tile_forward", weights, x, io, key, transposed=False)


def tile_backward(weights, d, io: IOParameters = PERFECT_IO, key=None) -> jax.Array:
  """The backward MVM of one tile, ``Wᵀ d`` per row of ``d``, through the I/O (bound management off, as AIHWKit's
  ``tile.backward``).

  Args:
    weights: ``float32[out, in]``.
    d: ``float32[out]`` or ``float32[rows, out]`` output gradients.
    io: the layer's ``backward_io`` (default perfect).
    key: PRNG key of the I/O noise; may be None only for perfect I/O.

  Returns:
    ``float32[in]`` or ``float32[rows, in]``.
  """
  return _mvm("tile_backward", weights, d, io, key, transposed=True)
