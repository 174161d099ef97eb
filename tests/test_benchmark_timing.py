"""The order benchmarks time their settings in (not a timing test: no clock is read)."""

from benchmarks import timing


def test_rounds_alternate_after_a_warm_up():
  assert list(timing.alternating_rounds(["a", "b", "c"], 3)) == [
      (-1, "c"), (-1, "b"), (-1, "a"),
      (0, "a"), (0, "b"), (0, "c"),
      (1, "c"), (1, "b"), (1, "a"),
      (2, "a"), (2, "b"), (2, "c")]
  assert list(timing.alternating_rounds(["a", "b"], 2, warmup=False)) == [
      (0, "a"), (0, "b"), (1, "b"), (1, "a")]


def test_a_ratio_is_the_median_of_the_rounds_own_ratios():
  # A slow round (both settings 3x slower) moves neither setting's share.
  assert timing.median_ratio([1.0, 3.0, 1.2], [2.0, 6.0, 2.0]) == 0.5
