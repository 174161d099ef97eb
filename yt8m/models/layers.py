"""Pieces shared by the models: input normalisation, frame masks, slim-style regularisation,
pooling, DBoF frame sampling and hyper-parameter checks.

Frame tensors are [B, T, D] with the real frames of row b in rows 0..num_frames[b]-1 and zero
padding after them (the readers' layout).
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

# tf.nn.l2_normalize's default, which the starter's train/eval/export graphs used.
L2_NORMALIZE_EPSILON = 1e-12

# slim.batch_norm defaults (Keras uses momentum 0.99).
SLIM_BN_MOMENTUM = 0.999
SLIM_BN_EPSILON = 0.001

POOLING_METHODS = ("max", "average")


def l2_normalize_frames(x: tf.Tensor) -> tf.Tensor:
  """L2-normalises the concatenated features of each frame (or each video).

  Args:
    x: [B, D] or [B, T, D] raw dequantized features.

  Returns:
    Same shape; every row over the last axis has unit norm, all-zero padding rows stay zero.
  """
  return tf.math.l2_normalize(x, axis=-1, epsilon=L2_NORMALIZE_EPSILON)


def clip_num_frames(num_frames: tf.Tensor | None, features: tf.Tensor) -> tf.Tensor:
  """Real-frame counts as int32 [B], clipped to [1, T].

  Args:
    num_frames: [B] (or [B, 1]) int, or None meaning every one of the T frames is real.
    features: [B, T, D].

  Returns:
    [B] int32. A count of 0 (the starter would divide by zero) becomes 1: the model then sees
    one all-zero frame instead of producing NaN.
  """
  shape = tf.shape(features)
  if num_frames is None:
    return tf.fill(shape[:1], shape[1])
  num_frames = tf.reshape(tf.cast(num_frames, tf.int32), [-1])
  return tf.clip_by_value(num_frames, 1, tf.maximum(shape[1], 1))


def frame_mask(num_frames: tf.Tensor, max_len: int | tf.Tensor) -> tf.Tensor:
  """True for real frames.

  Args:
    num_frames: [B] int, real frames per row.
    max_len: T.

  Returns:
    [B, T] bool, right-padded (row b is True on its first num_frames[b] entries).
  """
  return tf.sequence_mask(num_frames, max_len)


def masked_mean(frames: tf.Tensor, num_frames: tf.Tensor) -> tf.Tensor:
  """Mean over the real frames only.

  Args:
    frames: [B, T, D].
    num_frames: [B] int in [1, T].

  Returns:
    [B, D]: sum of the first num_frames[b] frames / num_frames[b]. Padding is masked out
    explicitly rather than trusted to be zero, so non-zero padding cannot leak in.
  """
  mask = tf.cast(frame_mask(num_frames, tf.shape(frames)[1]), frames.dtype)
  total = tf.reduce_sum(frames * mask[:, :, None], axis=1)
  return total / tf.cast(num_frames, frames.dtype)[:, None]


def frame_pooling(frames: tf.Tensor, method: str) -> tf.Tensor:
  """The starter's FramePooling over frames that are all real (DBoF's sampled frames).

  Args:
    frames: [B, N, C].
    method: 'max' or 'average'.

  Returns:
    [B, C].
  """
  if method == "max":
    return tf.reduce_max(frames, axis=1)
  if method == "average":
    return tf.reduce_mean(frames, axis=1)
  raise ValueError(f"unknown pooling method {method!r}; choose one of {POOLING_METHODS}")


def sample_random_frames(num_frames: tf.Tensor, n: int, seed=None) -> tf.Tensor:
  """The starter's SampleRandomFrames: n i.i.d. uniform frames per video, with replacement.

  Args:
    num_frames: [B] int32 in [1, T].
    n: frames to draw per video.
    seed: a keras.random.SeedGenerator (whose state a checkpoint can hold), or None.

  Returns:
    [B, n] int32 indices in [0, num_frames[b]); fresh on every call.
  """
  counts = tf.cast(num_frames, tf.float32)[:, None]
  idx = tf.cast(keras.random.uniform([tf.shape(num_frames)[0], n], seed=seed) * counts,
                tf.int32)
  # float32 rounding of u * count can in principle reach count itself.
  return tf.minimum(idx, num_frames[:, None] - 1)


def sample_random_sequence(num_frames: tf.Tensor, n: int, seed=None) -> tf.Tensor:
  """The starter's SampleRandomSequence: n consecutive frames from a random start.

  Args:
    num_frames: [B] int32 in [1, T].
    n: window length.
    seed: a keras.random.SeedGenerator, or None.

  Returns:
    [B, n] int32 indices start..start+n-1, where start is uniform over the valid starts;
    videos shorter than n repeat their last frame.
  """
  starts_available = tf.cast(tf.maximum(num_frames - n, 0) + 1, tf.float32)
  start = tf.cast(keras.random.uniform(tf.shape(num_frames), seed=seed) * starts_available,
                  tf.int32)
  start = tf.minimum(start, tf.maximum(num_frames - n, 0))
  idx = start[:, None] + tf.range(n, dtype=tf.int32)[None, :]
  return tf.minimum(idx, num_frames[:, None] - 1)


def evenly_spaced_frames(num_frames: tf.Tensor, n: int) -> tf.Tensor:
  """Deterministic replacement for DBoF's sampling at evaluation: floor(i * num_frames / n).

  Args:
    num_frames: [B] int32 in [1, T].
    n: frames per video.

  Returns:
    [B, n] int32 indices spread over each video's TRUE length (repeats when num_frames < n).
  """
  steps = tf.range(n, dtype=tf.int64)[None, :]
  # int64 keeps i * num_frames exact.
  return tf.cast(steps * tf.cast(num_frames, tf.int64)[:, None] // n, tf.int32)


def gather_frames(frames: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
  """Picks frames per video.

  Args:
    frames: [B, T, D].
    indices: [B, N] int32 in [0, T).

  Returns:
    [B, N, D].
  """
  return tf.gather(frames, indices, axis=1, batch_dims=1)


def slim_l2(scale: float) -> keras.regularizers.Regularizer | None:
  """Keras equivalent of slim.l2_regularizer(scale).

  slim adds scale * sum(w**2) / 2 (tf.nn.l2_loss) while Keras' L2(l) adds l * sum(w**2), hence
  the halving. Returns None for scale 0 so the model reports no zero-valued loss terms.
  """
  if scale == 0:
    return None
  return keras.regularizers.L2(scale / 2.0)


def check_int(name: str, value, minimum: int = 1) -> int:
  """Raises ValueError unless value is an int (not a bool) >= minimum."""
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return value


def check_bool(name: str, value) -> bool:
  """Raises ValueError unless value is a real bool (a string 'False' would be truthy)."""
  if not isinstance(value, bool):
    raise ValueError(f"{name} must be True or False, got {value!r}")
  return value


def check_choice(name: str, value, choices) -> str:
  """Raises ValueError unless value is one of choices."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
  return value


