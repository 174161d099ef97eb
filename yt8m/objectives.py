"""Objectives: the one seam where training modes differ (the loop knows none of them).

An objective says which models a run holds and trains, what the reader must give them, how a
batch becomes a loss and logs, and what goes into the checkpoint:

  Supervised    one model on its label loss: every plain model, the paper's "model with k
                frames" baseline, and a learned frame selection (its Gumbel straight-through
                estimator lives in the model; REINFORCE adds a term here).
  Distillation  a student and its teacher: serial (frozen teacher restored from its own run;
                outputs cached once per video or computed live) or parallel (trained together,
                the teacher on its own label loss), optionally sharing the teacher's head.

The loop calls, in order: build() under strategy.scope(); prepare(files) once the models
exist; after_restore() once weights are loaded; then per step loss(batch) in replica context
and after_update() in cross-replica context.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from yt8m import building, distill, losses, models, readers
from yt8m import run_config as run_config_lib
from yt8m.models import selector

_STEP_KEYS = ("features", "num_frames", "labels")


class Supervised:
  """One model trained on its label loss (weighted by --ce_weight for distilled students)."""

  def __init__(self, run: run_config_lib.RunConfig, regularization_penalty: float = 1.0,
               replicas: int = 1, ce_weight: float = 1.0):
    self.run = run
    self.regularization_penalty = regularization_penalty
    self.replicas = replicas
    self.ce_weight = ce_weight
    self.loss_fn = losses.build_loss(run.label_loss)
    self.model: keras.Model | None = None

  # ------------------------------------------------------------------ what the loop asks

  def build(self) -> None:
    """Creates the models (call inside strategy.scope())."""
    self.model = building.build_model(self.run)

  def prepare(self, files: Sequence[str]) -> None:
    """Work that needs the built models and the training files (none here)."""

  def after_restore(self) -> None:
    """Called once the weights are in place (restored, initialised or fresh)."""

  @tf.autograph.experimental.do_not_convert  # plain Python: nothing to convert
  def after_update(self) -> None:
    """Called after every optimizer step, in cross-replica context."""

  def reader_config(self) -> readers.ReaderConfig:
    return self.run.reader_config(quantized_frames=readers.STEP_DEQUANTIZES)

  def step_inputs(self, batch: dict) -> dict:
    """The reader's batch, reduced to what loss() reads (strings cannot go to devices); uint8
    frames stay so until the step (readers.dequantized)."""
    return {k: batch[k] for k in _STEP_KEYS + ("features_present",) if k in batch}

  @property
  def trainable_variables(self) -> list:
    return self.model.trainable_variables

  def checkpoint_objects(self) -> dict:
    return {"model": self.model}

  def log_names(self) -> tuple[str, ...]:
    """The scalars loss() returns besides label_loss, reg_loss and total_loss."""
    return ("selector_loss",) if self._reinforce else ()

  def loss(self, batch: dict) -> tuple[tf.Tensor, dict, tf.Tensor]:
    """(total loss share of this replica, logs, predictions) for one replica's batch."""
    out = self.model(batch["features"], batch["num_frames"], training=True)
    predictions, per_example, label_loss, reg_share = self.label_and_reg(
        self.model, out, batch["labels"])
    total = self.ce_weight * label_loss + self.regularization_penalty * reg_share
    logs = {"label_loss": label_loss, "reg_loss": reg_share}
    total += self.extra_terms(batch, out, per_example, logs)
    logs["total_loss"] = total
    return total, logs, predictions

  # ------------------------------------------------------------------ for subclasses

  def extra_terms(self, batch: dict, out: dict, label_per_example: tf.Tensor,
                  logs: dict) -> tf.Tensor:
    """Adds the mode's own terms to logs and returns their weighted sum."""
    return self.selector_term(out, self.ce_weight * label_per_example, logs)

  @property
  def _reinforce(self) -> bool:
    hparams = self.run.selector_hparams
    return hparams is not None and hparams.selector_estimator == "reinforce"

  def selector_term(self, out: dict, student_per_example: tf.Tensor, logs: dict) -> tf.Tensor:
    """REINFORCE for a learned frame selection: picks whose student loss beats the batch
    mean become more likely (the mean is the variance-reducing baseline)."""
    if "selection_log_prob" not in out:
      return tf.constant(0.0)
    advantage = tf.stop_gradient(student_per_example - tf.reduce_mean(student_per_example))
    logs["selector_loss"] = tf.nn.compute_average_loss(advantage * out["selection_log_prob"])
    return logs["selector_loss"]

  def label_and_reg(self, net: keras.Model, out: dict, labels: tf.Tensor):
    """(predictions, per-example label loss, this replica's mean label loss, its share of
    the regularisation penalty)."""
    predictions = tf.cast(out["predictions"], tf.float32)
    # Mean over the global batch as it is (a final batch may be smaller): each replica's
    # share, so that summing over replicas gives the mean.
    per_example = self.loss_fn(predictions=predictions, labels=labels)
    label_loss = tf.nn.compute_average_loss(per_example)
    reg_loss = tf.add_n(net.losses) if net.losses else tf.constant(0.0)
    # Every replica holds the same weights: each adds its share of the penalty so that the
    # summed gradient carries it exactly once.
    return predictions, per_example, label_loss, tf.cast(reg_loss, tf.float32) / self.replicas


