"""Frame selection strategies: definitions, short videos, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from yt8m import frame_selection


def select(n, k, strategy, seed=None, max_frames=300):
  seed = None if seed is None else tf.constant(seed, tf.int64)
  return frame_selection.select_frames(tf.constant(n), k, strategy, max_frames, seed).numpy()


def test_uniform_on_full_videos_is_the_every_jth_frame_grid():
  np.testing.assert_array_equal(select(300, 30, "uniform"), np.arange(0, 300, 10))
  np.testing.assert_array_equal(select(300, 30, "uniform_padded"), np.arange(0, 300, 10))


def test_uniform_spreads_over_the_true_length_but_padded_grid_does_not():
  np.testing.assert_array_equal(select(100, 10, "uniform"), np.arange(0, 100, 10))
  # The authors' grid (stride 30 on 300 frames) only has 4 points inside a 100-frame video.
  np.testing.assert_array_equal(select(100, 10, "uniform_padded"), [0, 30, 60, 90])
  np.testing.assert_array_equal(select(7, 3, "uniform"), [0, 2, 4])


@pytest.mark.parametrize("strategy", frame_selection.STRATEGIES)
@pytest.mark.parametrize("n,k", [(300, 30), (137, 6), (10, 10), (3, 20), (1, 6), (250, 1)])
def test_every_strategy_gives_sorted_distinct_in_range_frames(strategy, n, k):
  idx = select(n, k, strategy, seed=[1, 2])
  assert len(idx) >= 1
  assert len(idx) <= min(n, k)
  if strategy != "uniform_padded":
    assert len(idx) == min(n, k)
  assert np.all(np.diff(idx) > 0)
  assert idx.min() >= 0 and idx.max() < n


def test_contiguous_strategies():
  np.testing.assert_array_equal(select(100, 5, "first"), [0, 1, 2, 3, 4])
  np.testing.assert_array_equal(select(100, 5, "last"), [95, 96, 97, 98, 99])
  np.testing.assert_array_equal(select(100, 4, "middle"), [48, 49, 50, 51])
  np.testing.assert_array_equal(select(100, 10, "first_middle_last"),
                                [0, 1, 2, 3, 48, 49, 50, 97, 98, 99])
  # n == k: the three runs tile the video exactly.
  np.testing.assert_array_equal(select(10, 10, "first_middle_last"), np.arange(10))
  # Short videos keep all their frames.
  np.testing.assert_array_equal(select(3, 10, "middle"), [0, 1, 2])


def test_random_is_deterministic_with_a_seed_and_fresh_without():
  a = select(300, 10, "random", seed=[0, 42])
  b = select(300, 10, "random", seed=[0, 42])
  c = select(300, 10, "random", seed=[0, 43])
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  draws = {tuple(select(300, 10, "random")) for _ in range(5)}
  assert len(draws) > 1


def test_bad_arguments():
  with pytest.raises(ValueError, match="unknown frame selection 'every'"):
    select(10, 3, "every")
  with pytest.raises(ValueError, match="student_frames must be >= 1"):
    select(10, 0, "uniform")


@pytest.mark.parametrize("n,k", [(300, 30), (137, 6), (10, 10), (3, 20), (250, 1)])
def test_jittered_uniform_draws_one_frame_in_each_stretch(n, k):
  m = min(n, k)
  starts = np.arange(m) * n // m
  ends = (np.arange(m) + 1) * n // m
  draws = []
  for salt in range(20):
    idx = frame_selection.select_frames(tf.constant(n), k, "uniform", seed=tf.constant(
        [7, salt], tf.int64), jitter=True).numpy()
    assert len(idx) == m and np.all(idx >= starts) and np.all(idx < ends)
    draws.append(tuple(idx))
  # Fresh frames per seed wherever a stretch has room, the same frames for the same seed.
  assert (len(set(draws)) > 1) == (n > m)
  again = frame_selection.select_frames(tf.constant(n), k, "uniform", seed=tf.constant(
      [7, 0], tf.int64), jitter=True).numpy()
  assert tuple(again) == draws[0]


def test_jitter_is_only_for_uniform():
  with pytest.raises(ValueError, match="jitter applies to the uniform selection, not 'first'"):
    frame_selection.select_frames(tf.constant(10), 3, "first", jitter=True)
