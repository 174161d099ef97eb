"""tf.data readers for YouTube-8M TFRecords: the only code that knows the file format.

Video-level files hold one `tf.train.Example` per video (`id` or 2017's `video_id`, `labels`,
`mean_rgb` [1024 floats], `mean_audio` [128 floats]). Frame-level files hold one
`tf.train.SequenceExample` per video (context `id`/`video_id`, `labels`; feature lists `rgb` and
`audio`, one byte string of uint8 values per frame, 1 frame per second, up to 300 frames).

A batch is a dict:
  video_ids      [B] string
  features       [B, D] (video-level) or [B, T, D] (frame-level) float32, dequantized, raw
                 (not L2-normalised: models do that, yt8m.models.layers.l2_normalize_frames);
                 with ReaderConfig.quantized_frames (the loops' reader) frame-level features
                 stay uint8, with features_present [B, T, F] bool, until `dequantized` in the
                 step
  num_frames     [B] int32: real frames per row (1 for video-level)
  labels         [B, num_classes] float32 multi-hot (all zero for unlabelled test files)
  frame_indices  [B, T] int32 (frame-level only): which original frame each row holds, -1 = pad

Frame-level readers take an optional student frame budget k: the frames are chosen
(`yt8m.frame_selection`) from the undecoded byte strings, and only those k are decoded,
dequantized and padded, so the cost of decoding scales with k, not with 300.

Bad records stop the run with a `DataError` naming the file, the record index and the video id.
Before reading, every file is checked once (its size, its first record header and record):
directories, non-TFRecord files, a mix of the 2017 (`video_id`) and 2018+ (`id`) datasets and
features the records do not have are refused up front; while reading, a file whose records do
not end exactly at its last byte (cut anywhere, even inside a record header) is an error.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import re
import struct
from typing import Iterator, Sequence

import tensorflow as tf
from absl import logging

from yt8m import frame_batches, frame_selection

# Dequantization of the uint8 frame features, exactly as the starter code (utils.Dequantize
# with max_quantized_value=2, min_quantized_value=-2): the bias uses /512, not /510.
MIN_QUANTIZED_VALUE = -2.0
MAX_QUANTIZED_VALUE = 2.0
_QUANTIZED_RANGE = MAX_QUANTIZED_VALUE - MIN_QUANTIZED_VALUE
DEQUANTIZE_SCALE = _QUANTIZED_RANGE / 255.0
DEQUANTIZE_BIAS = _QUANTIZED_RANGE / 512.0 + MIN_QUANTIZED_VALUE

SEGMENT_SIZE = 5  # frames (seconds) per 2019 segment
NUM_CLASSES_2018 = 3862  # 2018+ vocabulary (default)
NUM_CLASSES_2017 = 4716

# The training, evaluation and inference loops read frame-level batches with
# ReaderConfig.quantized_frames and dequantize in their compiled step (README, "Reader speed").
STEP_DEQUANTIZES = True

_ERROR_MARK = "YT8M_DATA_ERROR"
_ERROR_END = "<<"
# A batch parsed at once holds a bad record: data_errors reads its files record by record.
RECHECK_MARK = "YT8M_RECHECK_FILES"


class DataError(ValueError):
  """An input file or record is unusable; the message names the file and record."""


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
  """What to read. Field names are the command-line flag names."""
  feature_names: tuple[str, ...] = ("rgb", "audio")
  feature_sizes: tuple[int, ...] = (1024, 128)
  frame_features: bool = True
  num_classes: int = NUM_CLASSES_2018
  max_frames: int = 300
  student_frames: int | None = None  # k; None = every frame (teacher)
  frame_selection: str = "uniform"
  # Training a uniform student: draw each frame within its stretch (frame_selection.py).
  uniform_jitter: bool = False
  require_labels: bool = True  # False for inference on unlabelled test files
  # 2019 segments: "rated" = one row per rated start time with the segment scores as labels
  # (evaluation, as the starter's segment reader); "all" = every consecutive 5-frame segment
  # (inference). Rows are segments, ids "<video>:<start>".
  segment_mode: str | None = None
  # Distillation: also hand over every frame of the same videos, for the teacher
  # (teacher_features [max_frames, D], teacher_num_frames).
  teacher_frames: bool = False
  # Read files of the 2017 (`video_id`, 4716 classes) and 2018+ (`id`, 3862 classes) datasets
  # together; off, such a mix is refused (their label ids index different vocabularies).
  allow_mixed_id_keys: bool = False
  # Not a flag: the loops set it. Frame-level batches parsed at once keep their every-frame
  # rows uint8 ("features" [B, max_frames, D] uint8 and "features_present" [B, max_frames, F]
  # bool, unless the reader picks a student's k frames; the same for "teacher_features"), a
  # quarter of the bytes, for the step to dequantize on its device (`dequantized`). The
  # record-by-record path (2019 segments) dequantizes as always.
  quantized_frames: bool = False

  def __post_init__(self):
    if not self.feature_names and self.frame_features:
      raise ValueError("feature_names is empty")
    if len(self.feature_names) != len(self.feature_sizes):
      raise ValueError(f"feature_names has {len(self.feature_names)} entries "
                       f"({','.join(self.feature_names)}) but feature_sizes has "
                       f"{len(self.feature_sizes)} ({','.join(map(str, self.feature_sizes))})")
    if any(size <= 0 for size in self.feature_sizes):
      raise ValueError(f"feature_sizes must be positive, got {self.feature_sizes}")
    if self.num_classes <= 0:
      raise ValueError(f"num_classes must be positive, got {self.num_classes}")
    if self.max_frames <= 0:
      raise ValueError(f"max_frames must be positive, got {self.max_frames}")
    if self.student_frames is not None:
      if not self.frame_features:
        raise ValueError("student_frames needs frame-level data (frame_features)")
      if not 1 <= self.student_frames <= self.max_frames:
        raise ValueError(f"student_frames must be in [1, {self.max_frames}], "
                         f"got {self.student_frames}")
    frame_selection.check_strategy(self.frame_selection, frame_selection.SELECTIONS)
    if self.uniform_jitter and self.selects_in_reader and self.frame_selection != "uniform":
      raise ValueError(f"uniform_jitter jitters the uniform selection, not "
                       f"{self.frame_selection!r}")
    if self.segment_mode not in (None, "rated", "all"):
      raise ValueError(f"segment_mode must be None, 'rated' or 'all', got {self.segment_mode!r}")
    if self.teacher_frames and not self.selects_in_reader:
      raise ValueError("teacher_frames needs student_frames with a reader-side selection (a "
                       "student's k frames; a learned selection already gets every frame)")
    if self.segment_mode and (not self.frame_features or self.student_frames):
      raise ValueError("--segment_labels needs frame-level data and a model that sees every "
                       "frame (a segment is 5 frames)")

  @property
  def feature_dim(self) -> int:
    return sum(self.feature_sizes)

  @property
  def selects_in_reader(self) -> bool:
    """A student whose k frames the reader picks (a learned selection picks in the model, from
    every frame)."""
    return bool(self.student_frames) and self.frame_selection != frame_selection.LEARNED

  def draws_frames(self, training: bool) -> bool:
    """The selection is drawn per video (seeded), not a fixed function of its length."""
    # __post_init__ allows uniform_jitter only with a uniform selection.
    return self.selects_in_reader and (self.frame_selection == "random" or (
        training and self.uniform_jitter))

  @property
  def num_output_frames(self) -> int:
    """T, the padded frame axis of a frame-level batch."""
    if self.segment_mode:
      return SEGMENT_SIZE
    return self.student_frames if self.selects_in_reader else self.max_frames


def parse_feature_flags(names: str, sizes: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """Splits the starter's comma-separated --feature_names / --feature_sizes."""
  name_list = tuple(n.strip() for n in names.split(",") if n.strip())
  try:
    size_list = tuple(int(s) for s in sizes.split(",") if s.strip())
  except ValueError:
    raise ValueError(f"--feature_sizes must be comma-separated integers, got {sizes!r}") from None
  return name_list, size_list


