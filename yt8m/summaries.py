"""The starter's training histograms: one per model weight, and the raw input batch.

The starter's train.py wrote `tf.summary.histogram(variable.op.name, variable)` for every slim
model variable (weights, biases, batch-norm beta/gamma/moving statistics) and
`model/input_raw`, into train_dir. Keras names weights differently, so a weight's tag is its
path in the model turned into the starter's convention:

  dbof_model/classifier/gates/kernel -> tower/gates/weights
  dbof_model/input_bn/moving_mean    -> tower/input_bn/moving_mean
  dbof_model/cluster/kernel          -> tower/cluster_weights   (DBoF's own names, as the starter)

i.e. the model's own name becomes `tower` (the starter's variable scope), the `classifier/` of
the video-level classifier inside a frame-level model is dropped (the starter's had no scope of
its own), `kernel`/`bias` become slim's `weights`/`biases`, and DBoF's cluster and hidden
layers take the starter's `cluster_weights`, `cluster_biases`, `hidden1_weights`,
`hidden1_biases`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorboard.plugins.histogram import metadata as histogram_metadata

BUCKETS = 30  # TensorBoard's default bucket count
_SLIM_SUFFIXES = {"kernel": "weights", "bias": "biases"}
_DBOF_NAMES = {f"{layer}/{suffix}": f"{layer}_{slim}" for layer in ("cluster", "hidden1")
               for suffix, slim in _SLIM_SUFFIXES.items()}


def histogram_tag(path: str) -> str:
  """The starter-style tag of a Keras weight path (see the module docstring)."""
  parts = path.split("/")[1:]  # drop the model's own name
  if parts and parts[0] == "classifier":
    parts = parts[1:]
  rest = "/".join(parts)
  if rest in _DBOF_NAMES:
    return f"tower/{_DBOF_NAMES[rest]}"
  if parts:
    parts[-1] = _SLIM_SUFFIXES.get(parts[-1], parts[-1])
  return "/".join(["tower"] + parts)


def histogram_buckets(values) -> tf.Tensor:
  """TensorBoard's histogram tensor, [BUCKETS, 3] rows (left edge, right edge, count) over
  equal-width buckets from the minimum to the maximum, as tf.summary.histogram makes it. That
  one builds a [values, buckets] float64 one-hot (seconds for a DBoF's 38 M weights); a
  fixed-width histogram is one pass."""
  data = tf.reshape(tf.cast(values, tf.float32), [-1])
  size = int(tf.size(data))
  if size == 0:
    return tf.zeros([BUCKETS, 3], tf.float64)
  low, high = tf.reduce_min(data), tf.reduce_max(data)
  if low == high:  # one distinct value: every bucket has that edge, the last one the count
    edges = tf.fill([BUCKETS], tf.cast(high, tf.float64))
    counts = tf.concat([tf.zeros([BUCKETS - 1], tf.float64), [float(size)]], 0)
    return tf.stack([edges, edges, counts], axis=1)
  counts = tf.cast(tf.histogram_fixed_width(data, tf.stack([low, high]), nbins=BUCKETS),
                   tf.float64)
  low, high = tf.cast(low, tf.float64), tf.cast(high, tf.float64)
  edges = tf.concat([tf.linspace(low, high, BUCKETS + 1)[:-1], [high]], 0)
  return tf.stack([edges[:-1], edges[1:], counts], axis=1)


def write_histograms(model: keras.Model, step: int, input_raw=None) -> list[str]:
  """Writes a histogram of every weight of the model (trainable or not) and, if given, of the
  raw input batch as `model/input_raw`, at `step`, to the default summary writer (call it
  inside `with writer.as_default():`). Returns the tags. Cost: one pass over the weights
  (benchmarks/bench_histograms.py)."""
  metadata = histogram_metadata.create_summary_metadata(display_name=None, description=None)
  named = [(histogram_tag(w.path), w.value) for w in model.weights]
  if input_raw is not None:
    named.append(("model/input_raw", input_raw))
  for tag, values in named:
    tf.summary.write(tag, histogram_buckets(values), step=step, metadata=metadata)
  return [tag for tag, _ in named]
