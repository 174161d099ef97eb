"""The teacher families of Bhardwaj et al. (CVPR'19): hierarchical LSTM, gated NetVLAD and
NeXtVLAD. Each is an ordinary frame-level model ([B, T, D] frames in), so the same class is a
teacher on all 300 frames and a student on k of them.

Every model L2-normalises each frame, then uses only each video's first num_frames[b] frames:
padded frames are zeroed, masked out of every LSTM step, cluster assignment and batch-norm
statistic, so they never change a result whatever T is.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf

from yt8m.models import layers, video_level


def _slim_batch_norm(name: str, momentum: float = layers.SLIM_BN_MOMENTUM,
                     **kwargs) -> keras.layers.BatchNormalization:
  # slim.batch_norm(center=True, scale=True) as WILLOW and NeXtVLAD call it, with slim's decay
  # and epsilon by default (frame_level.py builds DBoF's the same way).
  return keras.layers.BatchNormalization(
      momentum=momentum, epsilon=layers.SLIM_BN_EPSILON, center=True, scale=True,
      name=name, **kwargs)


def _bn_momentum(name: str, value) -> float:
  value = layers.check_penalty(name, value)
  if value >= 1:
    raise ValueError(f"{name} must be in [0, 1), got {value!r}")
  return value


# slim's decay 0.999 moves a batch norm's evaluation statistics 12% of the way from their
# initial values in 128 steps: fine for the starter's millions of steps, useless for a short
# run, whose evaluation then sees the wrong statistics (a study's VLAD teacher scored chance).
def bn_momentum_field():
  return dataclasses.field(default=layers.SLIM_BN_MOMENTUM, metadata={"check": _bn_momentum})


def _real_frames(features: tf.Tensor, num_frames) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """L2-normalised frames with the padding zeroed, their counts and their mask.

  Args:
    features: [B, T, D] raw frames; rows after num_frames[b] may hold anything finite.
    num_frames: [B] int real frames per video, or None (all T).

  Returns:
    frames [B, T, D] (padding exactly 0), num_frames [B] int32 in [1, T], mask [B, T] bool.
  """
  frames = layers.l2_normalize_frames(features)
  num_frames = layers.clip_num_frames(num_frames, frames)
  mask = layers.frame_mask(num_frames, tf.shape(frames)[1])
  return tf.where(mask[:, :, None], frames, tf.zeros_like(frames)), num_frames, mask


def _split_features(frames: tf.Tensor, rgb_size: int, has_audio: bool):
  """[B, T, D] -> rgb [B, T, rgb_size] and audio [B, T, D - rgb_size] (None without audio)."""
  return frames[:, :, :rgb_size], (frames[:, :, rgb_size:] if has_audio else None)


def _feature_size(features_shape, model: str, rgb_size: int | None = None) -> int:
  feature_size = features_shape[-1]
  if feature_size is None:
    raise ValueError(f"{model} needs a static feature dimension")
  if rgb_size is not None and feature_size < rgb_size:
    raise ValueError(f"{model}: rgb_size {rgb_size} exceeds the feature dimension "
                     f"{feature_size}")
  return feature_size


# ------------------------------------------------------------------------- hierarchical LSTM


def _gated_scores(model: keras.layers.Layer, items: tf.Tensor) -> tf.Tensor:
  """Gated attention scores w . (tanh(V x) * sigmoid(U x)) of [B, N, F] items -> float32 [B, N, H].

  `model` owns the three Dense layers scorer_tanh, scorer_gate and scorer_out (H outputs)."""
  hidden = model.scorer_tanh(items) * model.scorer_gate(items)
  return tf.cast(model.scorer_out(hidden), tf.float32)


def _masked_softmax(scores: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """Softmax of [B, N, H] scores over the N items where [B, N] mask is True; 0 elsewhere."""
  scores = tf.where(mask[:, :, None], scores, tf.fill(tf.shape(scores), -1e9))
  return tf.nn.softmax(scores, axis=1) * tf.cast(mask, tf.float32)[:, :, None]


@dataclasses.dataclass(frozen=True)
class HierarchicalLstmHparams(video_level.ClassifierHparams):
  lstm_cells: int = 1024
  lstm_layers: int = 2
  hrnn_block_frames: int = 15
  hrnn_pooling: str = layers.choice("final", ("final", "attention"))
  attention_scorer_size: int = 128
  hrnn_drop_rate: float = layers.rate(0.0)


STUDENT_BLOCKS = 5  # the authors' student hard-codes 5 lower-level blocks


def student_block_frames(k: int) -> int:
  """hrnn_block_frames of a k-frame H-RNN student as the authors built it: 5 blocks of
  k // 5 frames (k = 30 -> 6), so its lower stack runs the blocks side by side."""
  return max(1, k // STUDENT_BLOCKS)


@keras.saving.register_keras_serializable(package="yt8m")
class HierarchicalLstmModel(layers.HparamsModel):
  """H-RNN (the paper's teacher): a lower LSTM stack encodes blocks of frames, an upper one the
  sequence of blocks.

  The T frames are cut into b = ceil(T / hrnn_block_frames) blocks of l = hrnn_block_frames
  (the last one zero-padded). The lower stack (weights shared by all blocks) runs over each
  block's real frames; the block encoding is its final state of every layer, [c1, h1, c2, h2]
  as the authors' MultiRNNCell(state_is_tuple=False) gives, and is all zero for a block without
  real frames. The upper stack runs over the ceil(num_frames / l) real blocks, and its final
  state [c1, h1, c2, h2] is the video representation E fed to the classifier.

  The authors' teacher has l = 15 (20 blocks of 300 frames); their student hard-codes 5 blocks
  (k = 30 -> l = 6). Here the block count follows from T, so any T and l work (k = 6 with
  l = 15 is one block).

  Every LSTM is keras.layers.LSTM(lstm_cells, unit_forget_bias=True) with default activations,
  no dropout and right-padded masks, so the fused cuDNN kernel stays eligible on GPUs. Blocks
  without a real frame are given their (zeroed) first frame rather than an empty mask (cuDNN
  rejects zero-length sequences), and their encoding is then set to zero explicitly. See
  LstmModel for the parity notes on forget bias and gate order.

  Hyper-parameters (HierarchicalLstmHparams):
    lstm_cells: units per LSTM layer, in both stacks.
    lstm_layers: layers per stack; E has 2 * lstm_layers * lstm_cells entries.
    hrnn_block_frames: l, frames per block.
    hrnn_pooling: 'final' (the paper's E, the upper stack's final state) or 'attention'.
    attention_scorer_size: width of the gated block scorer (hrnn_pooling='attention').
    hrnn_drop_rate: dropout on E before the classifier, when training only.
    video_level_classifier_model: 'MoeModel' or 'LogisticModel'.
    moe_num_mixtures: experts of the MoE classifier.
    l2_penalty: L2 scale of the classifier (the LSTMs are unregularised, as the authors').
  """

  Hparams = HierarchicalLstmHparams

  def __init__(self, num_classes: int, hparams: HierarchicalLstmHparams | None = None,
               **kwargs):
    super().__init__(num_classes, hparams, **kwargs)
    lstm_cells, lstm_layers = self.hparams.lstm_cells, self.hparams.lstm_layers
    # One attribute per layer: tf.train.Checkpoint does not see into a Python list held by a
    # Keras 3 layer. Every layer returns its final state; lower layers also their sequence.
    attend = self.hparams.hrnn_pooling == "attention"
    for stack in ("lower", "upper"):
      for i in range(lstm_layers):
        setattr(self, f"{stack}_lstm_{i}", keras.layers.LSTM(
            lstm_cells, unit_forget_bias=True,
            return_sequences=i < lstm_layers - 1 or (attend and stack == "upper"),
            return_state=True, name=f"{stack}_lstm_{i}"))
    if attend:
      scorer_size = self.hparams.attention_scorer_size
      self.scorer_tanh = keras.layers.Dense(scorer_size, activation="tanh", name="scorer_tanh")
      self.scorer_gate = keras.layers.Dense(scorer_size, activation="sigmoid",
                                            name="scorer_gate")
      self.scorer_out = keras.layers.Dense(1, name="scorer_out")
    self.dropout = keras.layers.Dropout(self.hparams.hrnn_drop_rate, name="video_dropout")
    self.classifier = video_level.build_classifier(self.hparams, num_classes, name="classifier")

  @property
  def lower_lstms(self) -> list:
    return [getattr(self, f"lower_lstm_{i}") for i in range(self.hparams.lstm_layers)]

  @property
  def upper_lstms(self) -> list:
    return [getattr(self, f"upper_lstm_{i}") for i in range(self.hparams.lstm_layers)]

  @property
  def state_size(self) -> int:
    """Size of a block encoding and of E: [c, h] of every layer."""
    return 2 * self.hparams.lstm_layers * self.hparams.lstm_cells

  @property
  def representation_size(self) -> int:
    """Size of E: the final state, or a pooled [top-layer output, block encoding]."""
    if self.hparams.hrnn_pooling == "attention":
      return self.hparams.lstm_cells + self.state_size
    return self.state_size

  def build(self, features_shape):
    feature_size = _feature_size(features_shape, "HierarchicalLstmModel")
    for stack, shape in ((self.lower_lstms, (None, self.hparams.hrnn_block_frames, feature_size)),
                         (self.upper_lstms, (None, None, self.state_size))):
      for lstm in stack:
        lstm.build(shape)
        shape = shape[:-1] + (self.hparams.lstm_cells,)
    if self.hparams.hrnn_pooling == "attention":
      self.scorer_tanh.build((None, None, self.representation_size))
      self.scorer_gate.build((None, None, self.representation_size))
      self.scorer_out.build((None, None, self.hparams.attention_scorer_size))
    self.classifier.build((None, self.representation_size))

  def run_stack(self, lstms: list, x: tf.Tensor, mask: tf.Tensor | None,
                training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Runs one stack and returns its final state and its top layer's output.

    Args:
      lstms: lower_lstms or upper_lstms.
      x: [N, S, F] sequences.
      mask: [N, S] right-padded bool with at least one True per row, or None (all real).
      training: passed on.

    Returns:
      [N, state_size]: [c, h] of every layer, bottom layer first; and the top layer's output,
      [N, S, lstm_cells] if it returns sequences, else [N, lstm_cells].
    """
    states = []
    for lstm in lstms:
      x, h, c = lstm(x, mask=mask, training=training)
      states += [c, h]
    return tf.concat(states, axis=-1), x

  def attention_pool(self, blocks: tf.Tensor, block_mask: tf.Tensor
                     ) -> tuple[tf.Tensor, tf.Tensor]:
    """[B, b, F] blocks, [B, b] bool real -> pooled [B, F], weights [B, b] (0 on empty)."""
    weights = _masked_softmax(_gated_scores(self, blocks), block_mask)[:, :, 0]
    return tf.einsum("bn,bnf->bf", tf.cast(weights, blocks.dtype), blocks), weights

  def call(self, features, num_frames=None, training=False):
    """Args:
      features: [B, T, D] float32 raw frames, zero after each video's num_frames.
      num_frames: [B] int32 real frames per video (None: all T).
      training: passed on (dropout with hrnn_drop_rate > 0).

    Returns:
      {"predictions": [B, C],
       "representation": [B, representation_size] E, the upper stack's final [c1, h1, c2, h2]
         (or the attention-pooled blocks),
       "intermediates": [B, b, state_size] block encodings (zero for empty blocks),
       "intermediate_mask": [B, b] float32, 1 for blocks with at least one real frame,
       and with hrnn_pooling='attention' "frame_weights": [B, T] float32, summing to 1 over
       the real frames}.
    """
    frames, num_frames, _ = _real_frames(features, num_frames)
    l = self.hparams.hrnn_block_frames  # noqa: E741 (the paper's l)
    batch, length = tf.shape(frames)[0], tf.shape(frames)[1]
    num_blocks = (length + l - 1) // l
    frames = tf.pad(frames, [[0, 0], [0, num_blocks * l - length], [0, 0]])
    blocks = tf.reshape(frames, [-1, l, frames.shape[-1]])  # (B*b, l, D)
    # Block i of video v holds frames i*l .. i*l+l-1, real while < num_frames[v]. Step 0 is
    # always "real" so that no sequence is empty; empty blocks are zeroed below.
    frame_mask = tf.reshape(layers.frame_mask(num_frames, num_blocks * l), [-1, l])
    frame_mask = tf.logical_or(frame_mask, tf.range(l)[None, :] == 0)
    encodings, _ = self.run_stack(self.lower_lstms, blocks, frame_mask, training)
    encodings = tf.reshape(encodings, [batch, num_blocks, self.state_size])  # (B, b, E)
    block_mask = layers.frame_mask((num_frames + l - 1) // l, num_blocks)  # (B, b)
    encodings = tf.where(block_mask[:, :, None], encodings, tf.zeros_like(encodings))
    video, top = self.run_stack(self.upper_lstms, encodings, block_mask, training)
    extra = {}
    if self.hparams.hrnn_pooling == "attention":
      video, weights = self.attention_pool(tf.concat([top, encodings], axis=-1), block_mask)
      # Each block's weight spread over its real frames: a distribution over frames.
      real_in_block = tf.clip_by_value(num_frames[:, None] - tf.range(num_blocks)[None] * l, 0, l)
      per_frame = weights / tf.cast(tf.maximum(real_in_block, 1), tf.float32)
      extra["frame_weights"] = tf.repeat(per_frame, l, axis=1)[:, :length] * tf.cast(
          layers.frame_mask(num_frames, length), tf.float32)
    output = self.classifier(self.dropout(video, training=training), training=training)
    return {"predictions": output["predictions"], "representation": video,
            "intermediates": encodings, "intermediate_mask": tf.cast(block_mask, tf.float32),
            **extra}



# ----------------------------------------------------------------------------------- NetVLAD


@keras.saving.register_keras_serializable(package="yt8m")
class NetVlad(keras.layers.Layer):
  """NetVLAD pooling of one feature stream (WILLOW's NetVLAD class), masked.

  a = softmax(BN(x W)) soft-assigns every frame to K clusters (padded frames get a = 0);
  V[d, k] = sum_t a_tk (x_td - c_dk); each cluster's residual is L2-normalised over d
  (intra-normalisation), then the flattened d-major [D * K] vector as a whole. Initialisers
  are WILLOW's: W and c ~ N(0, 1/sqrt(D)) (and the bias, without batch norm).

  Args:
    cluster_size: K.
    add_batch_norm: batch norm on the assignment logits (else a bias).
  """

  def __init__(self, cluster_size: int, add_batch_norm: bool = True,
               bn_momentum: float = layers.SLIM_BN_MOMENTUM, **kwargs):
    super().__init__(**kwargs)
    self.cluster_size = layers.check_int("cluster_size", cluster_size)
    self.add_batch_norm = layers.check_bool("add_batch_norm", add_batch_norm)
    self.bn_momentum = _bn_momentum("bn_momentum", bn_momentum)

  def build(self, input_shape):
    feature_size = _feature_size(input_shape, "NetVlad")
    normal = keras.initializers.RandomNormal(stddev=1 / math.sqrt(feature_size))
    self.assignment = keras.layers.Dense(
        self.cluster_size, use_bias=not self.add_batch_norm, kernel_initializer=normal,
        bias_initializer=normal, name="cluster")
    self.assignment.build(input_shape)
    self.assignment_bn = None
    if self.add_batch_norm:
      self.assignment_bn = _slim_batch_norm("cluster_bn", self.bn_momentum)
      self.assignment_bn.build(tuple(input_shape[:-1]) + (self.cluster_size,))
    self.centers = self.add_weight(shape=(feature_size, self.cluster_size), initializer=normal,
                                   name="centers")

  def compute_output_shape(self, input_shape):
    return (input_shape[0], input_shape[-1] * self.cluster_size)

  def call(self, frames, mask, training=False):
    """Args:
      frames: [B, T, D] with padding zeroed.
      mask: [B, T] bool, True for real frames.
      training: batch statistics (over the real frames only) if True.

    Returns:
      [B, D * K] unit-norm VLAD vector.
    """
    logits = self.assignment(frames)
    if self.assignment_bn is not None:
      logits = self.assignment_bn(logits, training=training, mask=mask)
    assignment = tf.nn.softmax(logits) * tf.cast(mask, logits.dtype)[:, :, None]  # (B, T, K)
    centers = tf.cast(self.centers, frames.dtype)
    vlad = (tf.einsum("btk,btd->bdk", assignment, frames) -
            tf.reduce_sum(assignment, axis=1)[:, None, :] * centers[None])  # (B, D, K)
    vlad = tf.math.l2_normalize(vlad, axis=1, epsilon=layers.L2_NORMALIZE_EPSILON)
    vlad = tf.reshape(vlad, [-1, vlad.shape[1] * self.cluster_size])
    return tf.math.l2_normalize(vlad, axis=1, epsilon=layers.L2_NORMALIZE_EPSILON)

  def get_config(self):
    config = super().get_config()
    config.update(cluster_size=self.cluster_size, add_batch_norm=self.add_batch_norm,
                  bn_momentum=self.bn_momentum)
    return config


@dataclasses.dataclass(frozen=True)
class NetVladHparams(video_level.ClassifierHparams):
  rgb_size: int = 1024
  netvlad_cluster_size: int = 256
  netvlad_hidden_size: int = 1024
  netvlad_add_batch_norm: bool = True
  netvlad_relu: bool = False
  gating: bool = True
  moe_prob_gating: bool = True
  bn_momentum: float = bn_momentum_field()


@keras.saving.register_keras_serializable(package="yt8m")
class NetVladModel(layers.HparamsModel):
  """WILLOW's gated NetVLAD (NetVLADModelLF, 1st of Kaggle 2017) with separate rgb and audio
  branches, over all real frames.

  frames -> input BN -> NetVLAD(rgb, K) ++ NetVLAD(audio, K/2) -> hidden Dense -> context
  gating (x * sigmoid(BN(x W_g))) -> classifier -> optional context gating of the
  probabilities (p * sigmoid(BN(p W_p)), so still in [0, 1]).

  As in WILLOW, netvlad_add_batch_norm puts batch norms on the input, the cluster assignments
  and the gates, and the hidden layer has batch norm and relu6 only with netvlad_relu (its
  best model ran with --netvlad_relu=False: a plain biased Dense). Batch norms over frames
  take their statistics from the real frames only. Differences: WILLOW fed 300 frames sampled
  at random with replacement (iterations=300) even at evaluation; here every real frame is
  used once, deterministically.

  Hyper-parameters (NetVladHparams):
    rgb_size: features[..., :rgb_size] is rgb, the rest audio (no audio branch if none left).
    netvlad_cluster_size: K of the rgb branch; the audio branch has max(1, K // 2).
    netvlad_hidden_size: width of the hidden layer (the representation).
    netvlad_add_batch_norm: batch norms as above (else biases).
    netvlad_relu: batch norm + relu6 on the hidden layer (WILLOW's flag).
    gating: context gating after the hidden layer.
    moe_prob_gating: context gating of the predicted probabilities.
    video_level_classifier_model: 'MoeModel' or 'LogisticModel'.
    moe_num_mixtures: experts of the MoE classifier.
    l2_penalty: L2 scale of the classifier (WILLOW's --moe_l2; its README ran 1e-6).
  """

  Hparams = NetVladHparams

  def __init__(self, num_classes: int, hparams: NetVladHparams | None = None, **kwargs):
    super().__init__(num_classes, hparams, **kwargs)
    netvlad_cluster_size = self.hparams.netvlad_cluster_size
    netvlad_hidden_size = self.hparams.netvlad_hidden_size
    bn = self.hparams.netvlad_add_batch_norm
    hidden_bn = bn and self.hparams.netvlad_relu
    normal = keras.initializers.RandomNormal
    momentum = self.hparams.bn_momentum
    self.input_bn = _slim_batch_norm("input_bn", momentum) if bn else None
    self.hidden = keras.layers.Dense(
        netvlad_hidden_size, use_bias=not hidden_bn,
        kernel_initializer=normal(stddev=1 / math.sqrt(netvlad_cluster_size)),
        bias_initializer=normal(stddev=0.01), name="hidden1")
    self.hidden_bn = _slim_batch_norm("hidden1_bn", momentum) if hidden_bn else None
    self.gate = self.gate_bn = None
    if self.hparams.gating:
      gate_init = normal(stddev=1 / math.sqrt(netvlad_hidden_size))
      self.gate = keras.layers.Dense(netvlad_hidden_size, use_bias=not bn,
                                     kernel_initializer=gate_init, bias_initializer=gate_init,
                                     name="gating")
      self.gate_bn = _slim_batch_norm("gating_bn", momentum) if bn else None
    self.classifier = video_level.build_classifier(self.hparams, num_classes, name="classifier")
    self.prob_gate = self.prob_gate_bn = None
    if self.hparams.moe_prob_gating:
      # float32 like the probabilities it gates (even under a mixed-precision policy).
      self.prob_gate = keras.layers.Dense(
          num_classes, use_bias=False,
          kernel_initializer=normal(stddev=1 / math.sqrt(num_classes)), dtype="float32",
          name="gating_prob")
      self.prob_gate_bn = _slim_batch_norm("gating_prob_bn", momentum, dtype="float32")

  def build(self, features_shape):
    feature_size = _feature_size(features_shape, "NetVladModel", self.hparams.rgb_size)
    audio_size = feature_size - self.hparams.rgb_size
    frame_shape = (None, None, feature_size)
    if self.input_bn is not None:
      self.input_bn.build(frame_shape)
    self.rgb_vlad = NetVlad(self.hparams.netvlad_cluster_size, self.hparams.netvlad_add_batch_norm,
                            self.hparams.bn_momentum, name="video_vlad")
    self.rgb_vlad.build((None, None, self.hparams.rgb_size))
    vlad_size = self.hparams.rgb_size * self.hparams.netvlad_cluster_size
    self.audio_vlad = None
    if audio_size:
      self.audio_vlad = NetVlad(max(1, self.hparams.netvlad_cluster_size // 2),
                                self.hparams.netvlad_add_batch_norm, self.hparams.bn_momentum,
                                name="audio_vlad")
      self.audio_vlad.build((None, None, audio_size))
      vlad_size += audio_size * self.audio_vlad.cluster_size
    hidden_shape = (None, self.hparams.netvlad_hidden_size)
    self.hidden.build((None, vlad_size))
    for layer in (self.hidden_bn, self.gate, self.gate_bn):
      if layer is not None:
        layer.build(hidden_shape)
    self.classifier.build(hidden_shape)
    if self.prob_gate is not None:
      self.prob_gate.build((None, self.num_classes))
      self.prob_gate_bn.build((None, self.num_classes))

  def call(self, features, num_frames=None, training=False):
    """Args:
      features: [B, T, D] float32 raw frames, zero after each video's num_frames.
      num_frames: [B] int32 real frames per video (None: all T).
      training: batch statistics if True.

    Returns:
      {"predictions": [B, C], "representation": [B, netvlad_hidden_size] the gated hidden
       activation}.
    """
    frames, _, mask = _real_frames(features, num_frames)
    if self.input_bn is not None:
      frames = self.input_bn(frames, training=training, mask=mask)
    rgb, audio = _split_features(frames, self.hparams.rgb_size, self.audio_vlad is not None)
    vlad = self.rgb_vlad(rgb, mask, training=training)
    if audio is not None:
      vlad = tf.concat([vlad, self.audio_vlad(audio, mask, training=training)], axis=1)
    hidden = self.hidden(vlad)
    if self.hidden_bn is not None:
      hidden = self.hidden_bn(hidden, training=training)
    if self.hparams.netvlad_relu:
      hidden = tf.nn.relu6(hidden)
    if self.gate is not None:
      gates = self.gate(hidden)
      if self.gate_bn is not None:
        gates = self.gate_bn(gates, training=training)
      hidden = hidden * tf.sigmoid(gates)
    predictions = self.classifier(hidden, training=training)["predictions"]
    if self.prob_gate is not None:
      gates = self.prob_gate_bn(self.prob_gate(predictions), training=training)
      predictions = predictions * tf.sigmoid(tf.cast(gates, tf.float32))
    return {"predictions": predictions, "representation": hidden}



# ---------------------------------------------------------------------------------- NeXtVLAD


@keras.saving.register_keras_serializable(package="yt8m")
class NeXtVlad(keras.layers.Layer):
  """NeXtVLAD pooling of one feature stream (Lin et al. 2018), masked.

  x~ = x W_e (width lambda*N) is split into G groups of d = lambda*N / G; group g of frame t
  gets attention alpha_tg = sigmoid(x~_t W_a)_g and a softmax assignment a_tgk over K clusters
  from one shared BN(x~_t W_c) ([G * K] logits); padded frames get alpha = 0. Then
  V[i, k] = sum_t sum_g alpha_tg a_tgk (x~_tgi - c_ik), intra-normalised over i, flattened
  i-major to [d * K] and batch-normalised. Initialisers: He normal, as slim's
  variance_scaling_initializer in linrongc's code.

  Args:
    cluster_size: K.
    groups: G.
    expansion: lambda.
  """

  def __init__(self, cluster_size: int, groups: int, expansion: int,
               bn_momentum: float = layers.SLIM_BN_MOMENTUM, **kwargs):
    super().__init__(**kwargs)
    self.cluster_size = layers.check_int("cluster_size", cluster_size)
    self.groups = layers.check_int("groups", groups)
    self.expansion = layers.check_int("expansion", expansion)
    self.bn_momentum = _bn_momentum("bn_momentum", bn_momentum)

  def build(self, input_shape):
    feature_size = _feature_size(input_shape, "NeXtVlad")
    width = self.expansion * feature_size
    if width % self.groups:
      raise ValueError(f"NeXtVLAD: expansion * feature size ({width}) must be divisible by "
                       f"groups ({self.groups})")
    self.group_size = width // self.groups
    self.expand = keras.layers.Dense(width, kernel_initializer="he_normal", name="expansion")
    self.attention = keras.layers.Dense(self.groups, kernel_initializer="he_normal",
                                        name="attention")
    self.assignment = keras.layers.Dense(self.groups * self.cluster_size, use_bias=False,
                                         kernel_initializer="he_normal", name="cluster")
    self.assignment_bn = _slim_batch_norm("cluster_bn", self.bn_momentum)
    self.vlad_bn = _slim_batch_norm("vlad_bn", self.bn_momentum)
    frame_shape = tuple(input_shape[:-1])
    self.expand.build(frame_shape + (feature_size,))
    self.attention.build(frame_shape + (width,))
    self.assignment.build(frame_shape + (width,))
    self.assignment_bn.build(frame_shape + (self.groups * self.cluster_size,))
    self.vlad_bn.build((None, self.group_size * self.cluster_size))
    self.centers = self.add_weight(shape=(self.group_size, self.cluster_size),
                                   initializer="he_normal", name="centers")

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.expansion * input_shape[-1] // self.groups * self.cluster_size)

  def call(self, frames, mask, training=False):
    """Args:
      frames: [B, T, N] with padding zeroed.
      mask: [B, T] bool, True for real frames.
      training: batch statistics (over the real frames only) if True.

    Returns:
      [B, d * K] batch-normalised NeXtVLAD vector.
    """
    g, k, d = self.groups, self.cluster_size, self.group_size
    batch, length = tf.shape(frames)[0], tf.shape(frames)[1]
    expanded = self.expand(frames)  # (B, T, lambda*N)
    attention = tf.sigmoid(self.attention(expanded)) * tf.cast(mask, expanded.dtype)[:, :, None]
    logits = self.assignment_bn(self.assignment(expanded), training=training, mask=mask)
    assignment = tf.nn.softmax(tf.reshape(logits, [batch, length, g, k]))
    assignment = assignment * attention[:, :, :, None]  # (B, T, G, K)
    grouped = tf.reshape(expanded, [batch, length, g, d])
    centers = tf.cast(self.centers, expanded.dtype)
    vlad = (tf.einsum("btgk,btgi->bik", assignment, grouped) -
            tf.reduce_sum(assignment, axis=[1, 2])[:, None, :] * centers[None])  # (B, d, K)
    vlad = tf.math.l2_normalize(vlad, axis=1, epsilon=layers.L2_NORMALIZE_EPSILON)
    return self.vlad_bn(tf.reshape(vlad, [-1, d * k]), training=training)

  def get_config(self):
    config = super().get_config()
    config.update(cluster_size=self.cluster_size, groups=self.groups, expansion=self.expansion,
                  bn_momentum=self.bn_momentum)
    return config


@dataclasses.dataclass(frozen=True)
class NeXtVladHparams(video_level.ClassifierHparams):
  video_level_classifier_model: str = layers.choice("LogisticModel",
                                                    tuple(video_level.CLASSIFIERS))
  l2_penalty: float = 1e-5
  rgb_size: int = 1024
  nextvlad_cluster_size: int = 128
  nextvlad_hidden_size: int = 2048
  groups: int = 8
  expansion: int = 2
  gating_reduction: int = 8
  drop_rate: float = layers.rate(0.5)
  bn_momentum: float = bn_momentum_field()

  def __post_init__(self):
    super().__post_init__()
    if self.nextvlad_hidden_size // self.gating_reduction < 1:
      raise ValueError(f"gating_reduction must be <= nextvlad_hidden_size "
                       f"({self.nextvlad_hidden_size}), got {self.gating_reduction!r}")
    if self.expansion * self.rgb_size % self.groups:
      raise ValueError(f"groups must divide expansion * rgb_size "
                       f"({self.expansion * self.rgb_size}), got {self.groups!r}")


@keras.saving.register_keras_serializable(package="yt8m")
class NeXtVladModel(layers.HparamsModel):
  """NeXtVLAD (Lin, Xiao, Fan, ECCV'18 workshop) with separate rgb and audio branches, over all
  real frames.

  NeXtVLAD(rgb, K, G) ++ NeXtVLAD(audio, K/2, G/2) -> dropout -> hidden Dense + BN -> SE
  context gating (x * sigmoid(relu(BN(x W_1)) W_2), W_1 reducing by gating_reduction) ->
  classifier. Like linrongc's NeXtVLADModel the two streams get their own NeXtVLAD and are
  concatenated before the dropout (Lin et al. Table 1: "dropout after rgb/audio concat"). Not
  reproduced: the reverse PCA-whitening of the input features (it needs the dataset's PCA
  matrix) and the mixture/on-the-fly distillation of their final MixNeXtVladModel.

  Hyper-parameters (NeXtVladHparams):
    rgb_size: features[..., :rgb_size] is rgb, the rest audio (no audio branch if none left).
    nextvlad_cluster_size: K of the rgb branch; the audio branch has max(1, K // 2).
    nextvlad_hidden_size: width of the hidden layer (the representation).
    groups: G of the rgb branch; the audio branch has max(1, G // 2).
    expansion: lambda.
    gating_reduction: bottleneck factor r of the SE gate (hidden_size // r units).
    drop_rate: dropout on the concatenated VLAD vector, when training only.
    video_level_classifier_model: 'LogisticModel' (Lin et al.) or 'MoeModel'.
    moe_num_mixtures: experts of the MoE classifier.
    l2_penalty: L2 scale of the classifier.
  """

  Hparams = NeXtVladHparams

  def __init__(self, num_classes: int, hparams: NeXtVladHparams | None = None, **kwargs):
    super().__init__(num_classes, hparams, **kwargs)
    gating_reduction = self.hparams.gating_reduction
    hidden_size = self.hparams.nextvlad_hidden_size
    self.dropout = keras.layers.Dropout(self.hparams.drop_rate, name="vlad_dropout")
    self.hidden = keras.layers.Dense(hidden_size, use_bias=False, kernel_initializer="he_normal",
                                     name="hidden1")
    self.hidden_bn = _slim_batch_norm("hidden1_bn", self.hparams.bn_momentum)
    self.gate_reduce = keras.layers.Dense(hidden_size // gating_reduction, use_bias=False,
                                          kernel_initializer="he_normal", name="gating_1")
    self.gate_reduce_bn = _slim_batch_norm("gating_bn", self.hparams.bn_momentum)
    self.gate_expand = keras.layers.Dense(hidden_size, use_bias=False,
                                          kernel_initializer="he_normal", name="gating_2")
    self.classifier = video_level.build_classifier(self.hparams, num_classes, name="classifier")

  def build(self, features_shape):
    feature_size = _feature_size(features_shape, "NeXtVladModel", self.hparams.rgb_size)
    audio_size = feature_size - self.hparams.rgb_size
    self.rgb_vlad = NeXtVlad(self.hparams.nextvlad_cluster_size, self.hparams.groups, self.hparams.expansion,
                             self.hparams.bn_momentum, name="video_vlad")
    self.rgb_vlad.build((None, None, self.hparams.rgb_size))
    vlad_size = self.rgb_vlad.group_size * self.hparams.nextvlad_cluster_size
    self.audio_vlad = None
    if audio_size:
      self.audio_vlad = NeXtVlad(max(1, self.hparams.nextvlad_cluster_size // 2),
                                 max(1, self.hparams.groups // 2), self.hparams.expansion,
                                 self.hparams.bn_momentum, name="audio_vlad")
      self.audio_vlad.build((None, None, audio_size))
      vlad_size += self.audio_vlad.group_size * self.audio_vlad.cluster_size
    hidden_shape = (None, self.hparams.nextvlad_hidden_size)
    reduced_shape = (None, self.hparams.nextvlad_hidden_size // self.hparams.gating_reduction)
    self.hidden.build((None, vlad_size))
    self.hidden_bn.build(hidden_shape)
    self.gate_reduce.build(hidden_shape)
    self.gate_reduce_bn.build(reduced_shape)
    self.gate_expand.build(reduced_shape)
    self.classifier.build(hidden_shape)

  def call(self, features, num_frames=None, training=False):
    """Args:
      features: [B, T, D] float32 raw frames, zero after each video's num_frames.
      num_frames: [B] int32 real frames per video (None: all T).
      training: dropout and batch statistics if True.

    Returns:
      {"predictions": [B, C], "representation": [B, nextvlad_hidden_size] the gated hidden
       activation}.
    """
    frames, _, mask = _real_frames(features, num_frames)
    rgb, audio = _split_features(frames, self.hparams.rgb_size, self.audio_vlad is not None)
    vlad = self.rgb_vlad(rgb, mask, training=training)
    if audio is not None:
      vlad = tf.concat([vlad, self.audio_vlad(audio, mask, training=training)], axis=1)
    vlad = self.dropout(vlad, training=training)
    hidden = self.hidden_bn(self.hidden(vlad), training=training)
    gates = tf.nn.relu(self.gate_reduce_bn(self.gate_reduce(hidden), training=training))
    hidden = hidden * tf.sigmoid(self.gate_expand(gates))
    output = self.classifier(hidden, training=training)
    return {"predictions": output["predictions"], "representation": hidden}




# ------------------------------------------------------------------------ attention pooling


@dataclasses.dataclass(frozen=True)
class AttentionPoolingHparams(video_level.ClassifierHparams):
  attention_scorer_size: int = 128
  attention_heads: int = 4
  attention_hidden_size: int = 512
  attention_drop_rate: float = layers.rate(0.5)
  frame_dropout: float = layers.rate(0.0)


@keras.saving.register_keras_serializable(package="yt8m")
class AttentionPoolingModel(layers.HparamsModel):
  """Gated attention pooling over all real frames (Ilse et al. 2018, attention-based MIL):
  a teacher that can weight the informative frames, as a frame picker does, instead of
  reading a final state after the last frame (H-RNN) or averaging every frame.

  For frame t (L2-normalised) and head h: s_th = w_h . (tanh(V x_t) * sigmoid(U x_t)),
  a_th = softmax over the video's real frames of s_th (0 on padding), pooled_h = sum_t a_th x_t.
  The heads' pooled frames are concatenated -> dropout -> hidden Dense + relu (the
  representation) -> classifier. "frame_weights" [B, T] is the heads' mean attention (sums to
  1 over the real frames). Frame dropout (training only) hides each real frame with
  probability frame_dropout, so no single frame can carry a video (a video keeps at least
  one frame).

  Hyper-parameters (AttentionPoolingHparams):
    attention_scorer_size: width of the gated scorer (V and U).
    attention_heads: H, independent attention distributions.
    attention_hidden_size: width of the hidden layer (the representation).
    attention_drop_rate: dropout on the pooled vector, when training only.
    frame_dropout: probability of hiding a real frame, when training only.
    video_level_classifier_model: 'MoeModel' or 'LogisticModel'.
    moe_num_mixtures: experts of the MoE classifier.
    l2_penalty: L2 scale of the classifier.
  """

  Hparams = AttentionPoolingHparams

  def __init__(self, num_classes: int, hparams: AttentionPoolingHparams | None = None,
               **kwargs):
    super().__init__(num_classes, hparams, **kwargs)
    attention_scorer_size = self.hparams.attention_scorer_size
    attention_heads = self.hparams.attention_heads
    attention_hidden_size = self.hparams.attention_hidden_size
    self.scorer_tanh = keras.layers.Dense(attention_scorer_size, activation="tanh",
                                          name="scorer_tanh")
    self.scorer_gate = keras.layers.Dense(attention_scorer_size, activation="sigmoid",
                                          name="scorer_gate")
    self.scorer_out = keras.layers.Dense(attention_heads, name="scorer_out")
    self.dropout = keras.layers.Dropout(self.hparams.attention_drop_rate, name="pooled_dropout")
    self.hidden = keras.layers.Dense(attention_hidden_size, activation="relu",
                                     kernel_initializer="he_normal", name="hidden1")
    self.classifier = video_level.build_classifier(self.hparams, num_classes, name="classifier")

  def build(self, features_shape):
    feature_size = _feature_size(features_shape, "AttentionPoolingModel")
    frame_shape = (None, None, feature_size)
    self.scorer_tanh.build(frame_shape)
    self.scorer_gate.build(frame_shape)
    self.scorer_out.build((None, None, self.hparams.attention_scorer_size))
    self.hidden.build((None, self.hparams.attention_heads * feature_size))
    self.classifier.build((None, self.hparams.attention_hidden_size))

  def attend_mask(self, mask: tf.Tensor, training: bool) -> tf.Tensor:
    """The frames attention may look at: the real ones, minus frame dropout when training."""
    if not training or self.hparams.frame_dropout == 0:
      return mask
    kept = mask & (tf.random.uniform(tf.shape(mask)) >= self.hparams.frame_dropout)
    any_kept = tf.reduce_any(kept, axis=1, keepdims=True)
    return tf.where(any_kept, kept, mask)

  def call(self, features, num_frames=None, training=False):
    """Args:
      features: [B, T, D] float32 raw frames, zero after each video's num_frames.
      num_frames: [B] int32 real frames per video (None: all T).
      training: dropout and frame dropout if True.

    Returns:
      {"predictions": [B, C], "representation": [B, attention_hidden_size],
       "frame_weights": [B, T] float32 mean attention over heads, 0 on padding}.
    """
    frames, _, mask = _real_frames(features, num_frames)
    attend = self.attend_mask(mask, training)
    weights = _masked_softmax(_gated_scores(self, frames), attend)  # (B, T, H)
    pooled = tf.einsum("bth,btd->bhd", tf.cast(weights, frames.dtype), frames)
    pooled = tf.reshape(pooled, [-1, self.hparams.attention_heads * frames.shape[-1]])
    hidden = self.hidden(self.dropout(pooled, training=training))
    output = self.classifier(hidden, training=training)
    return {"predictions": output["predictions"], "representation": hidden,
            "frame_weights": tf.reduce_mean(weights, axis=2)}