def list_files(pattern: str) -> list[str]:
  """Files matching a glob (or several, comma-separated), each once; gs:// works through
  tf.io.gfile. A file matched again by a later pattern is dropped, and the log says so."""
  patterns = [p.strip() for p in pattern.split(",") if p.strip()]
  if not patterns:
    raise DataError("the data pattern is empty")
  files, seen = [], set()
  for p in patterns:
    matched = sorted(tf.io.gfile.glob(p))
    if not matched:
      if any(c in p for c in "*?["):
        raise DataError(f"no files match {p!r}")
      raise DataError(f"file not found: {p!r}")
    new = [f for f in matched if _same_file_key(f) not in seen]
    if len(new) < len(matched):
      logging.warning("data pattern %r matches %d file(s) already matched by an earlier "
                      "pattern (e.g. %s); each file is read once", p, len(matched) - len(new),
                      next(f for f in matched if f not in new))
    seen.update(_same_file_key(f) for f in new)
    files.extend(new)
  return files


def _same_file_key(path: str) -> str:
  return path if "://" in path else os.path.realpath(path)


# TFRecord framing: uint64 length, masked crc32c of the length, data, masked crc32c of the data.
_HEADER_BYTES = 12
_FRAMING_BYTES = 16


@functools.cache
def _crc32c_table() -> tuple[int, ...]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return tuple(table)


def _masked_crc32c(data: bytes) -> int:
  table, crc = _crc32c_table(), 0xFFFFFFFF
  for byte in data:
    crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class _FileInfo:
  """What the first record of a file says about the whole file (one dataset per file)."""
  size: int
  video_id: str = ""
  id_key: str | None = None  # None: an empty file
  context_keys: tuple[str, ...] = ()
  feature_list_keys: tuple[str, ...] = ()


def _not_tfrecord(path, why):
  return DataError(f"{path}: not a TFRecord file ({why}); narrow the data pattern to the "
                   "TFRecord shards")


@functools.lru_cache(maxsize=65536)
def _inspect_cached(path: str, size: int, mtime: int) -> _FileInfo:
  del mtime  # part of the cache key only: a rewritten file is inspected again
  if size == 0:
    return _FileInfo(size)
  with tf.io.gfile.GFile(path, "rb") as f:
    header = f.read(_HEADER_BYTES)
    if len(header) < _HEADER_BYTES:
      raise _not_tfrecord(path, f"{size} bytes, shorter than a record header")
    length, crc = struct.unpack("<QI", header)
    if crc != _masked_crc32c(header[:8]):
      raise _not_tfrecord(path, f"its first bytes {header[:8]!r} are not a record header")
    if _HEADER_BYTES + length + 4 > size:
      raise DataError(f"{path}: record 0: truncated (the file has {size} bytes, the record "
                      f"needs {length + _FRAMING_BYTES}); the file is damaged, copy or download "
                      "it again")
    record = f.read(length)
    data_crc = f.read(4)
  try:
    # An Example parses as a SequenceExample whose context is its features.
    parsed = tf.train.SequenceExample.FromString(record)
  except Exception:  # protobuf raises its own DecodeError type
    # The checksum only now: it costs Python time per byte.
    if struct.unpack("<I", data_crc)[0] != _masked_crc32c(record):
      raise DataError(f"{path}: record 0: corrupted (checksum mismatch); the file is damaged, "
                      "copy or download it again") from None
    raise DataError(f"{path}: record 0: not a valid Example or SequenceExample protocol "
                    "buffer") from None
  context = parsed.context.feature  # `in` only: indexing a proto map would add the key
  id_key = next((k for k in ("id", "video_id") if k in context and
                 context[k].bytes_list.value), "")
  video_id = context[id_key].bytes_list.value[0].decode("utf-8", "replace") if id_key else ""
  return _FileInfo(size, video_id, id_key, tuple(sorted(context)),
                   tuple(sorted(parsed.feature_lists.feature_list)))


