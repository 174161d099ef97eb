"""Teacher -> student matching losses (Bhardwaj et al.), per example, for multi-label data.

  L_rep   ||E_T - E_S||^2: squared distance of the final video representations.
  L_pred  sum over classes of (P_T - P_S)^2 (the paper's squared error), or with
          pred_loss="kl" the per-class binary KL(P_T || P_S) summed over classes. Not a
          softmax KL: YouTube-8M classes are independent sigmoids (the authors' code
          renormalised them into one distribution).
  L_int   intermediate representations: each student H-RNN block is matched to the teacher
          block that covers the same time (by the mean source frame index of the student
          block's frames), squared distance averaged over the student's real blocks.
  L_frames where to look: in each stretch of a learned selection, the cross-entropy from the
          teacher's attention over the stretch's frames (renormalised) to the selector's
          choice distribution, averaged over the stretches the teacher attends to.

Teacher outputs always enter through tf.stop_gradient: student losses never move the teacher.
The terms are sums over dimensions, as in the paper, so their sizes differ by orders of
magnitude (L_CE sums over thousands of classes); --ce_weight, --rep_weight, --pred_weight and
--intermediate_weight scale them (docs/DISTILLATION.md).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import tensorflow as tf

PRED_LOSSES = ("mse", "kl")
_EPSILON = 1e-6


def _weight(default: float, help_text: str):
  return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """The student's loss weights; train.py makes a flag of each field (its help below)."""
  ce_weight: float = _weight(1.0, "Weight of the student's label loss L_CE.")
  rep_weight: float = _weight(0.01, "Weight of L_rep = ||E_T - E_S||^2 (a sum over the "
                              "representation, hundreds at the start: 0.01 brings it to "
                              "L_CE's scale; docs/DISTILLATION.md).")
  pred_weight: float = _weight(1.0, "Weight of L_pred (teacher vs student probabilities).")
  intermediate_weight: float = _weight(0.0, "Weight of the H-RNN block-encoding match.")
  frame_weight: float = _weight(0.0, "Weight of L_frames: a learned selector learns where to "
                                "look from the teacher's per-frame attention (a teacher with "
                                "frame_weights, e.g. AttentionPoolingModel).")
  pred_loss: str = dataclasses.field(default="mse", metadata={
      "help": "L_pred: squared error (the paper) or per-class binary KL.",
      "choices": PRED_LOSSES})

  def __post_init__(self):
    if self.pred_loss not in PRED_LOSSES:
      raise ValueError(f"--pred_loss must be one of {PRED_LOSSES}, got {self.pred_loss!r}")
    for name in ("ce_weight", *(term.weight for term in TERMS.values())):
      if getattr(self, name) < 0:
        raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")


def representation_loss(teacher: tf.Tensor, student: tf.Tensor) -> tf.Tensor:
  """[B, H], [B, H] -> [B] squared distance."""
  if teacher.shape[-1] != student.shape[-1]:
    raise ValueError(f"teacher and student representations differ in size ({teacher.shape[-1]} "
                     f"vs {student.shape[-1]}); L_rep needs the same family and sizes")
  return tf.reduce_sum(tf.square(tf.stop_gradient(teacher) - student), axis=-1)


def prediction_loss(teacher: tf.Tensor, student: tf.Tensor, kind: str = "mse") -> tf.Tensor:
  """[B, C] probabilities -> [B]."""
  p_t = tf.stop_gradient(tf.cast(teacher, tf.float32))
  p_s = tf.cast(student, tf.float32)
  if kind == "mse":
    return tf.reduce_sum(tf.square(p_t - p_s), axis=-1)
  p_t = tf.clip_by_value(p_t, _EPSILON, 1 - _EPSILON)
  p_s = tf.clip_by_value(p_s, _EPSILON, 1 - _EPSILON)
  kl = p_t * tf.math.log(p_t / p_s) + (1 - p_t) * tf.math.log((1 - p_t) / (1 - p_s))
  return tf.reduce_sum(kl, axis=-1)


def intermediate_loss(teacher_blocks: tf.Tensor, student_blocks: tf.Tensor,
                      student_mask: tf.Tensor, frame_indices: tf.Tensor,
                      student_block_frames: int, teacher_block_frames: int) -> tf.Tensor:
  """Matches each student block to the teacher block covering the same time.

  Args:
    teacher_blocks: [B, Nt, H] teacher block encodings (blocks of teacher_block_frames).
    student_blocks: [B, Ns, H] student block encodings (blocks of student_block_frames of the
      student's own frames).
    student_mask: [B, Ns] 1 for student blocks holding a real frame.
    frame_indices: [B, k] source frame index of each student frame (-1 = padding).

  Returns:
    [B] mean squared distance over the student's real blocks.
  """
  num_blocks = tf.shape(student_blocks)[1]
  k = tf.shape(frame_indices)[1]
  padded = tf.pad(frame_indices, [[0, 0], [0, num_blocks * student_block_frames - k]],
                  constant_values=-1)
  blocks = tf.reshape(padded, [-1, num_blocks, student_block_frames])
  real = tf.cast(blocks >= 0, tf.float32)
  position = tf.reduce_sum(tf.cast(blocks, tf.float32) * real, -1) / tf.maximum(
      tf.reduce_sum(real, -1), 1.0)
  teacher_index = tf.minimum(tf.cast(position, tf.int32) // teacher_block_frames,
                             tf.shape(teacher_blocks)[1] - 1)
  matched = tf.gather(tf.stop_gradient(teacher_blocks), teacher_index, batch_dims=1)
  distance = tf.reduce_sum(tf.square(matched - student_blocks), axis=-1) * student_mask
  return tf.reduce_sum(distance, axis=1) / tf.maximum(tf.reduce_sum(student_mask, axis=1), 1.0)


