"""Kaggle submission files (`VideoId,LabelConfidencePairs`): writing, strict reading, scoring.

A row is `<video id>,<label> <confidence> <label> <confidence> ...`, the labels of one video
by descending confidence, each pair formatted "%i %g" as the starter's inference.py does.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from yt8m import metrics as metrics_lib
from yt8m import outputs, readers

HEADER = "VideoId,LabelConfidencePairs"


class SubmissionError(ValueError):
  """A submission file is malformed; the message names the file and line."""


def format_row(video_id: str, classes: Sequence[int], scores: Sequence[float]) -> str:
  pairs = " ".join(f"{int(c)} {float(s):g}" for c, s in zip(classes, scores, strict=True))
  return f"{video_id},{pairs}"


def write_csv(path: str, rows: Iterable[tuple[str, Sequence[int], Sequence[float]]]) -> int:
  """Writes (video_id, classes, scores) rows atomically; returns the number of rows."""
  count = 0
  with outputs.atomic_output(path, signature=HEADER) as f:
    f.write(HEADER + "\n")
    for video_id, classes, scores in rows:
      f.write(format_row(video_id, classes, scores) + "\n")
      count += 1
  return count


SEGMENT_HEADER = "Class,Segments"


def write_segment_csv(path: str, rows: Iterable[tuple[int, Sequence[str]]]) -> int:
  """The 2019 segment submission: `<class>,<video:start> <video:start> ...` rows, segments by
  descending confidence; written atomically. Returns the number of rows."""
  count = 0
  with outputs.atomic_output(path, signature=SEGMENT_HEADER) as f:
    f.write(SEGMENT_HEADER + "\n")
    for class_id, segments in rows:
      f.write(f"{int(class_id)},{' '.join(segments)}\n")
      count += 1
  return count


@dataclasses.dataclass
class Submission:
  predictions: dict[str, tuple[np.ndarray, np.ndarray]]  # video id -> (classes, scores)
  warnings: list[str]  # skipped rows, when the reader was asked to skip them


def _parse_pairs(text: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  tokens = text.split()
  if len(tokens) % 2:
    raise ValueError(f"{len(tokens)} values after the id; expected label/confidence pairs")
  try:
    classes = np.array([int(t) for t in tokens[0::2]], np.int64)
  except ValueError:
    raise ValueError("a label is not an integer") from None
  try:
    scores = np.array([float(t) for t in tokens[1::2]], np.float64)
  except ValueError:
    raise ValueError("a confidence is not a number") from None
  if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
    raise ValueError(f"label {classes[(classes < 0) | (classes >= num_classes)][0]} is "
                     f"outside [0, {num_classes}) (--num_classes)")
  if not np.isfinite(scores).all():
    raise ValueError("a confidence is not finite")
  if len(set(classes.tolist())) != classes.size:
    raise ValueError("a label appears twice")
  return classes, scores


def _utf8(raw: bytes) -> tuple[str, str | None]:
  """A line's text, or why it has none."""
  try:
    return raw.decode("utf-8"), None
  except UnicodeDecodeError as e:
    return "", f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"


def read_csv(path: str, num_classes: int, skip_bad_rows: bool = False) -> Submission:
  """Reads a submission; a malformed line or a duplicate video id is an error naming the file
  and line, or (skip_bad_rows) a skipped row listed in `warnings` (duplicates keep the first)."""
  if not tf.io.gfile.exists(path):
    raise SubmissionError(f"submission file not found: {path}")
  predictions, first_line, warnings = {}, {}, []

  def bad(number, why):
    message = f"{path}: line {number}: {why}"
    if not skip_bad_rows:
      raise SubmissionError(message + " (--skip_bad_rows skips such rows)")
    warnings.append(message)

  with tf.io.gfile.GFile(path, "rb") as f:
    header, why = _utf8(f.readline())
    if why:
      raise SubmissionError(f"{path}: line 1: {why}")
    header = header.strip().lstrip("\ufeff")
    if header != HEADER:
      raise SubmissionError(f"{path}: line 1: expected the header {HEADER!r}, got {header[:80]!r}")
    for number, raw in enumerate(f, start=2):
      line, why = _utf8(raw)
      if why:
        bad(number, why)
        continue
      line = line.strip()
      if not line:
        continue
      video_id, comma, pairs = line.partition(",")
      if not comma or not video_id:
        bad(number, "expected '<VideoId>,<label> <confidence> ...'")
        continue
      if video_id in predictions:
        bad(number, f"duplicate VideoId {video_id!r} (first on line {first_line[video_id]})")
        continue
      try:
        predictions[video_id] = _parse_pairs(pairs, num_classes)
      except ValueError as e:
        bad(number, f"video {video_id!r}: {e}")
        continue
      first_line[video_id] = number
  return Submission(predictions, warnings)


def confidence_warning(path: str, submission: Submission) -> str | None:
  """One line if some confidences are outside [0, 1] (not probabilities: GAP and mAP still
  rank by them, but they were perhaps written by something else than a model)."""
  outside = [video_id for video_id, (_, scores) in submission.predictions.items()
             if scores.size and (scores.min() < 0 or scores.max() > 1)]
  if not outside:
    return None
  return (f"{path}: {len(outside)} row(s) have confidences outside [0, 1], e.g. "
          f"{', '.join(map(repr, outside[:5]))}; they are scored as given")


def score(submission: Submission,
          files: Sequence[str],
          num_classes: int,
          top_k: int = 20,
          batch_size: int = 1024,
          allow_id_mismatch: bool = False) -> tuple[dict, list[str]]:
  """Scores a submission against labelled TFRecords (video- or frame-level).

  Every labelled video must have a row and every row a video, unless allow_id_mismatch:
  then a video without a row counts as predicting nothing (its labels still count in recall)
  and a row without a video is ignored; both are counted in the returned warnings.
  """
  evaluation = metrics_lib.EvaluationMetrics(num_classes, top_k)
  seen, missing = set(), []
  for batch in readers.iterate_numpy(files, readers.labels_only(num_classes), batch_size):
    ids = [v.decode() for v in batch["video_ids"]]
    predictions = np.full((len(ids), num_classes), -np.inf, np.float64)
    for row, video_id in enumerate(ids):
      if video_id in seen:
        raise SubmissionError(f"video {video_id!r} appears twice in the data")
      seen.add(video_id)
      if video_id not in submission.predictions:
        missing.append(video_id)
        continue
      classes, scores = submission.predictions[video_id]
      predictions[row, classes] = scores
    evaluation.accumulate(predictions, batch["labels"])
  extra = [v for v in submission.predictions if v not in seen]
  warnings = []
  for what, ids in (("in the data but missing from the submission", missing),
                    ("in the submission but not in the data", extra)):
    if ids:
      message = f"{len(ids)} video(s) {what}, e.g. {', '.join(map(repr, ids[:5]))}"
      if not allow_id_mismatch:
        raise SubmissionError(message + " (--allow_id_mismatch scores anyway)")
      warnings.append(message)
  return evaluation.get(), warnings
