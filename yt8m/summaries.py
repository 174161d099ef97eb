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


def write_histograms(model: keras.Model, step: int, input_raw=None) -> list[str]:
  """Writes a histogram of every weight of the model (trainable or not) and, if given, of the
  raw input batch as `model/input_raw`, at `step`, to the default summary writer (call it
  inside `with writer.as_default():`). Returns the tags. Cost: one pass over the weights."""
  tags = []
  for weight in model.weights:
    tag = histogram_tag(weight.path)
    tf.summary.histogram(tag, weight.value, step=step)
    tags.append(tag)
  if input_raw is not None:
    tf.summary.histogram("model/input_raw", input_raw, step=step)
    tags.append("model/input_raw")
  return tags