def check_penalty(name: str, value) -> float:
  """Raises ValueError unless value is a finite number >= 0."""
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  if not number or not 0 <= value < float("inf"):
    raise ValueError(f"{name} must be a number >= 0, got {value!r}")
  return float(value)


def check_rate(name: str, value) -> float:
  """Raises ValueError unless value is a number in [0, 1)."""
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  if not number or not 0 <= value < 1:
    raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
  return float(value)


# How a field is checked when it does not name its own check (`from __future__ import
# annotations` makes field.type the annotation's text).
_CHECKS_BY_TYPE = {"int": check_int, "bool": check_bool, "float": check_penalty}


@dataclasses.dataclass(frozen=True)
class Hparams:
  """Base of a model's hyper-parameters: one frozen dataclass per model, the one place that
  names them, gives their defaults and checks them. An int field must be >= 1, a bool a real
  bool, a float a finite number >= 0, unless the field names its own check (see choice, rate).

  Raises:
    ValueError: a value that fails its check (the message names the field).
  """

  def __post_init__(self):
    for field in dataclasses.fields(self):
      check = field.metadata.get("check") or _CHECKS_BY_TYPE[field.type]
      object.__setattr__(self, field.name, check(field.name, getattr(self, field.name)))


def choice(default: str, choices: tuple[str, ...]):
  """A field whose value must be one of choices."""
  return dataclasses.field(default=default, metadata={
      "check": lambda name, value: check_choice(name, value, tuple(choices))})


def rate(default: float):
  """A field whose value must be a number in [0, 1)."""
  return dataclasses.field(default=default, metadata={"check": check_rate})


def make_hparams(cls: type, model: str, values: dict) -> Hparams:
  """cls(**values), with one line naming the keys `model` does not take."""
  known = [field.name for field in dataclasses.fields(cls)]
  unknown = sorted(set(values) - set(known))
  if unknown:
    raise ValueError(f"{model} does not take hyper-parameter(s) {', '.join(unknown)}; it takes "
                     f"{', '.join(known)}")
  return cls(**values)


class HparamsModel(keras.Model):
  """A model built from num_classes and its `Hparams` (self.hparams): get_config() and
  from_config() round-trip exactly those."""

  Hparams: type[Hparams] = Hparams

  def __init__(self, num_classes: int, hparams: Hparams | None = None, **kwargs):
    super().__init__(**kwargs)
    self.num_classes = check_int("num_classes", num_classes)
    hparams = self.Hparams() if hparams is None else hparams
    if type(hparams) is not self.Hparams:
      raise TypeError(f"{type(self).__name__} takes {self.Hparams.__name__}, got "
                      f"{type(hparams).__name__}")
    self.hparams = hparams

  def get_config(self):
    config = super().get_config()
    config.update(num_classes=self.num_classes, hparams=dataclasses.asdict(self.hparams))
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["hparams"] = make_hparams(cls.Hparams, cls.__name__, config.get("hparams", {}))
    return cls(**config)
