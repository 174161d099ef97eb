"""Label losses of the starter code (losses.py), returning PER-EXAMPLE values.

Each loss sums over classes and returns [B]; the training loop averages over the global batch
(tf.nn.compute_average_loss), which reproduces the starter's reduce_mean over examples.
Called with keyword arguments only: loss(predictions=..., labels=...), where predictions are
the model's [B, C] probabilities and labels [B, C] multi-hot (cast to float32 here).
"""

from __future__ import annotations

import tensorflow as tf


def _as_float32(predictions, labels):
  # Mixed-precision models may emit float16/bfloat16; the logs below need float32.
  return tf.cast(predictions, tf.float32), tf.cast(labels, tf.float32)


class CrossEntropyLoss:
  """-sum_c [y log(p + eps) + (1 - y) log(1 - p + eps)], eps = 1e-5 inside both logs (no
  clipping), as the starter."""

  epsilon = 1e-5

  def __call__(self, *, predictions, labels, label_weights=None) -> tf.Tensor:
    """Args:
      predictions: [B, C] probabilities.
      labels: [B, C] multi-hot.
      label_weights: optional [B, C] per-entry weights applied before the sum (the starter's
        segment-mode argument).

    Returns:
      [B] float32.
    """
    p, y = _as_float32(predictions, labels)
    loss = -(y * tf.math.log(p + self.epsilon) + (1 - y) * tf.math.log(1 - p + self.epsilon))
    if label_weights is not None:
      loss *= tf.cast(label_weights, tf.float32)
    return tf.reduce_sum(loss, axis=1)


class HingeLoss:
  """sum_c max(0, b - (2y - 1) p), b = 1.0 (meant for predictions in [-1, 1])."""

  def __init__(self, b: float = 1.0):
    self.b = b

  def __call__(self, *, predictions, labels) -> tf.Tensor:
    """Args:
      predictions: [B, C].
      labels: [B, C] multi-hot.

    Returns:
      [B] float32.
    """
    p, y = _as_float32(predictions, labels)
    return tf.reduce_sum(tf.maximum(0.0, self.b - (2 * y - 1) * p), axis=1)


class SoftmaxLoss:
  """-sum_c y~_c log softmax(p)_c with y~ = y / max(sum_c y, 1e-7).

  The softmax is over the model's predictions (probabilities), as the starter does; an
  all-zero label row gives loss 0. log_softmax is mathematically the starter's log(softmax).
  """

  epsilon = 1e-7  # written 10e-8 in the starter

  def __call__(self, *, predictions, labels) -> tf.Tensor:
    """Args:
      predictions: [B, C].
      labels: [B, C] multi-hot.

    Returns:
      [B] float32.
    """
    p, y = _as_float32(predictions, labels)
    y = y / tf.maximum(tf.reduce_sum(y, axis=1, keepdims=True), self.epsilon)
    return -tf.reduce_sum(y * tf.nn.log_softmax(p, axis=1), axis=1)


LOSSES = {
    "CrossEntropyLoss": CrossEntropyLoss,
    "HingeLoss": HingeLoss,
    "SoftmaxLoss": SoftmaxLoss,
}


def build_loss(name: str):
  """An instance of the loss class named by --label_loss.

  Raises:
    ValueError: unknown name (the message lists the valid ones).
  """
  if name not in LOSSES:
    raise ValueError(f"unknown label loss {name!r}; choose one of {', '.join(LOSSES)}")
  return LOSSES[name]()
