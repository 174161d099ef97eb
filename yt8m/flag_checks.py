"""Checks of command-line values at the edge: each bad value is one line naming the flag."""

from __future__ import annotations

import tensorflow as tf

from yt8m import outputs, readers


class FlagError(ValueError):
  """A flag's value is unusable; the message names the flag and the value."""


def at_least(flag_values, names: tuple[str, ...], minimum: int = 1) -> None:
  """Each named integer flag is >= minimum (e.g. --top_k=0 would write empty rows)."""
  for name in names:
    value = flag_values[name].value
    if value < minimum:
      raise FlagError(f"--{name}={value}: must be at least {minimum}")


def data_files(flag: str, pattern: str) -> list[str]:
  """The files of a data-pattern flag; an unreachable location (e.g. gs:// without
  credentials) is one line naming the flag and the pattern."""
  if not pattern:
    raise FlagError(f"--{flag} is required")
  try:
    return readers.list_files(pattern)
  except tf.errors.OpError as e:
    raise FlagError(f"--{flag}: {outputs.describe_io_error(pattern, e)}") from None
