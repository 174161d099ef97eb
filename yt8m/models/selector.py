"""Learned frame selection (--frame_selection=learned): a cheap scorer looks at every frame
and picks the k frames a student model then processes.

The video's true length n is cut into m = min(k, n) stretches, stretch j holding frames
floor(j*n/m) .. floor((j+1)*n/m) - 1 (the `uniform` strategy's grid: uniform takes the first
frame of each stretch). One frame is taken from each stretch: the one the scorer rates highest
(evaluation, inference, export), or a draw from softmax(scores / temperature) within the
stretch (training). The student so always gets min(k, n) frames in time order, spread over the
whole video; the scorer decides where inside each stretch to look. A global top-k would be free
to pile its k frames into one shot, whose neighbouring frames are nearly identical.

The scorer is Dense(selector_hidden, relu) -> Dense(1) on each L2-normalised frame: about
2 * D * selector_hidden multiply-adds per frame (37k FLOPs for D = 1152, hidden 16), the cost
of looking at every frame; bench_efficiency.py counts it in the student's cost.

A scorer of a part of the frame (selector_features, e.g. the 128 audio columns) may add a second
stage (selector_shortlist = c): each stretch's c best frames by the first scorer are read whole
and a second scorer of every feature adds its score to theirs; the pick is the best sum. Both
scorers learn through the straight-through mixtures (the first over the stretch, the second over
its shortlist); the second starts at 0, i.e. at the first stage's picks.

Training estimators (--selector_estimator):
  straight_through  Gumbel-softmax per stretch (Jang et al. 2017; Maddison et al. 2017): the
                    forward pass feeds the student the sampled frame exactly; the backward pass
                    differentiates the soft mixture sum_t p_jt x_t, so the scorer learns towards
                    frames whose features the student's losses pull the picked frame towards.
                    Biased, low variance, no change to the training loop.
  reinforce         score function (Williams 1992): the model returns log pi(picked frames)
                    and the loop adds mean((loss_i - batch mean loss) * log pi_i), rewarding
                    picks whose student loss (labels and teacher terms) beat the batch's.
                    Unbiased, noisier; the student's input is the hard pick either way.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import keras
import tensorflow as tf

from yt8m.models import layers

ESTIMATORS = ("straight_through", "reinforce")


def _check_temperature(name: str, value) -> float:
  value = layers.check_penalty(name, value)
  if value == 0:
    raise ValueError(f"{name} must be > 0, got {value!r}")
  return value


def _check_names(name: str, value) -> str:
  if not isinstance(value, str):
    raise ValueError(f"{name} must be comma-separated feature names, got {value!r}")
  return value


@dataclasses.dataclass(frozen=True)
class SelectorHparams(layers.Hparams):
  """The learned selector's hyper-parameters (the --selector_* flags)."""
  selector_hidden: int = 16
  selector_temperature: float = dataclasses.field(default=1.0,
                                                  metadata={"check": _check_temperature})
  selector_estimator: str = layers.choice("straight_through", ESTIMATORS)
  # c > 0: the reader decodes only a uniform grid of c * k candidate frames and the scorer picks
  # among them (O(c * k) reading); 0: every frame.
  selector_candidates: int = dataclasses.field(
      default=0, metadata={"check": lambda name, value: layers.check_int(name, value, 0)})
  # The frame features the scorer reads, comma-separated (e.g. "audio": 128 of a frame's 1,152
  # bytes); "" = all of them. The student always gets every feature of the picked frames.
  selector_features: str = dataclasses.field(default="", metadata={"check": _check_names})
  # c > 0 (with a part scored, selector_features): two stages. The part scorer keeps the c best
  # frames of each stretch; a second scorer reads every feature of those k * c frames only and
  # picks one per stretch. 0: the part scorer picks alone.
  selector_shortlist: int = dataclasses.field(
      default=0, metadata={"check": lambda name, value: layers.check_int(name, value, 0)})


def scored_features(selector_features: str, feature_names: Sequence[str]) -> tuple[int, ...]:
  """Indices into feature_names of the features the scorer reads (all of them for "")."""
  names = [n.strip() for n in selector_features.split(",") if n.strip()]
  unknown = [n for n in names if n not in feature_names]
  if unknown:
    raise ValueError(f"--selector_features: {unknown[0]!r} is not a frame feature of this run "
                     f"({', '.join(feature_names)})")
  return tuple(sorted({feature_names.index(n) for n in names})) or tuple(
      range(len(feature_names)))


