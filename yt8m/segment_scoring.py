"""Scoring a 2019 segment submission (`Class,Segments`) with the Kaggle 2019 metric.

A submission row is `<class>,<video>:<start> <video>:<start> ...`, the class's segments by
descending confidence (as inference.py --segment_labels writes). The ground truth is the
2019 segment-rated validation data: per video, parallel context lists `segment_labels`,
`segment_start_times`, `segment_scores` (1 positive, 0 negative) over 5-frame segments.

The metric, mean average precision at K = 100,000 segments per class:

  For every class c with at least one positive rated segment (N_c > 0 positives):
    1. take the submission's row for c and keep its first K segments, in the given order;
    2. drop the segments that are not rated for c (the ground truth rates only some
       (segment, class) pairs; an unrated one is neither a hit nor a miss, as in the starter's
       segment_eval_inference.py);
    3. AP_c = (1 / N_c) * sum over ranks k of the remaining list of P(k) * rel(k), where
       rel(k) = 1 if the k-th segment is a positive for c (score > 0) and P(k) is the fraction
       of positives among the first k.
  mAP = the mean of AP_c over those classes. A class without a row has AP 0; rows of classes
  with no positive rating are not part of the mean (counted in the result).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np
import tensorflow as tf

from yt8m import readers, submission

MAX_SEGMENTS_PER_CLASS = 100_000  # K of the 2019 challenge
_SEGMENT_ID = re.compile(r"^.+:\d+$")  # <video id>:<start second>


def read_header(path: str) -> str:
  """The first line of a file (without BOM and line end); "" if the file does not exist."""
  if not tf.io.gfile.exists(path):
    return ""
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")


def is_segment_csv(path: str) -> bool:
  return read_header(path) == submission.SEGMENT_HEADER


@dataclasses.dataclass
class SegmentSubmission:
  rows: dict[int, list[str]]  # class -> segment ids, most confident first
  warnings: list[str]  # skipped rows, when the reader was asked to skip them


def read_segment_csv(path: str, num_classes: int,
                     skip_bad_rows: bool = False) -> SegmentSubmission:
  """Reads a `Class,Segments` file; a malformed line, a duplicate class row or a segment twice
  in a row is an error naming the file and line, or (skip_bad_rows) a skipped row listed in
  `warnings`."""
  if not tf.io.gfile.exists(path):
    raise submission.SubmissionError(f"submission file not found: {path}")
  rows, first_line, warnings = {}, {}, []

  def bad(number, why):
    message = f"{path}: line {number}: {why}"
    if not skip_bad_rows:
      raise submission.SubmissionError(message + " (--skip_bad_rows skips such rows)")
    warnings.append(message)

  with tf.io.gfile.GFile(path, "rb") as f:
    header = f.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    if header != submission.SEGMENT_HEADER:
      raise submission.SubmissionError(
          f"{path}: line 1: expected the header {submission.SEGMENT_HEADER!r}, got "
          f"{header[:80]!r}")
    for number, raw in enumerate(f, start=2):
      try:
        line = raw.decode("utf-8").strip()
      except UnicodeDecodeError:
        bad(number, "not UTF-8 text")
        continue
      if not line:
        continue
      class_text, comma, segments_text = line.partition(",")
      if not comma or not class_text.strip().isdigit():
        bad(number, "expected '<class>,<video>:<start> <video>:<start> ...'")
        continue
      class_id = int(class_text)
      if class_id >= num_classes:
        bad(number, f"class {class_id} is outside [0, {num_classes}) (--num_classes)")
        continue
      if class_id in rows:
        bad(number, f"duplicate class {class_id} (first on line {first_line[class_id]})")
        continue
      segments = segments_text.split()
      malformed = next((s for s in segments if not _SEGMENT_ID.match(s)), None)
      if malformed is not None:
        bad(number, f"class {class_id}: segment {malformed[:80]!r} is not "
            "'<video id>:<start second>'")
        continue
      if len(set(segments)) != len(segments):
        bad(number, f"class {class_id}: a segment appears twice")
        continue
      rows[class_id] = segments
      first_line[class_id] = number
  return SegmentSubmission(rows, warnings)


@dataclasses.dataclass
class Ratings:
  """The ground truth: class -> {segment id: positive?}."""
  by_class: dict[int, dict[str, bool]]
  num_videos: int
  num_videos_unrated: int


_CONTEXT = {
    "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "segment_labels": tf.io.RaggedFeature(tf.int64),
    "segment_start_times": tf.io.RaggedFeature(tf.int64),
    "segment_scores": tf.io.RaggedFeature(tf.float32),
}


def read_ratings(files: Sequence[str], num_classes: int, batch_size: int = 1024) -> Ratings:
  """The rated segments of 2019 segment-level files. Only the context is parsed (a
  SequenceExample's context has the wire format of an Example), so the frames cost nothing.
  A bad record is a readers.DataError naming the file and record."""
  by_class: dict[int, dict[str, bool]] = {}
  seen: dict[str, str] = {}
  num_videos = unrated = 0
  with readers.data_errors(files):
    for path in files:
      ds = tf.data.TFRecordDataset(path).batch(batch_size).map(
          lambda r: tf.io.parse_example(r, _CONTEXT))
      index = 0
      for batch in ds.as_numpy_iterator():
        columns = [batch[k] for k in ("segment_labels", "segment_start_times", "segment_scores")]
        for video_id, labels, starts, scores in zip(batch["id"], *columns, strict=True):
          where = f"{path}: record {index}"
          index += 1
          video_id = video_id.decode("utf-8", "replace")
          if not video_id:
            raise readers.DataError(f"{where}: missing key 'id'")
          if video_id in seen:
            raise readers.DataError(f"{where}: video {video_id!r} appears twice (also in "
                                    f"{seen[video_id]})")
          seen[video_id] = where
          num_videos += 1
          if not len(labels) == len(starts) == len(scores):
            raise readers.DataError(f"{where}: video {video_id!r}: segment_labels, "
                                    "segment_start_times and segment_scores differ in length")
          if not len(labels):
            unrated += 1
            continue
          if labels.min() < 0 or labels.max() >= num_classes:
            raise readers.DataError(f"{where}: video {video_id!r}: a segment label is outside "
                                    f"[0, {num_classes}) (--num_classes)")
          if starts.min() < 0:
            raise readers.DataError(f"{where}: video {video_id!r}: a negative segment start")
          if not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
            raise readers.DataError(f"{where}: video {video_id!r}: a segment score is outside "
                                    "[0, 1]")
          for label, start, score in zip(labels.tolist(), starts.tolist(), scores.tolist(),
                                         strict=True):
            rated = by_class.setdefault(label, {})
            segment = f"{video_id}:{start}"
            if segment in rated:
              raise readers.DataError(f"{where}: video {video_id!r}: segment {start} is rated "
                                      f"twice for class {label}")
            rated[segment] = score > 0
  if not by_class:
    raise readers.DataError(f"no rated segments in {len(files)} file(s) ({num_videos} videos); "
                            "scoring a Class,Segments file needs segment-rated data (the 2019 "
                            "validation files, or python -m yt8m.synthetic --segment_ratings)")
  return Ratings(by_class, num_videos, unrated)


def average_precision(relevant: np.ndarray, num_positives: int) -> float:
  """sum_k P(k) rel(k) / num_positives over a ranked 0/1 list."""
  relevant = np.asarray(relevant, bool)
  if num_positives <= 0:
    raise ValueError("num_positives must be positive")
  ranks = np.flatnonzero(relevant) + 1.0
  return float((np.arange(1, ranks.size + 1) / ranks).sum() / num_positives)


def score(sub: SegmentSubmission, ratings: Ratings,
          k: int = MAX_SEGMENTS_PER_CLASS) -> tuple[dict, list[str]]:
  """The metric of the module docstring, and warnings about what was left out."""
  aps = {}
  for class_id, rated in sorted(ratings.by_class.items()):
    positives = sum(rated.values())
    if not positives:
      continue
    segments = sub.rows.get(class_id, [])[:k]
    relevant = [rated[s] for s in segments if s in rated]
    aps[class_id] = average_precision(np.array(relevant, bool), positives)
  missing = [c for c in aps if c not in sub.rows]
  ignored = [c for c in sub.rows if c not in aps]
  truncated = [c for c, segments in sub.rows.items() if len(segments) > k]
  warnings = []
  if missing:
    warnings.append(f"{len(missing)} class(es) with positive ratings have no row (AP 0), e.g. "
                    f"{', '.join(map(str, missing[:5]))}")
  if ignored:
    warnings.append(f"{len(ignored)} row(s) of classes without a positive rating are not "
                    f"scored, e.g. {', '.join(map(str, ignored[:5]))}")
  if truncated:
    warnings.append(f"{len(truncated)} row(s) have more than {k} segments; only the first {k} "
                    "count")
  rated_pairs = sum(len(r) for r in ratings.by_class.values())
  result = {
      "segment_map": float(np.mean(list(aps.values()))) if aps else 0.0,
      "k": k,
      "num_classes_scored": len(aps),
      "num_classes_without_row": len(missing),
      "num_rows_not_scored": len(ignored),
      "num_rated_segments": rated_pairs,
      "num_positive_ratings": sum(sum(r.values()) for r in ratings.by_class.values()),
      "num_videos": ratings.num_videos,
      "num_videos_unrated": ratings.num_videos_unrated,
      "per_class_ap": {str(c): ap for c, ap in aps.items()},
  }
  return result, warnings


def format_metrics(result: dict) -> str:
  return (f"Segment mAP@{result['k']}: {result['segment_map']:.4f} | classes scored: "
          f"{result['num_classes_scored']} (without a row: {result['num_classes_without_row']})"
          f" | rated segments: {result['num_rated_segments']} "
          f"({result['num_positive_ratings']} positive) | videos: {result['num_videos']}")
