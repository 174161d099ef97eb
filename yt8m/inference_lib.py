"""Predictions for unlabelled videos: Kaggle CSV rows, and the model bundle (.tgz)."""

from __future__ import annotations

import io
import os
import tarfile
import time
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from yt8m import eval_lib, metrics, readers
from yt8m import progress as progress_lib
from yt8m import run_config as run_config_lib


def predict_top_k(model: keras.Model, run: run_config_lib.RunConfig, files: Sequence[str],
                  batch_size: int = 512, top_k: int = 20
                  ) -> Iterator[tuple[str, list[int], list[float]]]:
  """(video_id, classes, confidences) for every video of the files, in file order, the top_k
  classes by descending confidence. Labels are not needed (test files have none)."""
  predict = eval_lib.make_predict_fn(model)
  reader = run.reader_config(require_labels=False)
  count, start = 0, time.perf_counter()
  progress = progress_lib.Progress("inference", total_bytes=readers.total_bytes(files))
  for batch in progress.iterate(readers.iterate_numpy(files, reader, batch_size)):
    predictions = predict(batch["features"], batch["num_frames"]).numpy()
    classes, scores = metrics.top_k_sorted(predictions, top_k)
    for video_id, row_classes, row_scores in zip(batch["video_ids"], classes, scores):
      yield video_id.decode(), row_classes.tolist(), row_scores.tolist()
    count += len(predictions)
    progress.update(len(predictions), batch["record_bytes"].sum())
    elapsed = time.perf_counter() - start
    logging.info("num examples processed: %d elapsed seconds: %.2f examples/sec: %.2f", count,
                 elapsed, count / elapsed)


# The bundle holds model_flags.json, the checkpoint files and a `checkpoint` index, all at the
# archive root, and is read back by --input_model_tgz (the starter's never could be).


def write_model_tgz(train_dir: str, checkpoint_path: str, output_path: str) -> list[str]:
  """Bundles the run's model_flags.json and one checkpoint into a gzip tar."""
  prefix = os.path.basename(checkpoint_path)
  folder = os.path.dirname(checkpoint_path)
  names = [n for n in tf.io.gfile.listdir(folder) if n.startswith(prefix + ".")]
  members = [(run_config_lib.path(train_dir), run_config_lib.MODEL_FLAGS_FILE)]
  members += [(os.path.join(folder, n), n) for n in sorted(names)]
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    for source, name in members:
      with tf.io.gfile.GFile(source, "rb") as f:
        data = f.read()
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
    index = f'model_checkpoint_path: "{prefix}"\n'.encode()
    info = tarfile.TarInfo("checkpoint")
    info.size = len(index)
    tar.addfile(info, io.BytesIO(index))
  temporary = f"{output_path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(temporary, "wb") as f:
    f.write(buffer.getvalue())
  tf.io.gfile.rename(temporary, output_path, overwrite=True)
  return [name for _, name in members] + ["checkpoint"]


def extract_model_tgz(tgz_path: str, untar_dir: str) -> str:
  """Unpacks a bundle into untar_dir and returns it (usable as a train_dir)."""
  if not tf.io.gfile.exists(tgz_path):
    raise FileNotFoundError(f"--input_model_tgz {tgz_path} not found")
  tf.io.gfile.makedirs(untar_dir)
  with tf.io.gfile.GFile(tgz_path, "rb") as f:
    with tarfile.open(fileobj=io.BytesIO(f.read()), mode="r:gz") as tar:
      names = tar.getnames()
      if run_config_lib.MODEL_FLAGS_FILE not in names:
        raise ValueError(f"{tgz_path} has no {run_config_lib.MODEL_FLAGS_FILE}; was it written "
                         "by inference.py --output_model_tgz?")
      tar.extractall(untar_dir, filter="data")  # refuses absolute paths and links
  return untar_dir


# 2019 segment challenge: a row per class, its segments by descending confidence.


def read_class_whitelist(path: str) -> np.ndarray:
  """Class ids of segment_label_ids.csv (header `Index`, one id per line; other non-integer
  lines are skipped, as the starter did)."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"--segment_label_ids_file {path} not found")
  with tf.io.gfile.GFile(path) as f:
    ids = [int(line) for line in (raw.strip() for raw in f) if line.isdigit()]
  if not ids:
    raise ValueError(f"--segment_label_ids_file {path} lists no class ids")
  return np.unique(ids)


def _top_per_class(classes, scores, segments, cap):
  """Keeps each class's `cap` best (score desc, then earlier segment) entries."""
  order = np.lexsort((segments, -scores, classes))
  classes, scores, segments = classes[order], scores[order], segments[order]
  start = np.searchsorted(classes, classes, side="left")
  keep = np.arange(classes.size) - start < cap
  return classes[keep], scores[keep], segments[keep]


def predict_segments(model: keras.Model, run: run_config_lib.RunConfig, files: Sequence[str],
                     whitelist: np.ndarray, batch_size: int = 512, top_k: int = 20,
                     max_per_class: int = 100_000) -> Iterator[tuple[int, list[str]]]:
  """(class, segment ids by descending confidence) for every whitelisted class that has a
  candidate: each 5-frame segment nominates its top_k whitelisted classes, and a class keeps
  its max_per_class most confident segments."""
  if not run.frame_features:
    raise ValueError("segment predictions need a frame-level model (--frame_features)")
  if whitelist.max() >= run.num_classes:
    raise ValueError(f"the class whitelist has id {whitelist.max()} >= num_classes "
                     f"{run.num_classes}")
  allowed = np.full(run.num_classes, -np.inf, np.float32)
  allowed[whitelist] = 0.0  # added to the scores: other classes are never selected
  predict = eval_lib.make_predict_fn(model)
  reader = run.reader_config(require_labels=False, segment_mode="all")
  segment_ids: list[str] = []
  kept = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64))
  pending = []
  progress = progress_lib.Progress("segment inference", unit="segments",
                                   total_bytes=readers.total_bytes(files))
  for batch in progress.iterate(readers.iterate_numpy(files, reader, batch_size)):
    scores = predict(batch["features"], batch["num_frames"]).numpy() + allowed
    progress.update(len(scores), batch["record_bytes"].sum())
    classes, top = metrics.top_k_sorted(scores, top_k)
    rows, cols = np.nonzero(classes >= 0)
    pending.append((classes[rows, cols], top[rows, cols], rows + len(segment_ids)))
    segment_ids.extend(v.decode() for v in batch["video_ids"])
    if sum(p[0].size for p in pending) > 4 * max_per_class * whitelist.size:
      kept = _top_per_class(*(np.concatenate(x) for x in zip(kept, *pending)), max_per_class)
      pending = []
  kept = _top_per_class(*(np.concatenate(x) for x in zip(kept, *pending)), max_per_class)
  logging.info("%d segments, %d class rows", len(segment_ids), np.unique(kept[0]).size)
  classes, _, segments = kept
  bounds = np.flatnonzero(np.diff(classes)) + 1
  for group_classes, group_segments in zip(np.split(classes, bounds), np.split(segments, bounds)):
    if group_classes.size:
      yield int(group_classes[0]), [segment_ids[i] for i in group_segments]
