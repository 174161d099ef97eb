"""Writing output files safely: atomically, and never over a file we did not write."""

from __future__ import annotations

import contextlib
import json
import os
from typing import IO, Iterator

import tensorflow as tf

METRICS_JSON_KEYS = ("hit_at_one", "perr", "gap", "map", "num_videos")


@contextlib.contextmanager
def atomic_output(path: str, signature: str) -> Iterator[IO[str]]:
  """Opens a temporary file beside `path` for writing and renames it onto `path` when the
  block finishes, so a killed run never leaves a partial file there. An existing `path` is
  replaced only if it starts with `signature` (an earlier output of the same kind): anything
  else is refused, so a mistyped path cannot destroy a user's file. gs:// paths work."""
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path, "r") as existing:
      head = existing.read(len(signature))
    if head != signature:
      raise FileExistsError(f"{path} exists and is not an earlier yt8m output; "
                            "refusing to overwrite it (choose another path or remove it)")
  parent = os.path.dirname(path)
  if parent and not tf.io.gfile.exists(parent):
    tf.io.gfile.makedirs(parent)
  temporary = f"{path}.tmp-{os.getpid()}"
  try:
    with tf.io.gfile.GFile(temporary, "w") as f:
      yield f
    tf.io.gfile.rename(temporary, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.remove(temporary)


def _metric_values(metrics: dict) -> dict:
  keys = METRICS_JSON_KEYS + (("loss",) if "loss" in metrics else ())
  return {key: (int(metrics[key]) if key == "num_videos" else float(metrics[key]))
          for key in keys}


def write_metrics_json(path: str, metrics: dict) -> None:
  """The --metrics_json file: hit_at_one, perr, gap, map, num_videos (and loss if known);
  for a parallel-distilled student also "teacher": the same keys for its teacher."""
  values = _metric_values(metrics)
  if "teacher" in metrics:
    values["teacher"] = _metric_values(metrics["teacher"])
  write_json(path, values)


def write_json(path: str, values: dict) -> None:
  """A JSON object, atomically; it may replace an earlier file with the same first key."""
  text = json.dumps(values, indent=1) + "\n"
  # An earlier metrics file starts the same way (its first key), so it may be replaced.
  with atomic_output(path, signature=text[:text.index(":")]) as f:
    f.write(text)