def _inspect(path: str) -> _FileInfo:
  try:
    stat = tf.io.gfile.stat(path)
  except tf.errors.NotFoundError:
    raise DataError(f"file not found: {path!r}") from None
  if stat.is_directory:
    raise DataError(f"{path}: is a directory, not a TFRecord file; narrow the data pattern to "
                    "the TFRecord shards")
  return _inspect_cached(path, stat.length, stat.mtime_nsec)


def _check_files(files: Sequence[str], config: ReaderConfig) -> list[int]:
  """Checks every file against the config from its size and first record; returns the sizes.
  Python per file, not per record."""
  with concurrent.futures.ThreadPoolExecutor(min(16, len(files))) as pool:
    infos = list(pool.map(_inspect, files))
  for path, info in zip(files, infos, strict=True):
    if info.id_key is None:
      logging.warning("%s: 0 records (an empty file)", path)
      continue
    where = f"{path}: record 0 (video {info.video_id!r})"
    has = info.feature_list_keys if config.frame_features else info.context_keys
    absent = [name for name in config.feature_names if name not in has]
    if absent:
      if config.frame_features:
        found = (f"its frame feature lists are {', '.join(info.feature_list_keys)}"
                 if info.feature_list_keys else
                 f"it has no frame feature lists, only features {', '.join(info.context_keys)}; "
                 "if this is video-level data, drop --frame_features")
      else:
        found = f"its features are {', '.join(info.context_keys)}"
        if info.feature_list_keys:
          found += (f", and frame feature lists {', '.join(info.feature_list_keys)}; if "
                    "this is frame-level data, pass --frame_features")
      raise DataError(f"{where}: no feature {absent[0]!r} (--feature_names); {found}")
  by_key = {}
  for path, info in zip(files, infos, strict=True):
    if info.id_key:
      by_key.setdefault(info.id_key, []).append(path)
  if len(by_key) > 1 and not config.allow_mixed_id_keys:
    raise DataError(
        "the files mix two datasets whose label ids index different vocabularies: "
        f"{len(by_key['video_id'])} 2017 file(s) (key 'video_id', 4716 classes; e.g. "
        f"{by_key['video_id'][0]}) and {len(by_key['id'])} 2018+ file(s) (key 'id', 3862 "
        f"classes; e.g. {by_key['id'][0]}); read one dataset at a time "
        "(--allow_mixed_datasets reads both)")
  if "video_id" in by_key and "id" not in by_key and config.num_classes != NUM_CLASSES_2017:
    logging.warning("%s uses the 2017 key 'video_id' (the 2017 dataset has %d classes) but "
                    "num_classes is %d", by_key["video_id"][0], NUM_CLASSES_2017,
                    config.num_classes)
  return [info.size for info in infos]


TFRECORD_FRAMING_BYTES = _HEADER_BYTES + 4  # and the data's crc32c: a record's size in its file


def total_bytes(files: Sequence[str]) -> int:
  """The files' total size (a pass's progress is the bytes read of it)."""
  return sum(tf.io.gfile.stat(path).length for path in files)


def dequantize(quantized: tf.Tensor) -> tf.Tensor:
  """uint8 feature values -> float32 in about [-2, 2]."""
  return tf.cast(quantized, tf.float32) * DEQUANTIZE_SCALE + DEQUANTIZE_BIAS


def dequantize_frames(quantized: tf.Tensor, present: tf.Tensor,
                      feature_sizes: Sequence[int]) -> tf.Tensor:
  """[..., T, D] uint8 frames of F features (D = sum(feature_sizes)) -> float32: `dequantize`
  where present[..., t, f] holds for the feature f of the column, +0 elsewhere. The uint8
  values must be 0 wherever present is False (the readers write them so)."""

  def one_pass():
    # Every feature of a row present or none: the absent rows are zeros, and one pass gives
    # x * scale + bias on the present ones and 0 * scale + 0 * bias = +0 on the others.
    return (tf.cast(quantized, tf.float32) * DEQUANTIZE_SCALE +
            tf.cast(present[..., :1], tf.float32) * DEQUANTIZE_BIAS)

  def per_feature():  # features of different lengths (rows past a shorter one are +0)
    parts = tf.split(quantized, list(feature_sizes), axis=-1)
    return tf.concat([tf.where(present[..., f, None], dequantize(part), 0.0)
                      for f, part in enumerate(parts)], axis=-1)

  if len(feature_sizes) == 1:
    return one_pass()
  return tf.cond(tf.reduce_all(present == present[..., :1]), one_pass, per_feature)


def dequantized(batch: dict, feature_sizes: Sequence[int]) -> dict:
  """The batch with its uint8 frames (ReaderConfig.quantized_frames) dequantized, as the reader
  would have given them: for the step, on its device. Other batches come back as they are."""
  out = dict(batch)
  for key in ("features", "teacher_features"):
    present = out.pop(f"{key}_present", None)
    if present is not None:
      out[key] = dequantize_frames(out[key], present, feature_sizes)
  return out


