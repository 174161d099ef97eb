"""Metric definitions against hand-worked cases, brute force and the per-item reference."""

import itertools

import numpy as np
import pytest

from benchmarks import metrics_reference
from yt8m import metrics


def _evaluate(predictions, labels, top_k=20, batch_sizes=None):
  m = metrics.EvaluationMetrics(predictions.shape[1], top_k)
  start = 0
  for size in batch_sizes or [len(predictions)]:
    m.accumulate(predictions[start:start + size], labels[start:start + size])
    start += size
  assert start == len(predictions)
  return m.get()


def test_hand_computed_case():
  # Two videos, four classes, top_k = 2.
  predictions = np.array([[0.9, 0.1, 0.8, 0.3],
                          [0.2, 0.7, 0.6, 0.05]])
  labels = np.array([[1, 0, 0, 1],
                     [0, 0, 1, 0]], np.float32)
  result = _evaluate(predictions, labels, top_k=2)
  # Hit@1: video 0 top class 0 (positive), video 1 top class 1 (negative).
  assert result["hit_at_one"] == pytest.approx(0.5)
  # PERR: video 0 has 2 positives, top-2 = {0, 2} -> 1/2; video 1: top-1 = {1} -> 0.
  assert result["perr"] == pytest.approx(0.25)
  # GAP: pooled top-2 triplets ranked 0.9(+) 0.8(-) 0.7(-) 0.6(+); 3 positives in total
  # (class 3 of video 0 is outside its top 2 but counts in recall).
  assert result["gap"] == pytest.approx((1 / 1 + 2 / 4) / 3)
  # mAP over classes with positives (0, 2, 3): class 0 ranks [0.9+] -> 1; class 2 ranks
  # [0.8-, 0.6+] -> 1/2; class 3 has no triplet -> 0.
  assert result["map"] == pytest.approx((1 + 0.5 + 0) / 3)
  assert result["num_classes_with_positives"] == 3
  assert np.isnan(result["aps"][1])


def test_ties_count_with_their_expected_order():
  # One positive tied with one negative at the top: rank 1 or 2 with equal chance.
  ap = metrics.average_precision(np.array([0.5, 0.5]), np.array([True, False]), 1)[0]
  assert ap == pytest.approx((1 + 0.5) / 2)


@pytest.mark.parametrize("seed", range(5))
def test_tie_aware_ap_equals_brute_force_over_permutations(seed):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, 3, size=6).astype(float)  # many ties
  positive = rng.random(6) < 0.5
  num_positives = positive.sum() + 1  # one positive outside the list
  expected = []
  for perm in itertools.permutations(range(6)):
    s, p = scores[list(perm)], positive[list(perm)]
    order = sorted(range(6), key=lambda i: -s[i])  # a stable sort of a random order
    hits = np.cumsum(p[order])
    expected.append(sum(hits[r] / (r + 1) for r in range(6) if p[order][r]) / num_positives)
  got = metrics.average_precision(scores, positive, num_positives)[0]
  assert got == pytest.approx(np.mean(expected), abs=1e-12)


def test_top_k_breaks_ties_by_lowest_class():
  predictions = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]], np.float32)
  classes, scores = metrics.top_k_sorted(predictions, 3)
  assert classes.tolist() == [[1, 0, 2]]
  assert scores.tolist() == [[pytest.approx(0.9), 0.5, 0.5]]


def test_top_k_matches_stable_sort_on_wide_tied_rows():
  rng = np.random.default_rng(0)
  predictions = np.round(rng.random((50, 3862)), 2).astype(np.float32)
  classes, scores = metrics.top_k_sorted(predictions, 20)
  expected = np.argsort(-predictions, axis=1, kind="stable")[:, :20]
  np.testing.assert_array_equal(classes, expected)


def test_videos_without_labels_and_classes_without_positives():
  predictions = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.4]])
  labels = np.array([[1, 0, 0], [0, 0, 0]], np.float32)
  result = _evaluate(predictions, labels)
  assert result["hit_at_one"] == pytest.approx(0.5)  # the unlabelled video scores 0
  assert result["perr"] == pytest.approx(0.5)        # ... and still counts
  assert result["num_classes_with_positives"] == 1
  assert result["map"] == pytest.approx(1.0)        # only class 0 is averaged
  # GAP: pooled 0.9(+) 0.8 0.4 0.3 0.2 0.1, one positive.
  assert result["gap"] == pytest.approx(1.0)


def test_no_prediction_entries_are_never_selected():
  predictions = np.array([[-np.inf, 0.4, -np.inf], [-np.inf] * 3], np.float32)
  labels = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  result = _evaluate(predictions, labels)
  assert result["hit_at_one"] == pytest.approx(0.5)  # row 2 has no prediction: no hit
  assert result["gap"] == pytest.approx(1 / 3)        # one hit at rank 1 of 3 positives


def _random_case(seed, num_videos=60, num_classes=40, tied=False):
  rng = np.random.default_rng(seed)
  predictions = rng.random((num_videos, num_classes))
  if tied:
    predictions = np.round(predictions, 1)
  predictions[rng.random(predictions.shape) < 0.02] = 0.0
  labels = (rng.random((num_videos, num_classes)) < 0.08).astype(np.float32)
  labels[:3] = 0  # some videos without labels
  labels[:, -2:] = 0  # some classes without positives
  return predictions.astype(np.float32), labels


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("top_k", [1, 5, 20])
def test_matches_per_item_reference(tied, top_k):
  predictions, labels = _random_case(1, tied=tied)
  got = _evaluate(predictions, labels, top_k=top_k)
  want = metrics_reference.evaluate(predictions.tolist(), labels.tolist(), top_k=top_k)
  for key in ("hit_at_one", "perr", "gap", "map"):
    assert got[key] == pytest.approx(want[key], abs=1e-12), key


@pytest.mark.parametrize("tied", [False, True])
def test_invariant_to_batching(tied):
  predictions, labels = _random_case(2, num_videos=97, tied=tied)
  whole = _evaluate(predictions, labels)
  for sizes in ([1] * 97, [10] * 9 + [7], [50, 0, 47]):
    split = _evaluate(predictions, labels, batch_sizes=sizes)
    for key in ("hit_at_one", "perr", "gap", "map"):
      assert split[key] == pytest.approx(whole[key], abs=1e-12), (key, sizes)


def test_loss_is_example_weighted_and_batch_gap_helper():
  predictions, labels = _random_case(3)
  m = metrics.EvaluationMetrics(predictions.shape[1])
  m.accumulate(predictions[:10], labels[:10], loss=np.full(10, 2.0))
  m.accumulate(predictions[10:], labels[10:], loss=5.0)
  assert m.get()["loss"] == pytest.approx((10 * 2 + 50 * 5) / 60)
  assert metrics.calculate_gap(predictions, labels) == pytest.approx(
      metrics_reference.evaluate(predictions.tolist(), labels.tolist())["gap"], abs=1e-12)


def test_shape_errors_are_clear():
  m = metrics.EvaluationMetrics(5)
  with pytest.raises(ValueError, match="expected 5"):
    m.accumulate(np.zeros((2, 4)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="no videos"):
    metrics.EvaluationMetrics(5).get()
