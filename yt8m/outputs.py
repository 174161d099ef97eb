"""Writing output files safely: atomically, and never over a file we did not write."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
from typing import IO, Callable, Iterator

import tensorflow as tf
from absl import logging

METRICS_JSON_KEYS = ("hit_at_one", "perr", "gap", "map", "num_videos")
# The first keys of the metrics files yt8m writes (video metrics; 2019 segment metrics): a
# file starting with one of them is an earlier output and may be replaced.
_METRICS_JSON_HEADS = ('{\n "hit_at_one"', '{\n "segment_map"')


def is_metrics_json(path: str) -> bool:
  """True for a --metrics_json file yt8m wrote."""
  with tf.io.gfile.GFile(path, "rb") as existing:
    head = existing.read(max(len(h) for h in _METRICS_JSON_HEADS)).decode(errors="replace")
  return any(head.startswith(h) for h in _METRICS_JSON_HEADS)


class OutputError(ValueError):
  """An output path cannot be written (a directory, unreachable, no permission); the message
  names it."""


def error_detail(error: Exception) -> str:
  """The first line of an error's message (TensorFlow's run on for several lines)."""
  text = (getattr(error, "message", None) or str(error)).strip()
  return text.splitlines()[0] if text else type(error).__name__


def describe_io_error(path: str, error: Exception) -> str:
  """One line for a failed file-system call on path: the error's first line, and for gs://
  the likely cause."""
  detail = error_detail(error)
  if path.startswith("gs://"):
    return (f"{path}: cannot reach Google Cloud Storage (are credentials set up? e.g. "
            f"`gcloud auth application-default login`): {detail}")
  return f"{path}: {detail}"


def _pid_alive(pid: int) -> bool:
  """Whether a process with this id runs here (unsure, e.g. an impossible id: yes)."""
  if pid <= 0:
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OverflowError):  # another user's process; not a process id
    return True
  return True


def _temporary(path: str) -> str:
  return f"{path}.tmp-{os.getpid()}"


def remove_stale_temporaries(path: str) -> list[str]:
  """Removes the temporaries of path that an earlier, killed writer left (named as
  _temporary names them, by a process that is no longer running) and returns them. Only
  local paths: the writer of a gs:// temporary may run on another machine."""
  if "://" in path:
    return []
  folder, name = os.path.split(os.path.abspath(path))
  pattern = re.compile(re.escape(name) + r"\.tmp-(\d+)$")
  removed = []
  try:
    names = os.listdir(folder)
  except OSError:
    return []
  for candidate in names:
    match = pattern.match(candidate)
    if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
      os.remove(os.path.join(folder, candidate))
      removed.append(os.path.join(folder, candidate))
  return removed


def check_output(path: str, signature: str | Callable[[str], bool]) -> None:
  """Raises unless path can be written by atomic_output (same signature): call it before
  long work, so that its result is not lost to a path mistake found at the end."""
  try:
    if tf.io.gfile.isdir(path):
      raise OutputError(f"{path} is a directory; give a file name")
    if tf.io.gfile.exists(path):
      if callable(signature):
        ours = signature(path)
      else:
        with tf.io.gfile.GFile(path, "rb") as existing:
          ours = existing.read(len(signature.encode())) == signature.encode()
      if not ours:
        raise FileExistsError(f"{path} exists and is not an earlier yt8m output; "
                              "refusing to overwrite it (choose another path or remove it)")
  except tf.errors.OpError as e:
    raise OutputError(f"cannot write {describe_io_error(path, e)}") from None


class OutputExistsError(FileExistsError, ValueError):
  """An output that must be new already exists (it is never replaced)."""


def _refuse_existing(path: str) -> None:
  raise OutputExistsError(f"refusing to overwrite existing file {path} (choose another path "
                          "or delete it)")


def _publish_new(temporary: str, path: str) -> None:
  """Renames temporary onto path unless path exists, without a window between the check and
  the rename where it can (a hard link fails on an existing name; rename would not)."""
  if "://" in path:
    tf.io.gfile.rename(temporary, path, overwrite=False)  # refuses an existing path
    return
  try:
    os.link(temporary, path)
  except FileExistsError:
    _refuse_existing(path)
  except OSError:  # a file system without hard links
    if os.path.exists(path):
      _refuse_existing(path)
    os.replace(temporary, path)
    return
  os.remove(temporary)