def _check(ok, path, index, video_id, what):
  """In-graph assertion whose failure message names the file, record and video (None: no
  video). `what` is a string, or a function returning the string tensor; the message is only
  built if the check fails."""
  def fail():
    video = [] if video_id is None else [" (video '", video_id, "')"]
    return tf.strings.join([path, ": record ", tf.strings.as_string(index), *video, ": ",
                            what() if callable(what) else what, _ERROR_END])
  message = tf.cond(ok, lambda: tf.constant(""), fail)
  return tf.debugging.Assert(ok, [_ERROR_MARK, message], summarize=1)


def recheck_unless(ok, paths):
  """In-graph assertion that fails, naming the batch's files, unless ok (see data_errors).
  The names are only joined if it fails (as _check's message)."""
  files = tf.cond(ok, lambda: tf.constant(""),
                  lambda: tf.strings.reduce_join(tf.unique(paths).y, separator=" "))
  return tf.debugging.Assert(ok, [RECHECK_MARK, files], summarize=1)


def _multi_hot(label_indices, num_rows, num_classes):
  """[N, 2] (row, class) pairs -> [num_rows, num_classes] float32 with duplicates collapsed."""
  ones = tf.ones(tf.shape(label_indices)[:1], tf.float32)
  shape = tf.stack([tf.cast(num_rows, tf.int64), tf.constant(num_classes, tf.int64)])
  dense = tf.scatter_nd(tf.cast(label_indices, tf.int64), ones, shape)
  return tf.minimum(dense, 1.0)


def _label_checks(labels, config, path, index, video_id):
  checks = []
  if config.require_labels:
    checks.append(_check(tf.size(labels) > 0, path, index, video_id,
                         "missing key 'labels' (or an empty label list); unlabelled files can "
                         "only be used for inference"))
  in_range = tf.reduce_all((labels >= 0) & (labels < config.num_classes))
  def out_of_range():
    return tf.boolean_mask(labels, (labels < 0) | (labels >= config.num_classes))
  checks.append(_check(in_range, path, index, video_id, lambda: tf.strings.join([
      "label id ", tf.strings.as_string(out_of_range()[0]), " is outside [0, ",
      str(config.num_classes), "); is --num_classes right (3862 for 2018+ data, 4716 for 2017)?"
  ])))
  return checks


def _segment_checks(context, config, path, index, video_id):
  labels = context["segment_labels"].values
  starts = context["segment_start_times"].values
  scores = context["segment_scores"].values
  same = (tf.size(labels) == tf.size(starts)) & (tf.size(labels) == tf.size(scores))
  return [
      _check(tf.size(labels) > 0, path, index, video_id,
             "missing key 'segment_labels' (no rated segments); --segment_labels evaluation "
             "needs the 2019 segment-rated files"),
      _check(same, path, index, video_id, "segment_labels, segment_start_times and "
             "segment_scores differ in length"),
      _check(tf.reduce_all((labels >= 0) & (labels < config.num_classes)), path, index,
             video_id, f"a segment label is outside [0, {config.num_classes}) (--num_classes)"),
      _check(tf.reduce_all((starts >= 0) & (starts < config.max_frames)), path, index, video_id,
             f"a segment start time is outside [0, {config.max_frames})"),
  ]


def _segments(frames, num_frames, video_id, context, config: ReaderConfig):
  """One video's [max_frames, D] frames -> its segments, each SEGMENT_SIZE frames.

  "rated": one segment per distinct rated start time (all labels rated at that start share
  it), labels = the scores, label_weights = 1 where rated. "all": segments at 0, 5, 10, ...
  covering the video. num_frames is the segment's real frame count (the last one may be
  shorter; the starter's reader said 5 for every segment).
  """
  if config.segment_mode == "rated":
    starts, row = tf.unique(tf.cast(context["segment_start_times"].values, tf.int32))
    pairs = tf.stack([tf.cast(row, tf.int64), context["segment_labels"].values], axis=1)
    shape = tf.stack([tf.cast(tf.size(starts), tf.int64), config.num_classes])
    labels = tf.scatter_nd(pairs, context["segment_scores"].values, shape)
    weights = tf.minimum(tf.scatter_nd(pairs, tf.ones_like(context["segment_scores"].values),
                                       shape), 1.0)
  else:
    starts = tf.range(0, num_frames, SEGMENT_SIZE, dtype=tf.int32)
    labels = weights = tf.zeros([tf.size(starts), config.num_classes])
  offsets = starts[:, None] + tf.range(SEGMENT_SIZE, dtype=tf.int32)[None, :]  # [S, 5]
  real = offsets < num_frames
  segment_frames = tf.gather(frames, tf.minimum(offsets, config.max_frames - 1))
  segment_frames *= tf.cast(real, frames.dtype)[..., None]
  count = tf.size(starts)
  return {
      "video_ids": tf.strings.join([tf.fill([count], video_id), tf.strings.as_string(starts)],
                                   ":"),
      "features": tf.ensure_shape(segment_frames, [None, SEGMENT_SIZE, config.feature_dim]),
      "num_frames": tf.maximum(tf.reduce_sum(tf.cast(real, tf.int32), axis=1), 1),
      "labels": labels,
      "label_weights": weights,
      "frame_indices": tf.where(real, offsets, -1),
  }


def _video_id(ids, video_ids):
  # 2018+ files use `id`, 2017 files `video_id`; whichever is present wins.
  return tf.where(tf.strings.length(ids) > 0, ids, video_ids)


