"""The order in which a benchmark times the settings it compares, and their ratios.

On this VM the first run of a pair was up to 1.8x slower than the second with the same code on
both sides, and slow phases (a process held on one core) last for whole passes. So every round
runs every setting once, rounds alternate their order, a warm-up round comes first (tracing,
page cache), and a ratio is the median of each round's own ratio, not a ratio of medians.
"""

from __future__ import annotations

import statistics
from typing import Hashable, Iterator, Sequence


def alternating_rounds(labels: Sequence[Hashable], rounds: int,
                       warmup: bool = True) -> Iterator[tuple[int, Hashable]]:
  """(round, label) pairs: round -1 is the warm-up (not to be recorded), then rounds 0 ..
  rounds - 1, in the labels' order on even rounds and reversed on odd ones."""
  for round_index in range(-1 if warmup else 0, rounds):
    yield from ((round_index, label) for label in
                (reversed(labels) if round_index % 2 else labels))


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
  """The median over rounds of numerator / denominator, both timed in the same round."""
  return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))