@contextlib.contextmanager
def atomic_path(path: str, signature: str | Callable[[str], bool] | None) -> Iterator[str]:
  """Yields a temporary path beside `path` for the caller to write (any writer: a GFile, a
  TFRecordWriter), then renames it onto `path`, so a killed run never leaves a partial file
  there (and the next run removes the killed run's temporary). An existing `path` is replaced
  only if it is an earlier output of the same kind: it starts with `signature`, or
  `signature(path)` is true; anything else is refused, so a mistyped path cannot destroy a
  user's file. With signature None, `path` must not exist and is never replaced
  (OutputExistsError). gs:// paths work.

  Raises:
    OutputError: the path cannot be written (the message names it).
    FileExistsError: path holds something that may not be replaced.
  """
  if signature is None:
    if tf.io.gfile.exists(path):
      _refuse_existing(path)
  else:
    check_output(path, signature)
  try:
    parent = os.path.dirname(path)
    if parent and not tf.io.gfile.exists(parent):
      tf.io.gfile.makedirs(parent)
    for stale in remove_stale_temporaries(path):
      logging.info("removed %s, left by a killed run", stale)
  except (tf.errors.OpError, OSError) as e:
    raise OutputError(f"cannot write {describe_io_error(path, e)}") from None
  temporary = _temporary(path)
  if "://" not in temporary:
    remove_at_exit(temporary)
  try:
    yield temporary
    try:
      if signature is None:
        _publish_new(temporary, path)
      else:
        tf.io.gfile.rename(temporary, path, overwrite=True)
    except OutputExistsError:
      raise
    except (tf.errors.OpError, OSError) as e:
      raise OutputError(f"cannot write {describe_io_error(path, e)}") from None
  finally:
    with contextlib.suppress(tf.errors.OpError):  # (the error that got us here is raised)
      if tf.io.gfile.exists(temporary):
        tf.io.gfile.remove(temporary)
    keep(temporary)


@contextlib.contextmanager
def atomic_output(path: str, signature: str | Callable[[str], bool] | None,
                  binary: bool = False) -> Iterator[IO]:
  """atomic_path, with the temporary opened for writing (text, or bytes if binary)."""
  with atomic_path(path, signature) as temporary:
    try:
      f = tf.io.gfile.GFile(temporary, "wb" if binary else "w")
      f.write(b"" if binary else "")  # opens it: an unwritable place fails here, by name
    except (tf.errors.OpError, OSError) as e:
      raise OutputError(f"cannot write {describe_io_error(path, e)}") from None
    try:
      yield f
      try:
        f.close()  # remote files are uploaded here
      except tf.errors.OpError as e:
        raise OutputError(f"cannot write {describe_io_error(path, e)}") from None
    finally:
      with contextlib.suppress(tf.errors.OpError):  # (the error that got us here is raised)
        f.close()


# This process's local temporaries (atomic_output's files, extracted bundles): removed at
# exit, a normal one or by SIGTERM (see exit_on_sigterm).
_TEMPORARIES: set[str] = set()


def remove_at_exit(path: str) -> None:
  _TEMPORARIES.add(path)


def keep(path: str) -> None:
  """path is no longer a temporary (renamed into place, or kept on purpose)."""
  _TEMPORARIES.discard(path)


@atexit.register
def _remove_temporaries() -> None:
  for path in list(_TEMPORARIES):
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      with contextlib.suppress(OSError):
        os.remove(path)


def exit_on_sigterm() -> None:
  """Makes SIGTERM (kill, timeout, a job scheduler) remove this process's temporaries and
  exit at once with 143. (Raising SystemExit would be lost if the signal came during a
  __del__. SIGKILL cannot be caught: the next run writing the same output removes that
  temporary.)"""

  def terminate(signum, frame):
    _remove_temporaries()
    os._exit(128 + signum)

  signal.signal(signal.SIGTERM, terminate)


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
  write_json(path, values, signature=is_metrics_json)


def write_json(path: str, values: dict,
               signature: str | Callable[[str], bool] | None = None) -> None:
  """A JSON object, atomically. It may replace an earlier file of the same kind: by default
  one that starts with the same first key."""
  text = json.dumps(values, indent=1) + "\n"
  with atomic_output(path, signature=signature or text[:text.index(":")]) as f:
    f.write(text)