def _select(num_frames, video_id, config: ReaderConfig, training: bool, seed: int,
            position=None):
  """The student's frame indices for one video (position: the record's place in the
  training stream)."""
  stateless_seed = None
  drawn = config.draws_frames(training)
  if drawn and not training:
    # Evaluation: the same frames for a video whatever the order or batch it comes in.
    stateless_seed = tf.stack(
        [tf.constant(seed, tf.int64), tf.strings.to_hash_bucket_fast(video_id, 2**62)])
  elif drawn and position is not None:
    # Training: a fresh draw per visit that is a function of where the record is in the
    # run's input, so a resumed run draws what the uninterrupted one did.
    stateless_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(position, tf.int64)])
  return frame_selection.select_frames(
      num_frames, config.student_frames, config.frame_selection, config.max_frames,
      stateless_seed, jitter=drawn and config.frame_selection == "uniform")


def _parse_frame_level(path, index, serialized, config: ReaderConfig, training: bool,
                       seed: int, position=None):
  context, sequences = tf.io.parse_single_sequence_example(
      serialized,
      context_features={
          "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
          "video_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
          "labels": tf.io.VarLenFeature(tf.int64),
          **({"segment_labels": tf.io.VarLenFeature(tf.int64),
              "segment_start_times": tf.io.VarLenFeature(tf.int64),
              "segment_scores": tf.io.VarLenFeature(tf.float32)}
             if config.segment_mode == "rated" else {}),
      },
      sequence_features={
          name: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
          for name in config.feature_names
      })
  video_id = _video_id(context["id"], context["video_id"])
  labels = context["labels"].values
  checks = [
      _check(tf.strings.length(video_id) > 0, path, index, video_id,
             "missing key 'id' (2018+) or 'video_id' (2017)")
  ]
  if config.segment_mode == "rated":
    checks += _segment_checks(context, config, path, index, video_id)
  else:
    checks += _label_checks(labels, config, path, index, video_id)
  for name, size in zip(config.feature_names, config.feature_sizes, strict=True):
    frames = sequences[name]
    checks.append(_check(tf.size(frames) > 0, path, index, video_id,
                         f"0 frames of '{name}' (missing or empty feature list; if this is "
                         "video-level data, drop --frame_features)"))
    lengths = tf.strings.length(frames)
    # The message is built right away, inside _check's false branch (no late binding).
    checks.append(_check(tf.reduce_all(lengths == size), path, index, video_id,
                         lambda name=name, lengths=lengths, size=size: tf.strings.join([
                             f"a '{name}' frame has ",
                             tf.strings.as_string(tf.boolean_mask(lengths, lengths != size)[0]),
                             f" bytes, expected {size} (--feature_sizes)"])))

  with tf.control_dependencies(checks):
    # num_frames comes from the first feature, as in the starter.
    num_frames = tf.minimum(tf.size(sequences[config.feature_names[0]]), config.max_frames)
    num_frames = tf.identity(tf.cast(num_frames, tf.int32))
    labels_dense = _multi_hot(tf.stack([tf.zeros_like(labels), labels], 1), 1,
                              config.num_classes)[0]
  if not config.selects_in_reader or config.teacher_frames:
    indices = tf.range(num_frames, dtype=tf.int32)
  else:
    indices = _select(num_frames, video_id, config, training, seed, position)
  full_length = config.segment_mode or config.teacher_frames
  length = config.max_frames if full_length else config.num_output_frames
  pad = length - tf.size(indices)
  parts = []
  for name, size in zip(config.feature_names, config.feature_sizes, strict=True):
    frames = sequences[name]
    available = tf.size(frames, out_type=tf.int32)
    # Other features may have fewer frames than the first one: those rows stay zero.
    picked = tf.gather(frames, tf.minimum(indices, available - 1))
    values = dequantize(tf.reshape(tf.io.decode_raw(picked, tf.uint8), [-1, size]))
    values = tf.where((indices < available)[:, None], values, 0.0)
    parts.append(tf.pad(values, [[0, pad], [0, 0]]))
  if config.segment_mode:
    return _segments(tf.concat(parts, axis=1), num_frames, video_id, context, config)
  features = tf.ensure_shape(tf.concat(parts, axis=1), [length, config.feature_dim])
  extra = {}
  if config.teacher_frames:
    # The teacher sees every frame; the student's k are gathered from them (no second decode).
    extra = {"teacher_features": features, "teacher_num_frames": num_frames}
    indices = _select(num_frames, video_id, config, training, seed, position)
    pad = config.student_frames - tf.size(indices)
    features = tf.ensure_shape(tf.pad(tf.gather(features, indices), [[0, pad], [0, 0]]),
                               [config.student_frames, config.feature_dim])
    length = config.student_frames
  return {
      **extra,
      "video_ids": video_id,
      "features": features,
      "num_frames": tf.size(indices, out_type=tf.int32),
      "labels": labels_dense,
      "frame_indices": tf.ensure_shape(tf.pad(indices, [[0, pad]], constant_values=-1),
                                       [length]),
  }


