"""Frame-level models (the starter's frame_level_models.py): [B, T, D] frames in.

Every model L2-normalises each frame, then uses only each video's first num_frames[b] frames:
padded frames never change a result, whatever T is (300 for a teacher, k for a student).
"""

from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf

from yt8m.models import layers, video_level

DBOF_ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu6": tf.nn.relu6}


def _slim_batch_norm(name: str) -> keras.layers.BatchNormalization:
  # slim.batch_norm(center=True, scale=True) as DBoF calls it, with slim's decay and epsilon.
  return keras.layers.BatchNormalization(
      momentum=layers.SLIM_BN_MOMENTUM, epsilon=layers.SLIM_BN_EPSILON, center=True, scale=True,
      name=name)


@dataclasses.dataclass(frozen=True)
class FrameLevelLogisticHparams(layers.Hparams):
  l2_penalty: float = 1e-8


@keras.saving.register_keras_serializable(package="yt8m")
class FrameLevelLogisticModel(layers.HparamsModel):
  """Logistic regression on the mean of the real frames.

  Hyper-parameters (FrameLevelLogisticHparams):
    l2_penalty: slim.l2_regularizer scale on the kernel.
  """

  Hparams = FrameLevelLogisticHparams

  def __init__(self, num_classes: int, hparams: FrameLevelLogisticHparams | None = None,
               **kwargs):
    super().__init__(num_classes, hparams, **kwargs)
    self.logistic = keras.layers.Dense(
        num_classes, kernel_initializer="glorot_uniform", bias_initializer="zeros",
        kernel_regularizer=layers.slim_l2(self.hparams.l2_penalty), name="logistic")

  def build(self, features_shape):
    self.logistic.build((features_shape[0], features_shape[-1]))

  def call(self, features, num_frames=None, training=False):
    """Args:
      features: [B, T, D] float32 raw frames, zero after each video's num_frames.
      num_frames: [B] int32 real frames per video (None: all T).
      training: unused.

    Returns:
      {"predictions": [B, C], "logits": [B, C], "representation": [B, D] the mean frame}.
    """
    del training
    frames = layers.l2_normalize_frames(features)
    mean = layers.masked_mean(frames, layers.clip_num_frames(num_frames, frames))
    logits = tf.cast(self.logistic(mean), tf.float32)  # float32 output, as LogisticModel
    return {"predictions": tf.sigmoid(logits), "logits": logits, "representation": mean}


@dataclasses.dataclass(frozen=True)
class DbofHparams(video_level.ClassifierHparams):
  iterations: int = 30
  sample_random_frames: bool = True
  dbof_add_batch_norm: bool = True
  dbof_cluster_size: int = 8192
  dbof_hidden_size: int = 1024
  dbof_pooling_method: str = layers.choice("max", layers.POOLING_METHODS)
  dbof_activation: str = layers.choice("sigmoid", tuple(DBOF_ACTIVATIONS))