class TeacherCache:
  """A frozen teacher's outputs for every training video, computed once (serial runs).

  The teacher runs in inference mode, so its outputs for a video never change: one pass
  replaces a teacher forward over all frames at every step, and the student's reader decodes
  only its k frames. Looked up by video id in the input pipeline. It keeps only the outputs
  the run's matching terms read (`keys`): at millions of videos a [N, 300] frame-weight
  column nobody reads would cost gigabytes of host memory.
  """

  def __init__(self, teacher: keras.Model, teacher_run: run_config_lib.RunConfig,
               files: Sequence[str], keys: Sequence[str], batch_size: int = 256):
    predict = tf.function(lambda f, n: teacher(f, n, training=False))
    ids, columns = [], {}
    for batch in readers.iterate_numpy(files, teacher_run.reader_config(), batch_size):
      out = predict(batch["features"], batch["num_frames"])
      ids.extend(batch["video_ids"].tolist())
      for key in keys:  # what the run's terms read (distill.Term.teacher_outputs), no more
        if key in out:
          columns.setdefault(key, []).append(tf.cast(out[key], tf.float32).numpy())
    if len(set(ids)) != len(ids):
      raise ValueError("the training data repeats video ids; the teacher cache needs unique "
                       "ids (pass --nocache_teacher_outputs)")
    self.num_videos = len(ids)
    self.index = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids),
                                                                        dtype=tf.int64)), -1)
    # Host-side variables: the input pipeline captures them by reference (no huge constants).
    with tf.device("/cpu:0"):
      self.values = {key: tf.Variable(np.concatenate(parts), trainable=False)
                     for key, parts in columns.items()}

  def lookup(self, video_ids: tf.Tensor) -> dict:
    rows = self.index.lookup(video_ids)
    return {f"teacher_{key}": tf.gather(value, rows) for key, value in self.values.items()}


# The last frozen teacher's outputs, kept for the next run of the same process that asks for
# them (the study trains every student epoch by epoch, one train() call each, from one
# teacher): the key names the checkpoint (and when it was written), the teacher and the files.
_TEACHER_CACHES: dict = {}


def _teacher_cache(teacher: keras.Model, teacher_run: run_config_lib.RunConfig,
                   checkpoint: str, files: Sequence[str], keys: Sequence[str]) -> TeacherCache:
  key = (checkpoint, tf.io.gfile.stat(checkpoint + ".index").mtime_nsec,
         json.dumps(teacher_run.to_json(), sort_keys=True), tuple(files), tuple(keys))
  if key in _TEACHER_CACHES:
    logging.info("Reusing the frozen teacher's outputs cached for %s.", checkpoint)
    return _TEACHER_CACHES[key]
  _TEACHER_CACHES.clear()
  start = time.perf_counter()
  cache = _TEACHER_CACHES[key] = TeacherCache(teacher, teacher_run, files, keys)
  logging.info("Cached the frozen teacher's outputs for %d videos in %.1f s.",
               cache.num_videos, time.perf_counter() - start)
  return cache