def _parse_video_level(paths, indices, serialized, config: ReaderConfig):
  """Parses a batch of video-level Examples at once (much faster than one by one)."""
  spec = {
      "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
      "video_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
      "labels": tf.io.RaggedFeature(tf.int64),
  }
  for name in config.feature_names:
    spec[name] = tf.io.RaggedFeature(tf.float32)
  parsed = tf.io.parse_example(serialized, spec)
  video_ids = _video_id(parsed["id"], parsed["video_id"])
  labels = parsed["labels"]
  num_rows = tf.shape(serialized)[0]

  def row_check(row_ok, what):
    # Report the first offending row of the batch.
    first = tf.argmax(tf.cast(~row_ok, tf.int32), output_type=tf.int32)
    return _check(tf.reduce_all(row_ok), paths[first], indices[first], video_ids[first], what)

  checks = [row_check(tf.strings.length(video_ids) > 0,
                      "missing key 'id' (2018+) or 'video_id' (2017)")]
  if config.require_labels:
    checks.append(row_check(labels.row_lengths() > 0,
                            "missing key 'labels' (or an empty label list); unlabelled files can "
                            "only be used for inference"))
  label_ok = tf.reduce_all((labels >= 0) & (labels < config.num_classes), axis=1)
  checks.append(row_check(label_ok, f"a label id is outside [0, {config.num_classes}); is "
                          "--num_classes right (3862 for 2018+ data, 4716 for 2017)?"))
  for name, size in zip(config.feature_names, config.feature_sizes, strict=True):
    lengths = parsed[name].row_lengths()
    checks.append(row_check(lengths > 0, f"no feature '{name}' (absent or empty; "
                            "--feature_names; if this is frame-level data, pass "
                            "--frame_features)"))
    checks.append(row_check((lengths == size) | (lengths == 0),
                            f"feature '{name}' does not have {size} values (--feature_sizes)"))
    checks.append(row_check(tf.reduce_all(tf.math.is_finite(parsed[name]), axis=1),
                            f"feature '{name}' has a NaN or infinite value"))
  with tf.control_dependencies(checks):
    features = tf.concat(
        [tf.zeros([num_rows, 0])] + [parsed[name].to_tensor(shape=[None, size])
         for name, size in zip(config.feature_names, config.feature_sizes, strict=True)], axis=1)
    features = tf.identity(features)
    pairs = tf.stack([tf.cast(labels.value_rowids(), tf.int64), labels.flat_values], axis=1)
    labels_dense = _multi_hot(pairs, num_rows, config.num_classes)
  return {
      "video_ids": video_ids,
      "features": features,
      "num_frames": tf.ones([num_rows], tf.int32),
      "labels": labels_dense,
  }


_CHECK_BATCH = 256  # records per step of the truncation check (no work per record)

# The reader's functions branch with explicit tf.cond / tf.map_fn, so tf.data traces them as
# they are: AutoGraph's source conversion added 1.6 s to the first dataset a process builds
# (python -m benchmarks.bench_reader --startup: 2.05 s -> 0.47 s).
_plain = tf.autograph.experimental.do_not_convert


def _complete_records(path, size) -> tf.data.Dataset:
  """One file's (path, record index, serialized record) triples; an error unless its records
  end exactly at its last byte (tf.data stops silently at a cut inside a record header).
  The bytes are counted per batch of records, so the check adds no work per record."""
  batches = tf.data.TFRecordDataset(path).batch(_CHECK_BATCH).map(_plain(lambda r: (r, False)))
  end = tf.data.Dataset.from_tensors((tf.zeros([0], tf.string), tf.constant(True)))

  def step(state, element):
    index, offset = state
    records, last = element
    count = tf.size(records, out_type=tf.int64)
    after = offset + tf.reduce_sum(tf.cast(tf.strings.length(records), tf.int64)) + (
        count * _FRAMING_BYTES)
    return (index + count, after), (index + tf.range(count), records, last, index, after)

  def keep(indices, records, last, index, offset):
    del indices, records
    check = _check(~last | (offset == size), path, index, None, lambda: tf.strings.join([
        "truncated (the file has ", tf.strings.as_string(size), " bytes, its complete records "
        "end at byte ", tf.strings.as_string(offset), "); the file is damaged, copy or "
        "download it again"]))
    with tf.control_dependencies([check]):
      return tf.logical_not(last)

  zero = tf.constant(0, tf.int64)
  return batches.concatenate(end).scan((zero, zero), _plain(step)).filter(_plain(keep)).map(
      _plain(lambda indices, records, last, index, offset: (
          tf.fill(tf.shape(indices), path), indices, records))).unbatch()


