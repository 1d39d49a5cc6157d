"""The plain-data form of an AIHWKit configuration (standard library only).

This file imports nothing but the standard library so that scripts running in an AIHWKit environment without
JAX (``tests/fixtures/make_rpu_config_fixtures.py``, ``scripts/make_aihwkit_defaults.py``) can load it by path.

The plain form of a value:

* a dataclass instance → ``{"__class__": "<class name>", "<field>": <plain value>, …}`` (every field; a
  hand-written plain form may leave fields out: they take the class's AIHWKit 1.1.0 default, and a nested
  dict without ``"__class__"`` is an instance of the class of that field's default);
* an enum member → ``"<EnumClass>.<MEMBER>"``, e.g. ``"PulseType.DETERMINISTIC_IMPLICIT"``;
* a class object (``tile_class``) → ``{"__type__": "<module>.<qualname>"}``;
* lists and tuples → lists; numbers, booleans, strings and None as they are.

It is JSON (``json.dumps(to_plain(rpu_config))``) and what ``dataclasses.asdict`` gives plus the class names.
"""

from __future__ import annotations

import dataclasses
import enum

CLASS_KEY = "__class__"
TYPE_KEY = "__type__"


def to_plain(value):
  """The plain-data form of an AIHWKit configuration object (or any value inside one).

  Args:
    value: an AIHWKit ``rpu_config`` (``SingleRPUConfig(...)``, …) or any of its parts.

  Returns:
    nested dicts, lists and scalars as described in this module's docstring.

  Raises:
    TypeError: a value of a type the plain form cannot hold (names it and its type).
  """
  if isinstance(value, type):
    return {TYPE_KEY: f"{value.__module__}.{value.__qualname__}"}
  if dataclasses.is_dataclass(value):
    out = {CLASS_KEY: type(value).__name__}
    for f in dataclasses.fields(value):
      out[f.name] = to_plain(getattr(value, f.name))
    return out
  if isinstance(value, enum.Enum):
    return f"{type(value).__name__}.{value.name}"
  if isinstance(value, (list, tuple)):
    return [to_plain(v) for v in value]
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  # numpy scalars and 0-d tensors carry .item(); anything else has no plain form.
  if hasattr(value, "item") and getattr(value, "shape", None) in ((), None):
    return value.item()
  raise TypeError(f"to_plain: a value of type {type(value).__name__} ({value!r}) has no plain form: allowed are "
                  "dataclasses, enums, classes, lists, tuples, numbers, booleans, strings and None")