class Distillation(Supervised):
  """A student on k frames learning from a teacher on all frames (Bhardwaj et al.)."""

  def __init__(self, run: run_config_lib.RunConfig, regularization_penalty: float = 1.0,
               replicas: int = 1, cache_teacher: bool = True):
    self.setup = run.distillation
    super().__init__(run, regularization_penalty, replicas, self.setup.weights.ce_weight)
    self.weights = self.setup.weights
    self.parallel = self.setup.parallel
    self.cached = not self.parallel and cache_teacher
    self.teacher: keras.Model | None = None
    self.cache: TeacherCache | None = None
    self._head_pairs: list = []

  def build(self) -> None:
    super().build()
    self.teacher = building.build_model(self.run.teacher)
    if not self.parallel:
      self.teacher.trainable = False  # serial: frozen; student terms see it via stop_gradient
    if self.weights.rep_weight:
      sizes = [building.dummy_outputs(m, r)["representation"].shape[-1]
               for m, r in ((self.teacher, self.run.teacher), (self.model, self.run))]
      if sizes[0] != sizes[1]:
        raise ValueError(f"--rep_weight: the teacher's representation has {sizes[0]} values, "
                         f"the student's {sizes[1]}; L_rep needs one family and size")
    if self.setup.share_head:
      heads = [getattr(m, "classifier", None) for m in (self.teacher, self.model)]
      if any(h is None for h in heads) or [w.shape for w in heads[0].weights] != [
          w.shape for w in heads[1].weights]:
        raise ValueError("--share_teacher_head needs teacher and student of one family and "
                         "size (the same classifier on the same representation)")
      self.model.classifier.trainable = False  # it mirrors the teacher's (after_update)
      self._head_pairs = list(zip(self.model.classifier.weights,
                                  self.teacher.classifier.weights, strict=True))

  def prepare(self, files: Sequence[str]) -> None:
    if self.parallel:
      return
    logging.info("Teacher (frozen): %s", self.setup.teacher_checkpoint)
    building.restore(self.setup.teacher_checkpoint, model=self.teacher)
    if self.cached:
      self.cache = _teacher_cache(self.teacher, self.run.teacher,
                                  self.setup.teacher_checkpoint, files,
                                  distill.teacher_outputs_needed(self.weights))

  def after_restore(self) -> None:
    self.mirror_head()

  @tf.autograph.experimental.do_not_convert
  def after_update(self) -> None:
    if self.parallel:
      self.mirror_head()  # after the update, in cross-replica context: every replica's copy

  def mirror_head(self) -> None:
    """The paper's shared output layer: the student classifies with the teacher's head."""
    for student_weight, teacher_weight in self._head_pairs:
      student_weight.assign(teacher_weight)

  def reader_config(self) -> readers.ReaderConfig:
    reader = super().reader_config()
    if not self.cached and reader.selects_in_reader:
      reader = dataclasses.replace(reader, teacher_frames=True)  # a live teacher sees all
    return reader

  def step_inputs(self, batch: dict) -> dict:
    inputs = super().step_inputs(batch)
    if "frame_indices" in batch:
      inputs["frame_indices"] = batch["frame_indices"]
    if self.cache is not None:
      return {**inputs, **self.cache.lookup(batch["video_ids"])}
    for key in ("teacher_features", "teacher_features_present", "teacher_num_frames"):
      if key in batch:
        inputs[key] = batch[key]
    return inputs

  @property
  def trainable_variables(self) -> list:
    # Parallel: one optimizer over both; the teacher's gradient comes from its own label loss
    # only, because the student's terms see the teacher through tf.stop_gradient.
    extra = self.teacher.trainable_variables if self.parallel else []
    return self.model.trainable_variables + extra

  def checkpoint_objects(self) -> dict:
    return {"model": self.model, **({"teacher": self.teacher} if self.parallel else {})}

  def log_names(self) -> tuple[str, ...]:
    names = tuple(distill.active_terms(self.weights))
    return names + (("teacher/label_loss",) if self.parallel else ()) + super().log_names()

  def teacher_outputs(self, batch: dict) -> dict:
    if self.cache is not None:
      return {k: batch[f"teacher_{k}"] for k in self.cache.values}
    if "teacher_features" in batch:
      return self.teacher(batch["teacher_features"], batch["teacher_num_frames"],
                          training=self.parallel)
    # A learned selection reads every frame anyway.
    return self.teacher(batch["features"], batch["num_frames"], training=self.parallel)

  def extra_terms(self, batch: dict, out: dict, label_per_example: tf.Tensor,
                  logs: dict) -> tf.Tensor:
    teacher_out = self.teacher_outputs(batch)
    # A learned selection reports the frames it picked among its input frames, the reader's
    # (every frame, or a candidate grid); otherwise the reader's frames are the student's.
    frame_indices = batch.get("frame_indices")
    if "frame_indices" in out:
      frame_indices = (out["frame_indices"] if frame_indices is None else
                       selector.source_frames(frame_indices, out["frame_indices"]))
    terms = distill.student_terms(teacher_out, out, frame_indices, self.weights,
                                  models.block_frames(self.model),
                                  models.block_frames(self.teacher),
                                  input_frames=batch.get("frame_indices"))
    total = tf.constant(0.0)
    student_per_example = self.ce_weight * label_per_example
    for name, (weight, per_example) in terms.items():
      logs[name] = tf.nn.compute_average_loss(per_example)
      total += weight * logs[name]
      student_per_example += weight * per_example
    if self.parallel:
      _, _, teacher_label, teacher_reg = self.label_and_reg(self.teacher, teacher_out,
                                                            batch["labels"])
      total += teacher_label + self.regularization_penalty * teacher_reg
      logs["teacher/label_loss"] = teacher_label
    return total + self.selector_term(out, student_per_example, logs)


def make_objective(run: run_config_lib.RunConfig, regularization_penalty: float = 1.0,
                   replicas: int = 1, cache_teacher: bool = True) -> Supervised:
  """The objective of a run: distillation when it has a teacher, else supervised."""
  if run.distillation:
    return Distillation(run, regularization_penalty, replicas, cache_teacher)
  return Supervised(run, regularization_penalty, replicas)