def _records(files: Sequence[str], sizes: Sequence[int], training: bool,
             num_epochs: int | None, num_readers: int, seed: int | None,
             deterministic: bool) -> tf.data.Dataset:
  """(path, record index, serialized record) triples: file order shuffled per epoch when
  training, the sorted file order otherwise."""
  open_file = _plain(_complete_records)
  ds = tf.data.Dataset.from_tensor_slices((list(files), tf.constant(list(sizes), tf.int64)))
  if not training:
    return ds.flat_map(open_file)
  ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat(num_epochs)
  return ds.interleave(open_file, cycle_length=max(1, min(num_readers, len(files))),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def build_dataset(files: Sequence[str],
                  config: ReaderConfig,
                  batch_size: int,
                  training: bool = False,
                  num_epochs: int | None = None,
                  shuffle_buffer: int | None = None,
                  num_readers: int = 8,
                  drop_remainder: bool = False,
                  seed: int | None = None,
                  shard: tuple[int, int] | None = None,
                  skip_records: int = 0,
                  by_batch: bool = True) -> tf.data.Dataset:
  """Batches of one file list.

  Training: files reshuffled every epoch, `num_readers` files read interleaved, records
  shuffled in a buffer (default 4 batches), repeated `num_epochs` times (None = forever).
  Evaluation/inference (training=False): one pass in sorted file order, deterministic.
  A seed makes the training order reproducible too (at some cost in parallelism).
  shard=(count, index) keeps every count-th record (for workers that share files).
  skip_records: training resumes its input here (the records are read, not parsed).
  by_batch=False parses frame-level records one at a time (yt8m/frame_batches.py says why
  batches are the default; data_errors uses this to name a bad record).
  Iterate it inside data_errors(files, reader=config): that turns its errors into one line.
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if not files:
    raise DataError("no input files")
  sizes = _check_files(files, config)
  # Training trades order for speed unless a seed asks for a reproducible run.
  deterministic = not training or seed is not None
  records = _records(files, sizes, training, num_epochs if training else 1, num_readers, seed,
                     deterministic)
  if shard is not None:
    records = records.shard(*shard)
  by_position = training and config.frame_features
  if training:
    records = records.shuffle(shuffle_buffer or 4 * batch_size, seed=seed)
    if by_position:  # (path, index, record, place in the stream): seeds random selection
      records = records.enumerate().map(_plain(lambda position, r: (*r, position)))
    if skip_records:
      records = records.skip(skip_records)
  if by_batch and frame_batches.can_parse_batches(config):
    # Batches first, then parses them whole (yt8m/frame_batches.py).

    def parse_batch(p, i, r, *positions):
      rows = frame_batches.parse_batch(p, i, r, config, training, seed or 0, *positions)
      return rows if training else _with_record_bytes(rows, r, None)

    ds = records.batch(batch_size, drop_remainder=drop_remainder).map(
        _plain(parse_batch), num_parallel_calls=frame_batches.PARALLEL_BATCHES,
        deterministic=deterministic)
  elif config.frame_features:

    def parse(p, i, r, *position):
      row = _parse_frame_level(p, i, r, config, training, seed or 0, *position)
      return row if training else _with_record_bytes(row, r, config.segment_mode)

    ds = records.map(_plain(parse), num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=deterministic)
    if config.segment_mode:
      ds = ds.unbatch()  # a row per segment
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  else:

    def parse(p, i, r):
      rows = _parse_video_level(p, i, r, config)
      return rows if training else _with_record_bytes(rows, r, None)

    ds = records.batch(batch_size, drop_remainder=drop_remainder).map(
        _plain(parse), num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  return ds.prefetch(tf.data.AUTOTUNE)


def _with_record_bytes(rows: dict, serialized: tf.Tensor, segment_mode: str | None) -> dict:
  """Adds "record_bytes", each row's share of the bytes read (progress of a pass: ETA by
  bytes when the video count is unknown): the record's size in the file (with its TFRecord
  framing), on a video's first segment."""
  size = tf.cast(tf.strings.length(serialized), tf.int64) + TFRECORD_FRAMING_BYTES
  if segment_mode:
    size = tf.one_hot(0, tf.size(rows["num_frames"]), on_value=size,
                      off_value=tf.constant(0, tf.int64), dtype=tf.int64)
  return {**rows, "record_bytes": size}


def parse_serialized(serialized: tf.Tensor, config: ReaderConfig) -> dict:
  """Parses a [N] batch of serialized records in-graph, as `build_dataset` would (used by the
  exported serving signature). Errors name the record's position in the request."""
  count = tf.shape(serialized)[0]
  paths = tf.fill([count], "<request>")
  indices = tf.range(count, dtype=tf.int64)
  if not config.frame_features:
    return _parse_video_level(paths, indices, serialized, config)
  if frame_batches.can_parse_batches(config):
    return frame_batches.parse_batch(paths, indices, serialized, config, False, 0,
                                     fallback=True)
  return _parse_records(paths, indices, serialized, config, False, 0)


def _parse_records(paths, indices, serialized, config: ReaderConfig, training: bool,
                   seed: int, positions=None) -> dict:
  """_parse_frame_level over a [N] batch, record by record (not for segment_mode)."""
  length = config.num_output_frames
  signature = {
      "video_ids": tf.TensorSpec([], tf.string),
      "features": tf.TensorSpec([length, config.feature_dim], tf.float32),
      "num_frames": tf.TensorSpec([], tf.int32),
      "labels": tf.TensorSpec([config.num_classes], tf.float32),
      "frame_indices": tf.TensorSpec([length], tf.int32),
  }
  if config.teacher_frames:
    signature["teacher_features"] = tf.TensorSpec([config.max_frames, config.feature_dim],
                                                  tf.float32)
    signature["teacher_num_frames"] = tf.TensorSpec([], tf.int32)
  if positions is None:
    return tf.map_fn(lambda a: _parse_frame_level(*a, config, training, seed),
                     (paths, indices, serialized), fn_output_signature=signature)
  return tf.map_fn(lambda a: _parse_frame_level(*a[:3], config, training, seed, a[3]),
                   (paths, indices, serialized, positions), fn_output_signature=signature)


def labels_only(num_classes: int, require_labels: bool = True) -> ReaderConfig:
  """Reads just ids and labels, from video-level or frame-level files alike: a
  SequenceExample's context has the wire format of an Example, so parsing it as one reads
  `id` and `labels` and skips the frames."""
  return ReaderConfig(feature_names=(), feature_sizes=(), frame_features=False,
                      num_classes=num_classes, require_labels=require_labels)


_WRONG_TYPE = re.compile(r"(?:Key|Feature list): ([^,\s]+)[,.].*?Data types don't match\. "
                         r"Expected type: (\w+)", re.S)
_KINDS = {"float": "float_list", "int64": "int64_list", "string": "bytes_list"}


def _wrong_kind(proto, key: str, expected_kind: str) -> str | None:
  """The kind ('bytes_list', ...) of feature `key` of an Example or SequenceExample (context or
  feature list) when it is not the expected one, else None."""
  if isinstance(proto, tf.train.Example):
    context, lists = proto.features.feature, {}
  else:
    context, lists = proto.context.feature, proto.feature_lists.feature_list
  candidates = [context[key]] if key in context else []
  if key in lists:
    candidates += list(lists[key].feature)
  for feature in candidates:
    kind = feature.WhichOneof("kind")
    if kind is not None and kind != expected_kind:
      return kind
  return None


