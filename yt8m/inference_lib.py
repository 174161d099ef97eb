"""Predictions for unlabelled videos: Kaggle CSV rows, and the model bundle (.tgz)."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from yt8m import eval_lib, metrics, outputs, readers, submission
from yt8m import progress as progress_lib
from yt8m import run_config as run_config_lib


def predict_top_k(model: keras.Model, run: run_config_lib.RunConfig, files: Sequence[str],
                  batch_size: int = 512, top_k: int = 20
                  ) -> Iterator[tuple[str, list[int], list[float]]]:
  """(video_id, classes, confidences) for every video of the files, in file order, the top_k
  classes by descending confidence. Labels are not needed (test files have none)."""
  reader = run.reader_config(require_labels=False, quantized_frames=readers.STEP_DEQUANTIZES)
  predict = eval_lib.make_predict_fn(model, reader.feature_sizes)
  count, start = 0, time.perf_counter()
  progress = progress_lib.Progress("inference", total_bytes=readers.total_bytes(files))
  for batch in progress.iterate(readers.iterate_numpy(files, reader, batch_size)):
    predictions = predict(batch).numpy()
    classes, scores = metrics.top_k_sorted(predictions, top_k)
    for video_id, row_classes, row_scores in zip(batch["video_ids"], classes, scores, strict=True):
      yield video_id.decode(), row_classes.tolist(), row_scores.tolist()
    count += len(predictions)
    progress.update(len(predictions), batch["record_bytes"].sum())
    elapsed = time.perf_counter() - start
    logging.info("num examples processed: %d elapsed seconds: %.2f examples/sec: %.2f", count,
                 elapsed, count / elapsed)


# The bundle holds model_flags.json (always its first member: that is how an earlier bundle
# is recognised before it is replaced), the checkpoint files and a `checkpoint` index, all at
# the archive root, and is read back by --input_model_tgz (the starter's never could be).

# A bundle is one checkpoint and its flags: a few hundred MB at most. Anything far beyond is
# not a bundle (or is a decompression bomb), so extraction stops there.
MAX_BUNDLE_BYTES = 4 * 2**30
MAX_BUNDLE_MEMBERS = 1000


class BundleError(ValueError):
  """A model bundle (.tgz) is missing, unreadable, incomplete or refused; the message names
  the bundle and, where one is to blame, the member."""


def is_model_bundle(path: str) -> bool:
  """Whether path is a gzip tar whose first member is model_flags.json (a yt8m bundle)."""
  try:
    with tf.io.gfile.GFile(path, "rb") as f, tarfile.open(fileobj=f, mode="r|gz") as tar:
      first = tar.next()
  except (tarfile.TarError, OSError, EOFError, zlib.error, tf.errors.OpError):
    return False
  return first is not None and first.name == run_config_lib.MODEL_FLAGS_FILE


def check_outputs(output_file: str, output_model_tgz: str, segment_labels: bool) -> None:
  """Refuses the outputs atomic_output would refuse, before any work is done."""
  if output_file:
    outputs.check_output(output_file, submission.SEGMENT_HEADER if segment_labels
                         else submission.HEADER)
  if output_model_tgz:
    outputs.check_output(output_model_tgz, is_model_bundle)


def _checkpoint_files(checkpoint_path: str) -> list[str]:
  """The index and every data shard of a checkpoint; an error naming what is missing."""
  folder, prefix = os.path.split(checkpoint_path)
  names = sorted(n for n in tf.io.gfile.listdir(folder) if n.startswith(prefix + "."))
  shards = [re.fullmatch(re.escape(prefix) + r"\.data-(\d+)-of-(\d+)", n) for n in names]
  shards = [m for m in shards if m]
  expected = int(shards[0].group(2)) if shards else 1
  if prefix + ".index" not in names or len(shards) != expected:
    raise BundleError(f"checkpoint {checkpoint_path} is incomplete (it needs {prefix}.index and "
                      f"{expected} data file(s); found {', '.join(names) or 'nothing'})")
  return [prefix + ".index"] + [m.group(0) for m in shards]


def write_model_tgz(train_dir: str, checkpoint_path: str, output_path: str) -> list[str]:
  """Bundles the run's model_flags.json and one checkpoint into a gzip tar, atomically; an
  existing output_path is replaced only if it is an earlier bundle."""
  prefix = os.path.basename(checkpoint_path)
  folder = os.path.dirname(checkpoint_path)
  members = [(run_config_lib.path(train_dir), run_config_lib.MODEL_FLAGS_FILE)]
  members += [(os.path.join(folder, n), n) for n in _checkpoint_files(checkpoint_path)]
  index = f'model_checkpoint_path: "{prefix}"\n'.encode()
  with outputs.atomic_output(output_path, signature=is_model_bundle, binary=True) as f:
    with tarfile.open(fileobj=f, mode="w|gz") as tar:
      for source, name in members:
        info = tarfile.TarInfo(name)
        info.size = tf.io.gfile.stat(source).length
        with tf.io.gfile.GFile(source, "rb") as data:
          tar.addfile(info, data)
      info = tarfile.TarInfo("checkpoint")
      info.size = len(index)
      tar.addfile(info, io.BytesIO(index))
  return [name for _, name in members] + ["checkpoint"]


def _extract_members(tgz_path: str, f, target: str, max_bytes: int, max_members: int) -> None:
  """Streams the bundle's members into target, refusing anything but plain files at its
  root and stopping at the caps (checked from each header, before the member is written)."""
  total = 0
  with tarfile.open(fileobj=f, mode="r|gz") as tar:
    for count, member in enumerate(tar, start=1):
      if count > max_members:
        raise BundleError(f"{tgz_path} has more than {max_members} members; a model bundle "
                          "has a few (refused)")
      total += member.size
      if total > max_bytes:
        limit = f"{max_bytes / 2**20:.0f} MiB" if max_bytes >= 2**20 else f"{max_bytes} bytes"
        raise BundleError(f"{tgz_path} unpacks to more than {limit}; a model bundle is one "
                          "checkpoint (refused)")
      if not member.isreg() or member.issparse() or os.path.basename(member.name) != member.name:
        raise BundleError(f"{tgz_path}: member {member.name!r} is not a plain file at the "
                          "archive root, as a bundle's are (refused)")
      try:
        tar.extract(member, target, filter="data")
      except tarfile.FilterError as e:
        raise BundleError(f"{tgz_path}: member {member.name!r} refused: {e}") from None


def extract_model_tgz(tgz_path: str, untar_dir: str = "", max_bytes: int = MAX_BUNDLE_BYTES,
                      max_members: int = MAX_BUNDLE_MEMBERS) -> str:
  """Unpacks a bundle into a fresh directory and returns it (usable as a train_dir): a new
  subdirectory of untar_dir (kept), or without untar_dir a private temporary directory that
  is removed when the process exits. Never reuses an earlier extraction, so files of another
  bundle cannot be picked up. On any refusal the fresh directory is removed."""
  try:
    if not tf.io.gfile.exists(tgz_path):
      raise BundleError(f"--input_model_tgz {tgz_path} not found")
    if "://" in untar_dir:
      raise BundleError(f"--untar_model_dir {untar_dir} must be a local directory")
    if untar_dir:
      os.makedirs(untar_dir, exist_ok=True)
    stem = os.path.basename(tgz_path).split(".")[0] or "bundle"
    target = tempfile.mkdtemp(prefix=f"yt8m-model-{stem}-", dir=untar_dir or None)
    outputs.remove_at_exit(target)  # until complete, and always if it is in the temp dir
  except (tf.errors.OpError, OSError) as e:
    raise BundleError(f"--input_model_tgz: {outputs.describe_io_error(tgz_path, e)}") from None
  try:
    with tf.io.gfile.GFile(tgz_path, "rb") as f:
      _extract_members(tgz_path, f, target, max_bytes, max_members)
    for name in (run_config_lib.MODEL_FLAGS_FILE, "checkpoint"):
      if not os.path.exists(os.path.join(target, name)):
        raise BundleError(f"{tgz_path} has no {name}; was it written by inference.py "
                          "--output_model_tgz?")
    named = tf.train.latest_checkpoint(target)
    if not named or os.path.dirname(os.path.abspath(named)) != os.path.abspath(target):
      raise BundleError(f"{tgz_path}: its `checkpoint` index names a checkpoint the bundle "
                        f"does not hold ({named or 'none found'})")
  except (tarfile.TarError, EOFError, zlib.error, tf.errors.OpError, OSError) as e:
    shutil.rmtree(target, ignore_errors=True)
    raise BundleError(f"cannot extract {tgz_path}: {outputs.error_detail(e)}") from None
  except BaseException:
    shutil.rmtree(target, ignore_errors=True)
    raise
  if untar_dir:
    outputs.keep(target)
  logging.info("extracted %s into %s", tgz_path, target)
  return target


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
  reader = run.reader_config(require_labels=False, segment_mode="all")
  predict = eval_lib.make_predict_fn(model, reader.feature_sizes)
  segment_ids: list[str] = []
  kept = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64))
  pending = []
  progress = progress_lib.Progress("segment inference", unit="segments",
                                   total_bytes=readers.total_bytes(files))
  for batch in progress.iterate(readers.iterate_numpy(files, reader, batch_size)):
    scores = predict(batch).numpy() + allowed
    progress.update(len(scores), batch["record_bytes"].sum())
    classes, top = metrics.top_k_sorted(scores, top_k)
    rows, cols = np.nonzero(classes >= 0)
    pending.append((classes[rows, cols], top[rows, cols], rows + len(segment_ids)))
    segment_ids.extend(v.decode() for v in batch["video_ids"])
    if sum(p[0].size for p in pending) > 4 * max_per_class * whitelist.size:
      kept = _top_per_class(*(np.concatenate(x) for x in zip(kept, *pending, strict=True)),
                            max_per_class)
      pending = []
  kept = _top_per_class(*(np.concatenate(x) for x in zip(kept, *pending, strict=True)),
                        max_per_class)
  logging.info("%d segments, %d class rows", len(segment_ids), np.unique(kept[0]).size)
  classes, _, segments = kept
  bounds = np.flatnonzero(np.diff(classes)) + 1
  for group_classes, group_segments in zip(np.split(classes, bounds), np.split(segments, bounds),
                                           strict=True):
    if group_classes.size:
      yield int(group_classes[0]), [segment_ids[i] for i in group_segments]