@keras.saving.register_keras_serializable(package="yt8m")
class DbofModel(layers.HparamsModel):
  """Deep Bag of Frames: sample frames, project each to a wide 'cluster' layer, pool over the
  frames, project to a hidden layer, classify with a video-level model.

  Sampling: when training, `iterations` frames per video, i.i.d. uniform with replacement
  (sample_random_frames=True, the starter's SampleRandomFrames) or a random contiguous window
  (False, SampleRandomSequence). At evaluation (training=False) the frames are DETERMINISTIC:
  floor(i * num_frames / iterations) for i < iterations. This is a deliberate fix: the starter
  sampled randomly at eval and inference too, so scores depended on the random seed.

  Initialisers are the starter's: cluster weights [D, cluster] N(0, 1/sqrt(D)), hidden weights
  [cluster, hidden] N(0, 1/sqrt(cluster)); without batch norm, biases N(0, 1/sqrt(D)) and
  N(0, 0.01). Batch norms use slim's momentum 0.999 and epsilon 0.001. Only the classifier's
  kernels carry an L2 penalty.

  Hyper-parameters (DbofHparams):
    iterations: frames sampled per video.
    sample_random_frames: i.i.d. frames (True) or a contiguous window (False) when training.
    dbof_add_batch_norm: batch norm on the input, cluster and hidden layers (else biases).
    dbof_cluster_size: width of the cluster layer.
    dbof_hidden_size: width of the hidden layer (the representation).
    dbof_pooling_method: 'max' or 'average' over the sampled frames.
    dbof_activation: 'sigmoid' or 'relu6'.
    video_level_classifier_model: 'MoeModel' or 'LogisticModel'.
    moe_num_mixtures: experts of the MoE classifier.
    l2_penalty: L2 scale of the classifier.
  """

  Hparams = DbofHparams

  def __init__(self, num_classes: int, hparams: DbofHparams | None = None, **kwargs):
    super().__init__(num_classes, hparams, **kwargs)
    # Its state is saved with the training checkpoint, so a resumed run draws what the
    # uninterrupted one would have.
    self.frame_sampling = keras.random.SeedGenerator(name="frame_sampling")
    self.classifier = video_level.build_classifier(self.hparams, num_classes, name="classifier")

  def build(self, features_shape):
    feature_size = features_shape[-1]
    if feature_size is None:
      raise ValueError("DbofModel needs a static feature dimension")
    bn = self.hparams.dbof_add_batch_norm
    # The cluster initialisers depend on D, so these layers are created here, not in __init__.
    normal = keras.initializers.RandomNormal
    input_std = 1 / math.sqrt(feature_size)
    self.input_bn = _slim_batch_norm("input_bn") if bn else None
    self.cluster = keras.layers.Dense(
        self.hparams.dbof_cluster_size, use_bias=not bn, kernel_initializer=normal(stddev=input_std),
        bias_initializer=normal(stddev=input_std), name="cluster")
    self.cluster_bn = _slim_batch_norm("cluster_bn") if bn else None
    self.hidden = keras.layers.Dense(
        self.hparams.dbof_hidden_size, use_bias=not bn,
        kernel_initializer=normal(stddev=1 / math.sqrt(self.hparams.dbof_cluster_size)),
        bias_initializer=normal(stddev=0.01), name="hidden1")
    self.hidden_bn = _slim_batch_norm("hidden1_bn") if bn else None

    frame_shape = (None, self.hparams.iterations, feature_size)
    if bn:
      self.input_bn.build(frame_shape)
      self.cluster_bn.build((None, self.hparams.iterations, self.hparams.dbof_cluster_size))
      self.hidden_bn.build((None, self.hparams.dbof_hidden_size))
    self.cluster.build(frame_shape)
    self.hidden.build((None, self.hparams.dbof_cluster_size))
    self.classifier.build((None, self.hparams.dbof_hidden_size))

  def sample_indices(self, num_frames: tf.Tensor, training: bool) -> tf.Tensor:
    """Which frames DBoF looks at.

    Args:
      num_frames: [B] int32 in [1, T].
      training: random sampling if True, evenly spaced frames otherwise.

    Returns:
      [B, iterations] int32 indices of real frames.
    """
    if not training:
      return layers.evenly_spaced_frames(num_frames, self.hparams.iterations)
    if self.hparams.sample_random_frames:
      return layers.sample_random_frames(num_frames, self.hparams.iterations, self.frame_sampling)
    return layers.sample_random_sequence(num_frames, self.hparams.iterations, self.frame_sampling)

  def call(self, features, num_frames=None, training=False):
    """Args:
      features: [B, T, D] float32 raw frames, zero after each video's num_frames.
      num_frames: [B] int32 real frames per video (None: all T).
      training: random frame sampling and batch statistics if True.

    Returns:
      {"predictions": [B, C], "representation": [B, dbof_hidden_size] hidden activation}.
    """
    frames = layers.l2_normalize_frames(features)
    indices = self.sample_indices(layers.clip_num_frames(num_frames, frames), training)
    # [B, iterations, D]; Dense and BatchNormalization act per frame, so no reshape to
    # [B*iterations, D] is needed (BN statistics still run over all sampled frames).
    x = layers.gather_frames(frames, indices)
    activation = DBOF_ACTIVATIONS[self.hparams.dbof_activation]
    if self.input_bn is not None:
      x = self.input_bn(x, training=training)
    x = self.cluster(x)
    if self.cluster_bn is not None:
      x = self.cluster_bn(x, training=training)
    x = layers.frame_pooling(activation(x), self.hparams.dbof_pooling_method)
    x = self.hidden(x)
    if self.hidden_bn is not None:
      x = self.hidden_bn(x, training=training)
    hidden = activation(x)
    output = self.classifier(hidden, training=training)
    return {"predictions": output["predictions"], "representation": hidden}