def frame_choice_loss(teacher_weights: tf.Tensor, choice_log_probs: tf.Tensor,
                      stretches: tf.Tensor) -> tf.Tensor:
  """The teacher's attention as the target of a learned selector's per-stretch choice.

  Args:
    teacher_weights: [B, T] the teacher's per-frame weights (>= 0, 0 on padding).
    choice_log_probs: [B, k, T] log-probability that stretch j picks frame t.
    stretches: [B, k, T] bool, frame t lies in stretch j.

  Returns:
    [B] mean over the stretches with teacher weight of -sum_t q_jt log p_jt, where q_j is the
    teacher's weight over stretch j's frames, renormalised.
  """
  t = tf.shape(choice_log_probs)[-1]
  weights = tf.stop_gradient(tf.cast(teacher_weights, tf.float32))
  weights = tf.pad(weights, [[0, 0], [0, tf.maximum(t - tf.shape(weights)[1], 0)]])[:, :t]
  inside = weights[:, None, :] * tf.cast(stretches, tf.float32)
  mass = tf.reduce_sum(inside, axis=-1)  # [B, k]
  target = inside / tf.maximum(mass, _EPSILON)[..., None]
  log_p = tf.where(stretches, choice_log_probs, 0.0)
  per_stretch = -tf.reduce_sum(target * log_p, axis=-1)
  counted = tf.cast(mass > _EPSILON, tf.float32)
  return tf.reduce_sum(per_stretch * counted, axis=1) / tf.maximum(
      tf.reduce_sum(counted, axis=1), 1.0)


def _rep(teacher_out, student_out, context, weights):
  return representation_loss(teacher_out["representation"], student_out["representation"])


def _pred(teacher_out, student_out, context, weights):
  return prediction_loss(teacher_out["predictions"], student_out["predictions"],
                         weights.pred_loss)


def _intermediate(teacher_out, student_out, context, weights):
  if "intermediates" not in teacher_out or "intermediates" not in student_out:
    raise ValueError("--intermediate_weight needs models with intermediate representations "
                     "(HierarchicalLstmModel)")
  return intermediate_loss(teacher_out["intermediates"], student_out["intermediates"],
                           student_out["intermediate_mask"], context["frame_indices"],
                           context["student_block_frames"], context["teacher_block_frames"])


def _frames(teacher_out, student_out, context, weights):
  if "frame_weights" not in teacher_out or "choice_log_probs" not in student_out:
    raise ValueError("--frame_weight needs a teacher with per-frame weights "
                     "(AttentionPoolingModel) and --frame_selection=learned")
  # The selector chose among its input frames: the teacher's weights on those frames.
  weights, source = teacher_out["frame_weights"], context["input_frames"]
  if source is not None:
    weights = tf.where(source >= 0, tf.gather(weights, tf.maximum(source, 0), batch_dims=1), 0.0)
  return frame_choice_loss(weights, student_out["choice_log_probs"], student_out["stretches"])


class Term(NamedTuple):
  weight: str  # its LossWeights field
  loss: Callable  # (teacher_out, student_out, context, weights) -> per-example [B]
  teacher_outputs: tuple[str, ...]  # what it reads of the teacher (all a cache must keep)


# The matching terms by log name. A new term is a LossWeights field and an entry here.
TERMS = {
    "rep_loss": Term("rep_weight", _rep, ("representation",)),
    "pred_loss": Term("pred_weight", _pred, ("predictions",)),
    "intermediate_loss": Term("intermediate_weight", _intermediate,
                              ("intermediates", "intermediate_mask")),
    "frame_loss": Term("frame_weight", _frames, ("frame_weights",)),
}


def active_terms(weights: LossWeights) -> dict[str, Term]:
  """The terms switched on (weight > 0), by log name."""
  return {name: term for name, term in TERMS.items() if getattr(weights, term.weight)}


def teacher_outputs_needed(weights: LossWeights) -> tuple[str, ...]:
  """The teacher outputs the switched-on terms read."""
  return tuple(sorted({key for term in active_terms(weights).values()
                       for key in term.teacher_outputs}))


def student_terms(teacher_out: dict, student_out: dict, frame_indices: tf.Tensor,
                  weights: LossWeights, student_block_frames: int | None = None,
                  teacher_block_frames: int | None = None, input_frames: tf.Tensor | None = None
                  ) -> dict[str, tuple[float, tf.Tensor]]:
  """The matching terms that are switched on: name -> (weight, unweighted per-example [B]).

  frame_indices: [B, k] the source frame of each student frame; input_frames: [B, T] the source
  frame of each frame the student model was given (a learned selection picks among them)."""
  context = {"frame_indices": frame_indices, "student_block_frames": student_block_frames,
             "teacher_block_frames": teacher_block_frames, "input_frames": input_frames}
  return {name: (getattr(weights, term.weight),
                 term.loss(teacher_out, student_out, context, weights))
          for name, term in active_terms(weights).items()}
