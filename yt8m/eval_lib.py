"""Evaluating checkpoints: restore a run's model, score it on a dataset, watch for new ones."""

from __future__ import annotations

import os
import time
import weakref
from typing import Iterator, Sequence

import keras
import tensorflow as tf
from absl import logging

from yt8m import building, losses, metrics, readers
from yt8m import progress as progress_lib
from yt8m import run_config as run_config_lib
from yt8m.models import layers, selector

# No checkpoint to evaluate, or an unusable one (one line naming the path).
EvalError = building.CheckpointError
CheckpointGone = building.CheckpointGone
load_model = building.load_model
load_parallel_teacher = building.load_parallel_teacher


def checkpoint_step(path: str) -> int:
  return int(path.rsplit("-", 1)[-1])


_PREDICT_FNS = weakref.WeakKeyDictionary()
_MODEL_INPUTS = ("features", "features_present", "num_frames")


def inference_outputs(model: keras.Model, inputs: dict, feature_sizes: Sequence[int]) -> dict:
  """The model's outputs (training=False) for a reader batch. A learned selection that scores
  only some features (--selector_features) gets uint8 frames as they are, and only the scored
  columns of every frame and the rows of its picks are dequantized: the same values as
  dequantizing the whole batch first, at a fraction of the memory traffic."""
  present = inputs.get("features_present")
  if (present is not None and isinstance(model, selector.LearnedFrameSelection)
      and model.scores_part):
    quantized = inputs["features"]
    sizes = [feature_sizes[f] for f in model.scored]
    scored = readers.dequantize_frames(model.scored_part(quantized),
                                       tf.gather(present, model.scored, axis=-1), sizes)

    def picked_rows(picked):
      return readers.dequantize_frames(tf.gather(quantized, picked, batch_dims=1),
                                       tf.gather(present, picked, batch_dims=1), feature_sizes)

    return model.select_and_run(scored, picked_rows,
                                layers.clip_num_frames(inputs["num_frames"], quantized))
  inputs = readers.dequantized(inputs, feature_sizes)
  return model(inputs["features"], inputs["num_frames"], training=False)


def make_predict_fn(model: keras.Model, feature_sizes: Sequence[int]):
  """The model's compiled inference function of a reader batch, one per model (traced once,
  then reused); uint8 frames are dequantized inside it (readers.dequantized)."""
  if model not in _PREDICT_FNS:

    @tf.function
    def predict(inputs):
      return inference_outputs(model, inputs, feature_sizes)["predictions"]

    _PREDICT_FNS[model] = predict
  predict = _PREDICT_FNS[model]
  return lambda batch: predict({k: batch[k] for k in _MODEL_INPUTS if k in batch})


def evaluate(model: keras.Model, run: run_config_lib.RunConfig, files: Sequence[str],
             batch_size: int = 1024, top_k: int = 20, step: int | None = None,
             log_every: int = 10, segment_labels: bool = False) -> dict:
  """One deterministic pass: Hit@1, PERR, GAP@top_k, mAP and the mean label loss.

  segment_labels: score the 2019 rated segments instead of videos; as the starter, the
  predictions of unrated classes are zeroed (the loss is not)."""
  reader = run.reader_config(segment_mode="rated" if segment_labels else None,
                             quantized_frames=readers.STEP_DEQUANTIZES)
  loss_fn = losses.build_loss(run.label_loss)
  predict = make_predict_fn(model, reader.feature_sizes)
  evaluation = metrics.EvaluationMetrics(run.num_classes, top_k)
  start = time.perf_counter()
  progress = progress_lib.Progress("eval" if step is None else f"eval of step {step}",
                                   unit="segments" if segment_labels else "videos",
                                   total_bytes=readers.total_bytes(files))
  batches = progress.iterate(readers.iterate_numpy(files, reader, batch_size))
  for index, batch in enumerate(batches):
    predictions = predict(batch)
    loss = loss_fn(predictions=predictions, labels=batch["labels"]).numpy()
    predictions = predictions.numpy()
    if segment_labels:
      predictions *= batch["label_weights"]
    result = evaluation.accumulate(predictions, batch["labels"], loss)
    progress.update(len(predictions), batch["record_bytes"].sum())
    if (index + 1) % log_every == 0:
      logging.info(
          "examples_processed: %d | global_step %s | Batch Hit@1: %.3f | Batch PERR: %.3f | "
          "Batch Loss: %.3f | Examples_per_sec: %.3f", evaluation.num_videos, step,
          result["hit_at_one"], result["perr"], result["loss"],
          evaluation.num_videos / (time.perf_counter() - start))
  logging.info("Done with batched inference. Now calculating global performance metrics.")
  return evaluation.get()