@dataclasses.dataclass(frozen=True)
class LstmHparams(video_level.ClassifierHparams):
  lstm_cells: int = 1024
  lstm_layers: int = 2


@keras.saving.register_keras_serializable(package="yt8m")
class LstmModel(layers.HparamsModel):
  """Stacked LSTMs over the real frames; the top layer's final h feeds a video-level model.

  Each layer is keras.layers.LSTM(lstm_cells, unit_forget_bias=True) with default activations
  and no dropout, fed the right-padded mask of num_frames: the state stops at each video's last
  real frame, and on GPUs the fused cuDNN kernel stays eligible.

  Parity note: the starter's BasicLSTMCell(forget_bias=1.0) adds a constant 1.0 to the forget
  gate at every step (its bias starts at 0), whereas Keras initialises the forget-gate bias to
  1 and trains it. The initial function is the same; training differs slightly. Gate order also
  differs (TF1 i, j, f, o; Keras i, f, c, o), which matters only when converting checkpoints.

  Hyper-parameters (LstmHparams):
    lstm_cells: units per layer (the representation size).
    lstm_layers: stacked layers.
    video_level_classifier_model: 'MoeModel' or 'LogisticModel'.
    moe_num_mixtures: experts of the MoE classifier.
    l2_penalty: L2 scale of the classifier (the LSTMs are unregularised, as in the starter).
  """

  Hparams = LstmHparams

  def __init__(self, num_classes: int, hparams: LstmHparams | None = None, **kwargs):
    super().__init__(num_classes, hparams, **kwargs)
    lstm_cells, lstm_layers = self.hparams.lstm_cells, self.hparams.lstm_layers
    # Lower layers hand their whole sequence up; the top one returns its last real-frame h.
    # One attribute per layer: tf.train.Checkpoint does not see into a Python list held by
    # a Keras 3 layer, so a list would leave the LSTM weights out of every checkpoint.
    for i in range(lstm_layers):
      setattr(self, f"lstm_{i}", keras.layers.LSTM(
          lstm_cells, unit_forget_bias=True, return_sequences=i < lstm_layers - 1,
          name=f"lstm_{i}"))
    self.classifier = video_level.build_classifier(self.hparams, num_classes, name="classifier")

  @property
  def lstms(self) -> list:
    return [getattr(self, f"lstm_{i}") for i in range(self.hparams.lstm_layers)]

  def build(self, features_shape):
    shape = tuple(features_shape)
    for lstm in self.lstms:
      lstm.build(shape)
      shape = shape[:-1] + (self.hparams.lstm_cells,)
    self.classifier.build((None, self.hparams.lstm_cells))

  def call(self, features, num_frames=None, training=False):
    """Args:
      features: [B, T, D] float32 raw frames, zero after each video's num_frames.
      num_frames: [B] int32 real frames per video (None: all T).
      training: passed on (no train-time behaviour with the default settings).

    Returns:
      {"predictions": [B, C], "representation": [B, lstm_cells] top-layer h at the last real
       frame}.
    """
    x = layers.l2_normalize_frames(features)
    mask = None
    if num_frames is not None:
      mask = layers.frame_mask(layers.clip_num_frames(num_frames, x), tf.shape(x)[1])
    for lstm in self.lstms:
      x = lstm(x, mask=mask, training=training)
    output = self.classifier(x, training=training)
    return {"predictions": output["predictions"], "representation": x}