def diagnose_files(files: Sequence[str], frame_features: bool | None = None,
                   error: str = "") -> str | None:
  """Finds the first unreadable record (truncated, bad checksum, not a protobuf, or a feature
  of the type `error` (TensorFlow's parse message) names) by reading every file again. Only
  called after a failure, so the happy path pays nothing."""
  proto = None
  if frame_features is not None:
    proto = tf.train.SequenceExample if frame_features else tf.train.Example
  wrong_type = _WRONG_TYPE.search(error)
  if wrong_type and proto is None:
    proto = tf.train.SequenceExample
  # A record Python's protobuf reads but TensorFlow's fast parser rejects (e.g. a map entry
  # whose value comes before its key).
  rejected = proto is not None and "Invalid protocol message" in error
  for path in files:
    index = 0
    try:
      for record in tf.data.TFRecordDataset(path):
        if proto is not None:
          try:
            parsed = proto.FromString(record.numpy())
          except Exception:  # protobuf raises its own DecodeError type
            return f"{path}: record {index}: not a valid {proto.__name__} protocol buffer"
          if rejected and not _tensorflow_parses(record, proto):
            return (f"{path}: record {index}{_video_of(parsed)}: TensorFlow's parser rejects "
                    f"this {proto.__name__} (a valid protocol buffer in an encoding it does "
                    "not read); write it again with TensorFlow")
          if wrong_type:
            key, expected = wrong_type.groups()
            kind = _wrong_kind(parsed, key, _KINDS.get(expected, expected))
            if kind:
              expected = _KINDS.get(expected, expected).replace("_list", "")
              return (f"{path}: record {index}{_video_of(parsed)}: feature {key!r} holds "
                      f"{kind.replace('_list', '')} values, expected {expected}")
        index += 1
    except tf.errors.DataLossError as e:
      reason = "truncated" if "truncated" in str(e) else "corrupted (checksum mismatch)"
      return f"{path}: record {index}: {reason}; the file is damaged, copy or download it again"
    except (tf.errors.NotFoundError, tf.errors.FailedPreconditionError,
            tf.errors.PermissionDeniedError) as e:
      return f"{path}: cannot be read: {_first_line(e.message)}"
  return None


def _tensorflow_parses(record: tf.Tensor, proto) -> bool:
  spec = {"id": tf.io.FixedLenFeature([], tf.string, default_value="")}
  try:
    if proto is tf.train.SequenceExample:
      tf.io.parse_single_sequence_example(record, context_features=spec)
    else:
      tf.io.parse_single_example(record, spec)
  except tf.errors.InvalidArgumentError:
    return False
  return True


def _video_of(parsed) -> str:
  features = (parsed.features if isinstance(parsed, tf.train.Example) else parsed.context).feature
  for key in ("id", "video_id"):
    if key in features and features[key].bytes_list.value:
      return f" (video {features[key].bytes_list.value[0].decode('utf-8', 'replace')!r})"
  return ""


def _first_line(message: str) -> str:
  """TensorFlow's error text without its function-node and op decorations."""
  message = re.sub(r"\{\{[^}]*\}\}|\[\[[^\]]*\]\]|\[Op:[^\]]*\].*", "", message)
  message = message.split("transformation with iterator:")[-1]
  message = re.sub(r"^\s*Iterator::\S+:\s*", "", message)  # the tf.data iterator's path
  return " ".join(message.split())


@contextlib.contextmanager
def data_errors(files: Sequence[str], frame_features: bool | None = None,
                reader: ReaderConfig | None = None) -> Iterator[None]:
  """Turns TensorFlow's errors while iterating a reader's dataset into a DataError whose
  one-line message names the file and record (and the video when the record has an id).
  reader: the dataset's config, to name a bad record of a batch parsed at once."""
  if reader is not None:
    frame_features = reader.frame_features
  try:
    yield
  except tf.errors.InvalidArgumentError as e:
    if RECHECK_MARK in str(e):
      named = [path for path in files if path in str(e)] or list(files)
      raise DataError((_first_bad_record(named, reader) if reader else None) or
                      f"a record of {', '.join(named)} fails a check of the reader") from None
    found = re.search(_ERROR_MARK + r"\]\s*\[(.*?)" + _ERROR_END, str(e), re.S)
    if found:
      # The assertion prints its message as a Python literal: undo the quote escaping.
      raise DataError(found.group(1).replace("\\'", "'")) from None
    raise DataError(diagnose_files(files, frame_features, e.message) or
                    f"unreadable input in {len(files)} file(s): {_first_line(e.message)}"
                    ) from None
  except (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.FailedPreconditionError,
          tf.errors.PermissionDeniedError) as e:
    raise DataError(diagnose_files(files, frame_features) or
                    f"damaged input in {len(files)} file(s): {_first_line(e.message)}") from None
  except UnicodeDecodeError:
    # TensorFlow fails to decode its own error text when it quotes a record that is not a
    # protocol buffer: look for that record.
    message = diagnose_files(files, frame_features if frame_features is not None else False)
    if message is None:
      raise
    raise DataError(message) from None


def _first_bad_record(files: Sequence[str], reader: ReaderConfig) -> str | None:
  """The error of the files' first bad record, read record by record (only after a failure)."""
  try:
    with data_errors(files, reader.frame_features):
      for _ in build_dataset(files, reader, 64, by_batch=False):
        pass
  except DataError as e:
    return str(e)
  return None


def iterate_numpy(files: Sequence[str], config: ReaderConfig,
                  batch_size: int) -> Iterator[dict]:
  """One deterministic pass over the files as numpy batches, with file-naming errors."""
  ds = build_dataset(files, config, batch_size, training=False)
  with data_errors(files, reader=config):
    for batch in ds.as_numpy_iterator():
      yield batch
