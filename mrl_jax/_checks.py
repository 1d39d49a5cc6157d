"""Validation helpers: every config raises ``ValueError`` naming the field, the value and the range."""

from __future__ import annotations

import math
from typing import Any, Iterable


def _fail(owner: str, name: str, value: Any, allowed: str):
  raise ValueError(f"{owner}.{name} = {value!r} is invalid: allowed range is {allowed}")


def finite(owner: str, name: str, value: float) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    _fail(owner, name, value, "a finite number")


FINITE_NON_NEGATIVE = "finite values >= 0"


def finite_non_negative(label: str, value: Any) -> None:
  """For values that are not a config field (a function argument, a CLI flag): ``label`` names what is checked."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
    raise ValueError(f"{label} = {value!r} is invalid: allowed range is {FINITE_NON_NEGATIVE}")


def positive(owner: str, name: str, value: float) -> None:
  finite(owner, name, value)
  if value <= 0:
    _fail(owner, name, value, "> 0")


def non_negative(owner: str, name: str, value: float) -> None:
  finite(owner, name, value)
  if value < 0:
    _fail(owner, name, value, ">= 0")


def optional_rate(owner: str, name: str, value) -> None:
  """A rate that None (or AIHWKit's 0) sets to "the SGD learning rate": None or a finite number >= 0."""
  if value is not None:
    finite(owner, name, value)
    if value < 0:
      _fail(owner, name, value, ">= 0, or None for the SGD learning rate")


def in_range(owner: str, name: str, value: float, lo: float, hi: float) -> None:
  finite(owner, name, value)
  if not lo <= value <= hi:
    _fail(owner, name, value, f"[{lo}, {hi}]")


def integer(owner: str, name: str, value: int, lo: int, hi: int | None = None) -> None:
  if isinstance(value, bool) or not isinstance(value, int):
    _fail(owner, name, value, f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))
  if value < lo or (hi is not None and value > hi):
    _fail(owner, name, value, f"[{lo}, {hi}]" if hi is not None else f">= {lo}")


def boolean(owner: str, name: str, value: bool) -> None:
  if not isinstance(value, bool):
    _fail(owner, name, value, "True or False")


def choice(owner: str, name: str, value: Any, allowed: Iterable[Any]) -> None:
  allowed = tuple(allowed)
  if value not in allowed:
    _fail(owner, name, value, "one of " + ", ".join(repr(a) for a in allowed))


def check_fields(obj, rules: dict) -> None:
  """Applies ``rules[field](owner, field, value)`` to each field of a dataclass instance."""
  owner = type(obj).__name__
  for name, rule in rules.items():
    rule(owner, name, getattr(obj, name))
