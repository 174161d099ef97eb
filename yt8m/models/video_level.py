"""Video-level models (the starter's video_level_models.py): one vector per video in.

Both models L2-normalise their input first (the starter did that in the train/eval graph), so
serving feeds raw features. As the classifier head of a frame-level model they are built with
normalize_input=False: the starter fed DBoF's hidden layer and the LSTM state to the head
unnormalised.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from yt8m.models import layers


@dataclasses.dataclass(frozen=True)
class LogisticHparams(layers.Hparams):
  l2_penalty: float = 1e-8
  normalize_input: bool = True


@keras.saving.register_keras_serializable(package="yt8m")
class LogisticModel(layers.HparamsModel):
  """sigmoid(W x + b): slim.fully_connected with a Glorot-uniform kernel, zero bias and a
  slim L2 penalty on the kernel.

  Hyper-parameters (LogisticHparams):
    l2_penalty: slim.l2_regularizer scale on the kernel (adds l2_penalty * sum(W**2) / 2).
    normalize_input: L2-normalise the input first (False only as another model's head).
  """

  Hparams = LogisticHparams

  def __init__(self, num_classes: int, hparams: LogisticHparams | None = None, **kwargs):
    super().__init__(num_classes, hparams, **kwargs)
    self.logistic = keras.layers.Dense(
        num_classes, kernel_initializer="glorot_uniform", bias_initializer="zeros",
        kernel_regularizer=layers.slim_l2(self.hparams.l2_penalty), name="logistic")

  def build(self, features_shape):
    self.logistic.build(features_shape)

  def call(self, features, num_frames=None, training=False):
    """Args:
      features: [B, D] float32 raw video features.
      num_frames: ignored (video-level).
      training: unused (no train-time behaviour).

    Returns:
      {"predictions": [B, C] sigmoid probabilities, "logits": [B, C],
       "representation": [B, D] the (normalised) input}.
    """
    del num_frames, training
    x = layers.l2_normalize_frames(features) if self.hparams.normalize_input else features
    # float32 probabilities even under a mixed-precision policy: bfloat16 would tie many
    # scores and blur the ranking metrics.
    logits = tf.cast(self.logistic(x), tf.float32)
    return {"predictions": tf.sigmoid(logits), "logits": logits, "representation": x}


@dataclasses.dataclass(frozen=True)
class MoeHparams(layers.Hparams):
  moe_num_mixtures: int = 2
  l2_penalty: float = 1e-8
  normalize_input: bool = True


@keras.saving.register_keras_serializable(package="yt8m")
class MoeModel(layers.HparamsModel):
  """Mixture of logistic experts per class, with a dummy expert that always predicts 0.

  For every (example, class) pair: gates = softmax over m+1 entries, experts = m sigmoids, and
  p = sum_{i<m} gate_i * expert_i. The gate projection has no bias; both projections carry a
  slim L2 penalty on their kernel. The flat gate vector of an example holds, for each class
  in turn, its m+1 consecutive gate logits (the starter's reshape to [B*C, m+1]).

  Hyper-parameters (MoeHparams):
    moe_num_mixtures: m, experts per class excluding the dummy one.
    l2_penalty: slim.l2_regularizer scale on both kernels.
    normalize_input: L2-normalise the input first (False only as another model's head).
  """

  Hparams = MoeHparams

  def __init__(self, num_classes: int, hparams: MoeHparams | None = None, **kwargs):
    super().__init__(num_classes, hparams, **kwargs)
    m = self.hparams.moe_num_mixtures
    penalty = layers.slim_l2(self.hparams.l2_penalty)
    self.gates = keras.layers.Dense(
        num_classes * (m + 1), use_bias=False, kernel_initializer="glorot_uniform",
        kernel_regularizer=penalty, name="gates")
    self.experts = keras.layers.Dense(
        num_classes * m, kernel_initializer="glorot_uniform", bias_initializer="zeros",
        kernel_regularizer=penalty, name="experts")

  def build(self, features_shape):
    self.gates.build(features_shape)
    self.experts.build(features_shape)

  def call(self, features, num_frames=None, training=False):
    """Args:
      features: [B, D] float32 raw video features (or a head's input representation).
      num_frames: ignored (video-level).
      training: unused.

    Returns:
      {"predictions": [B, C] probabilities, "representation": [B, D] the (normalised) input}.
    """
    del num_frames, training
    x = layers.l2_normalize_frames(features) if self.hparams.normalize_input else features
    m = self.hparams.moe_num_mixtures
    # Mixing in float32 even under a mixed-precision policy (see LogisticModel).
    gates = tf.nn.softmax(tf.reshape(tf.cast(self.gates(x), tf.float32), [-1, m + 1]))
    experts = tf.sigmoid(tf.reshape(tf.cast(self.experts(x), tf.float32), [-1, m]))
    # The last gate belongs to the dummy expert, whose prediction is 0.
    probabilities = tf.reduce_sum(gates[:, :m] * experts, axis=1)
    return {"predictions": tf.reshape(probabilities, [-1, self.num_classes]),
            "representation": x}


CLASSIFIERS = {"LogisticModel": LogisticModel, "MoeModel": MoeModel}


@dataclasses.dataclass(frozen=True)
class ClassifierHparams(layers.Hparams):
  """The video-level head's hyper-parameters, shared by every frame-level model with a head."""
  video_level_classifier_model: str = layers.choice("MoeModel", tuple(CLASSIFIERS))
  moe_num_mixtures: int = 2
  l2_penalty: float = 1e-8


def build_classifier(hparams: ClassifierHparams, num_classes: int, **kwargs) -> keras.Model:
  """The head of a frame-level model, chosen by hparams.video_level_classifier_model.

  Args:
    hparams: the frame-level model's hyper-parameters (only the head's fields are read).
    num_classes: C.
    **kwargs: Keras layer arguments such as name.

  Returns:
    A video-level model that does not re-normalise its input.
  """
  if hparams.video_level_classifier_model == "MoeModel":
    head = MoeHparams(hparams.moe_num_mixtures, hparams.l2_penalty, normalize_input=False)
    return MoeModel(num_classes, head, **kwargs)
  return LogisticModel(num_classes, LogisticHparams(hparams.l2_penalty, normalize_input=False),
                       **kwargs)
