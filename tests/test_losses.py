"""Label losses: the starter's formulas, per example."""

import numpy as np
import pytest
import tensorflow as tf

from yt8m import losses

B, C = 6, 7


def random_batch(seed=0):
  rng = np.random.default_rng(seed)
  predictions = rng.uniform(size=(B, C)).astype(np.float32)
  labels = (rng.uniform(size=(B, C)) < 0.3).astype(np.float32)
  labels[0] = 0.0  # an unlabelled row
  labels[1] = 1.0  # every class positive
  return predictions, labels


def test_cross_entropy_matches_the_formula():
  p, y = random_batch(1)
  expected = -(y * np.log(p + 1e-5) + (1 - y) * np.log(1 - p + 1e-5)).sum(1)
  got = losses.CrossEntropyLoss()(predictions=p, labels=y).numpy()
  assert got.shape == (B,)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Saturated predictions stay finite thanks to the epsilon inside the logs.
  saturated = losses.CrossEntropyLoss()(predictions=1 - y, labels=y).numpy()
  np.testing.assert_allclose(saturated, -C * np.log(1e-5), rtol=1e-4)


def test_cross_entropy_label_weights_apply_before_the_sum():
  p, y = random_batch(2)
  w = np.random.default_rng(3).uniform(size=(B, C)).astype(np.float32)
  expected = -(w * (y * np.log(p + 1e-5) + (1 - y) * np.log(1 - p + 1e-5))).sum(1)
  got = losses.CrossEntropyLoss()(predictions=p, labels=y, label_weights=w).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_hinge_matches_the_formula():
  p, y = random_batch(4)
  p = 2 * p - 1  # hinge is meant for [-1, 1] scores
  expected = np.maximum(0.0, 1.0 - (2 * y - 1) * p).sum(1)
  got = losses.HingeLoss()(predictions=p, labels=y).numpy()
  assert got.shape == (B,)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_softmax_matches_the_formula_and_zero_rows_cost_nothing():
  p, y = random_batch(5)
  norm_y = y / np.maximum(y.sum(1, keepdims=True), 1e-7)
  softmax = np.exp(p) / np.exp(p).sum(1, keepdims=True)
  expected = -(norm_y * np.log(softmax)).sum(1)
  got = losses.SoftmaxLoss()(predictions=p, labels=y).numpy()
  assert got.shape == (B,)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert got[0] == 0.0 and np.all(np.isfinite(got))


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_losses_take_keyword_arguments_and_any_float_dtype(name):
  loss = losses.build_loss(name)
  p, y = random_batch(6)
  with pytest.raises(TypeError):
    loss(p, y)  # pylint: disable=too-many-function-args
  # Mixed-precision predictions and bool labels are cast to float32.
  low = loss(predictions=tf.constant(p, tf.bfloat16), labels=tf.constant(y > 0))
  assert low.dtype == tf.float32 and low.shape == (B,)
  np.testing.assert_allclose(low, loss(predictions=p, labels=y), rtol=2e-2, atol=1e-2)


def test_build_loss_lists_valid_names():
  assert set(losses.LOSSES) == {"CrossEntropyLoss", "HingeLoss", "SoftmaxLoss"}
  with pytest.raises(ValueError, match="CrossEntropyLoss.*HingeLoss.*SoftmaxLoss"):
    losses.build_loss("FocalLoss")