def check_shortlist(hparams: SelectorHparams, num_scored: int, num_features: int) -> None:
  """Raises ValueError unless a two-stage selection (selector_shortlist) can run."""
  if not hparams.selector_shortlist:
    return
  if num_scored >= num_features:
    raise ValueError("--selector_shortlist needs --selector_features to name a part of the "
                     "frame (the first stage's), e.g. audio")
  if hparams.selector_estimator != "straight_through":
    raise ValueError("--selector_shortlist needs --selector_estimator=straight_through")


def source_frames(candidates: tf.Tensor, picked: tf.Tensor) -> tf.Tensor:
  """The source frame of each pick: picked [B, k] indexes the model's input frames, whose
  source frames are candidates [B, T] (the reader's frame_indices); -1 stays -1."""
  return tf.where(picked >= 0, tf.gather(candidates, tf.maximum(picked, 0), batch_dims=1), -1)


def stretch_mask(num_frames: tf.Tensor, k: int, max_len: int | tf.Tensor) -> tf.Tensor:
  """[B, k, T] bool: frame t lies in stretch j of its video (slots j >= min(k, n) are empty).

  Args:
    num_frames: [B] int, n >= 1 per video.
    k: the frame budget.
    max_len: T, the padded frame axis.
  """
  n = tf.cast(num_frames, tf.int64)[:, None]
  m = tf.minimum(n, k)
  j = tf.range(k, dtype=tf.int64)[None, :]
  start = j * n // m
  end = tf.where(j < m, (j + 1) * n // m, start)  # empty beyond the m real slots
  t = tf.range(tf.cast(max_len, tf.int64), dtype=tf.int64)[None, None, :]
  return (t >= start[:, :, None]) & (t < end[:, :, None])


class LearnedFrameSelection(keras.Model):
  """Wraps a frame-level student: scores all frames, keeps one per stretch, runs the student.

  Called like any model, model(features [B, T, D], num_frames [B]), on every frame of the
  video. Returns the student's outputs plus "frame_indices" [B, k] (source frame of each slot,
  -1 for empty slots: the distillation losses align time with them), "selection_scores" [B, T];
  when training, "choice_log_probs" [B, k, T] (each stretch's choice distribution) and
  "stretches" [B, k, T], and with reinforce "selection_log_prob" [B].

  Args:
    student: a frame-level model of the registry.
    student_frames: k.
    hparams: SelectorHparams:
      selector_hidden: width of the scorer's hidden layer.
      selector_temperature: softmax temperature of the training draw (and of the straight-
        through relaxation).
      selector_estimator: one of ESTIMATORS.
  """

  def __init__(self, student: keras.Model, student_frames: int,
               hparams: SelectorHparams | None = None,
               feature_sizes: Sequence[int] | None = None,
               scored: Sequence[int] | None = None, **kwargs):
    super().__init__(**kwargs)
    self.student = student
    self.student_frames = layers.check_int("student_frames", student_frames)
    self.hparams = SelectorHparams() if hparams is None else hparams
    # The frame's features (sizes, in column order) and the indices of those scored; without
    # them the scorer reads the whole frame.
    self.feature_sizes = tuple(feature_sizes or ())
    self.scored = tuple(scored) if scored is not None else tuple(range(len(self.feature_sizes)))
    selector_hidden = self.hparams.selector_hidden
    self.scorer_hidden = keras.layers.Dense(selector_hidden, activation="relu",
                                            name="scorer_hidden")
    self.scorer_out = keras.layers.Dense(1, name="scorer_out")
    check_shortlist(self.hparams, len(self.scored), len(self.feature_sizes))
    if self.hparams.selector_shortlist:  # zero-initialised: training starts at stage 1's picks
      self.scorer2_hidden = keras.layers.Dense(selector_hidden, activation="relu",
                                               name="scorer2_hidden")
      self.scorer2_out = keras.layers.Dense(1, kernel_initializer="zeros", name="scorer2_out")
    self.gumbel_noise = keras.random.SeedGenerator(name="gumbel_noise")  # checkpointed

  # What the training loop and distillation look up on a student.
  @property
  def classifier(self):
    return self.student.classifier

  @property
  def scores_part(self) -> bool:
    """The scorer reads only some of the frame's features (--selector_features)."""
    return len(self.scored) < len(self.feature_sizes)

  def scored_part(self, frames: tf.Tensor) -> tf.Tensor:
    """[..., D] frames (any dtype) -> [..., S]: the columns of the scored features."""
    if not self.scores_part:
      return frames
    starts = [sum(self.feature_sizes[:f]) for f in range(len(self.feature_sizes))]
    return tf.concat([frames[..., starts[f]:starts[f] + self.feature_sizes[f]]
                      for f in self.scored], axis=-1)

  def score(self, frames: tf.Tensor) -> tf.Tensor:
    """[B, T, S] L2-normalised scored columns -> [B, T] scores."""
    return self.scorer_out(self.scorer_hidden(frames))[..., 0]

  def call(self, features, num_frames=None, training=False):
    """features: [B, T, D] raw (dequantized) frames."""
    return self.select_and_run(self.scored_part(features),
                               lambda picked: tf.gather(features, picked, batch_dims=1),
                               layers.clip_num_frames(num_frames, features), training,
                               features if training else None)

  def select_and_run(self, scored: tf.Tensor, picked_rows: Callable[[tf.Tensor], tf.Tensor],
                     num_frames: tf.Tensor, training: bool = False,
                     features: tf.Tensor | None = None) -> dict:
    """The selection and the student, given every frame's scored columns (raw [B, T, S]) and
    picked_rows(indices [B, m]) -> the raw [B, m, D] rows of those frames. Inference may so
    hand over uint8 frames, dequantizing only the scored columns and the rows it reads
    (eval_lib). Training also needs every raw frame (`features`): straight-through mixes them."""
    k = self.student_frames
    temperature = self.hparams.selector_temperature
    scores = self.score(layers.l2_normalize_frames(scored))
    mask = stretch_mask(num_frames, k, tf.shape(scored)[1])
    logits = tf.where(mask, scores[:, None, :] / temperature, -1e9)
    if training:
      uniform = keras.random.uniform(tf.shape(scores), 1e-6, 1.0 - 1e-6,
                                     seed=self.gumbel_noise)
      perturbed = logits - tf.math.log(-tf.math.log(uniform))[:, None, :]  # Gumbel noise
    else:
      perturbed = logits
    real_slot = tf.reduce_any(mask, axis=-1)  # [B, k]
    extra = {}
    if self.hparams.selector_shortlist:
      # Stage 2 ranks each stretch's c best frames (Gumbel top-c when training) by the sum of
      # both scores, with the same noise: while the second scorer outputs 0 (its init) the pick
      # is the first stage's alone.
      c = self.hparams.selector_shortlist
      top = tf.math.top_k(perturbed, k=tf.minimum(c, tf.shape(scored)[1]))
      shortlist = tf.reshape(top.indices, [tf.shape(scores)[0], -1])  # [B, k * c]
      rows = picked_rows(shortlist)
      rows_normalised = tf.reshape(layers.l2_normalize_frames(rows),
                                   tf.concat([tf.shape(top.indices), [-1]], 0))  # [B, k, c, D]
      refined = self.scorer2_out(self.scorer2_hidden(rows_normalised))[..., 0] / temperature
      perturbed2 = tf.where(top.values > -1e8, top.values + refined, -1e9)
      slot = tf.argmax(perturbed2, axis=-1, output_type=tf.int32)  # [B, k]
      picked = tf.gather(top.indices, slot, batch_dims=2)
      selected = tf.gather(rows_normalised, slot, batch_dims=2)
    else:
      picked = tf.argmax(perturbed, axis=-1, output_type=tf.int32)  # [B, k]
      selected = layers.l2_normalize_frames(picked_rows(picked))
    if training:
      # Each stretch's choice distribution: REINFORCE's log-likelihood, distill's L_frames.
      choice_log_probs = tf.nn.log_softmax(logits, axis=-1)
      extra.update(choice_log_probs=choice_log_probs, stretches=mask)
      if self.hparams.selector_estimator == "straight_through":
        soft = tf.nn.softmax(perturbed, axis=-1)
        mixture = tf.einsum("bjt,btd->bjd", soft, layers.l2_normalize_frames(features))
        selected += mixture - tf.stop_gradient(mixture)  # value: the hard pick; gradient: soft
        if self.hparams.selector_shortlist:  # the second stage learns within the shortlist
          soft2 = tf.nn.softmax(perturbed2, axis=-1)
          mixture2 = tf.einsum("bjc,bjcd->bjd", soft2, rows_normalised)
          selected += mixture2 - tf.stop_gradient(mixture2)
      else:
        log_pi = tf.gather(choice_log_probs, picked, batch_dims=2)
        extra["selection_log_prob"] = tf.reduce_sum(tf.where(real_slot, log_pi, 0.0), axis=1)
    slots = tf.cast(real_slot, selected.dtype)[:, :, None]
    count = tf.reduce_sum(tf.cast(real_slot, tf.int32), axis=1)
    out = dict(self.student(selected * slots, count, training=training))
    out.update(extra, frame_indices=tf.where(real_slot, picked, -1), selection_scores=scores)
    return out