def write_summaries(writer, result: dict, step: int, scope: str = "Eval") -> None:
  """The starter's epoch-level eval tags (scope SegEval for segments), at the checkpoint's
  step."""
  with writer.as_default(step=step):
    tf.summary.scalar(f"Epoch/{scope}_Avg_Hit@1", result["hit_at_one"])
    tf.summary.scalar(f"Epoch/{scope}_Avg_Perr", result["perr"])
    tf.summary.scalar(f"Epoch/{scope}_Avg_Loss", result["loss"])
    tf.summary.scalar(f"Epoch/{scope}_GAP", result["gap"])
    tf.summary.scalar(f"Epoch/{scope}_MAP", result["map"])
  writer.flush()


def _log_result(result: dict, step: int, who: str = "") -> None:
  logging.info(
      "%sepoch/eval number %d | Avg_Hit@1: %.3f | Avg_PERR: %.3f | MAP: %.3f | GAP: %.3f | "
      "Avg_Loss: %.6f | num_classes: %d", who, step, result["hit_at_one"], result["perr"],
      result["map"], result["gap"], result["loss"], result["num_classes_with_positives"])


def new_checkpoints(train_dir: str, run_once: bool, interval_secs: float,
                    timeout_secs: float | None) -> Iterator[str]:
  """The latest checkpoint once, or every new checkpoint as it appears; sleeps between
  looks and stops after timeout_secs without a new one (None: never).

  run_once: the caller stops after the checkpoint it evaluated; if it asks for another, the
  one given was gone, and the newest (if newer) comes next."""
  if run_once:
    latest = tf.train.latest_checkpoint(train_dir)
    if not latest:
      raise EvalError(f"no checkpoint in {train_dir}; has train.py saved one yet?")
    while latest:
      yield latest
      newer = tf.train.latest_checkpoint(train_dir)
      latest = newer if newer != latest else None
    return
  last, idle_since, told = None, time.monotonic(), None
  while True:
    latest = tf.train.latest_checkpoint(train_dir)
    if latest and latest != last:
      last = latest
      yield latest
      idle_since, told = time.monotonic(), None
      continue
    idle = time.monotonic() - idle_since
    if timeout_secs is not None and idle >= timeout_secs:
      logging.info("No new checkpoint in %s for %.0f s; stopping.", train_dir, timeout_secs)
      return
    if told is None or time.monotonic() - told >= WAIT_MESSAGE_SECS:
      told = time.monotonic()
      logging.info("%s", waiting_message(train_dir, last, interval_secs, timeout_secs, idle))
    time.sleep(interval_secs)


WAIT_MESSAGE_SECS = 300  # while waiting for a checkpoint, say so again this often


def waiting_message(train_dir: str, last: str | None, interval_secs: float,
                    timeout_secs: float | None, idle_secs: float) -> str:
  """What watch-mode eval waits for, how often it looks, and when it gives up."""
  what = f"a checkpoint newer than {os.path.basename(last)}" if last else "a first checkpoint"
  message = f"Waiting for {what} in {train_dir} (looking every {interval_secs:g} s; "
  if timeout_secs is None:
    return message + "no time limit: --eval_timeout_secs is negative)"
  give_up = time.strftime("%H:%M:%S", time.localtime(time.time() + timeout_secs - idle_secs))
  return message + (f"giving up at {give_up}, after {timeout_secs:g} s without one: "
                    "--eval_timeout_secs)")


def evaluation_loop(train_dir: str, files: Sequence[str], batch_size: int = 1024,
                    top_k: int = 20, run_once: bool = False, interval_secs: float = 30,
                    timeout_secs: float | None = None,
                    segment_labels: bool = False) -> list[dict]:
  """Evaluates checkpoints of train_dir; TensorBoard events go to train_dir/eval."""
  run = run_config_lib.load(train_dir)
  writer = tf.summary.create_file_writer(os.path.join(train_dir, "eval"))
  results = []
  parallel = bool(run.distillation) and run.distillation.parallel
  for path in new_checkpoints(train_dir, run_once, interval_secs, timeout_secs):
    logging.info("Loading checkpoint for eval: %s", path)
    try:
      _, model, _ = load_model(train_dir, path, run)
      teacher = load_parallel_teacher(run, path) if parallel else None
    except CheckpointGone as e:  # a trainer with --keep_checkpoints has moved on
      logging.warning("%s; going on with the newest one.", e)
      continue
    step = checkpoint_step(path)
    scope = "SegEval" if segment_labels else "Eval"
    result = evaluate(model, run, files, batch_size, top_k, step,
                      segment_labels=segment_labels)
    result["global_step"] = step
    _log_result(result, step)
    write_summaries(writer, result, step, scope)
    if teacher is not None:
      # Side by side: the teacher trained in the same run, on every frame.
      result["teacher"] = evaluate(teacher, run.teacher, files, batch_size, top_k, step,
                                   segment_labels=segment_labels)
      _log_result(result["teacher"], step, "teacher ")
      write_summaries(writer, result["teacher"], step, "Teacher_" + scope)
    results.append(result)
    if run_once:
      break
  return results
