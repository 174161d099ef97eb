"""The training directory: one writer at a time, and a record of what yt8m wrote there.

- A lock (`.yt8m-lock`, an advisory flock held for the whole run) stops a second train.py on
  the same --train_dir with one line naming the holder's pid and host. A lock left by a
  process that died is taken over and reported.
- A manifest (`.yt8m-written.json`) lists every file yt8m wrote there (checkpoints, events,
  model_flags.json, eval events). --start_new_model removes only the files it lists, never
  through a symlink, never outside the directory; files yt8m did not record are left alone,
  and a new run refuses to start over a `checkpoint` index it did not write.
- Stale temporaries that yt8m's checkpoints leave when a save dies (`model.ckpt-N_temp/`)
  are removed at start, under the lock.
- A lost `checkpoint` index or a damaged latest checkpoint falls back to the newest
  complete checkpoint on disk, with a log line.

gs:// and other remote directories get the manifest but no lock (no flock there).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
from typing import Iterable, Iterator

import tensorflow as tf
from absl import logging

from yt8m import outputs
from yt8m.building import CHECKPOINT_NAME

LOCK_FILE = ".yt8m-lock"
MANIFEST_FILE = ".yt8m-written.json"
_CHECKPOINT_FILE = re.compile(re.escape(CHECKPOINT_NAME) +
                              r"-(\d+)\.(index|data-(\d+)-of-(\d+))$")
_TEMP_DIR = re.compile(re.escape(CHECKPOINT_NAME) + r"-\d+_temp$")


class TrainDirError(RuntimeError):
  """The directory is locked, holds files of another origin, or cannot be written."""


def _is_local(path: str) -> bool:
  return "://" not in path


# ----------------------------------------------------------------------------------- lock


@contextlib.contextmanager
def locked(train_dir: str) -> Iterator[None]:
  """Holds the directory's lock for the block (local directories)."""
  if not _is_local(train_dir):
    yield
    return
  import fcntl  # POSIX; yt8m runs on Linux and macOS

  path = os.path.join(train_dir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
      raise TrainDirError(f"--train_dir {train_dir} is in use by another train.py ({holder}); "
                          "wait for it to finish or use another --train_dir") from None
    previous = os.pread(fd, 200, 0).decode(errors="replace").strip()
    if previous:
      logging.warning("%s: took over the lock of a run that did not exit cleanly (%s).",
                      train_dir, previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    os.fsync(fd)
    try:
      yield
    finally:
      os.ftruncate(fd, 0)  # a clean exit leaves an empty lock file
  finally:
    os.close(fd)  # releases the flock


# ------------------------------------------------------------------------------- manifest


def _manifest_path(train_dir: str) -> str:
  return os.path.join(train_dir, MANIFEST_FILE)


def read_manifest(train_dir: str) -> dict:
  path = _manifest_path(train_dir)
  if not tf.io.gfile.exists(path):
    return {"files": []}
  try:
    with tf.io.gfile.GFile(path) as f:
      data = json.load(f)
    data.setdefault("files", [])
    return data
  except (ValueError, tf.errors.OpError) as e:
    raise TrainDirError(f"{path} is unreadable ({e}); remove it to forget what earlier runs "
                        "wrote (then yt8m deletes nothing of theirs)") from None


def _write_manifest(train_dir: str, data: dict) -> None:
  text = json.dumps(data, indent=1, sort_keys=True) + "\n"
  with outputs.atomic_output(_manifest_path(train_dir), signature="{") as f:
    f.write(text)


def record(train_dir: str, paths: Iterable[str] = (), **fields) -> None:
  """Adds files (absolute, or relative to train_dir) and fields to the manifest."""
  data = read_manifest(train_dir)
  names = set(data["files"])
  for p in paths:
    names.add(os.path.relpath(p, train_dir) if os.path.isabs(p) or "://" in p else p)
  data["files"] = sorted(names)
  data.update(fields)
  _write_manifest(train_dir, data)


def new_event_files(folder: str, before: set[str]) -> list[str]:
  """The events files this process created in folder (its pid is in their names)."""
  if not tf.io.gfile.isdir(folder):
    return []
  mark = f".{os.getpid()}."
  return [os.path.join(folder, n) for n in tf.io.gfile.listdir(folder)
          if n.startswith("events.out.tfevents.") and mark in n and n not in before]


def listing(folder: str) -> set[str]:
  return set(tf.io.gfile.listdir(folder)) if tf.io.gfile.isdir(folder) else set()


def _inside(train_dir: str, relative: str) -> str | None:
  """The file's path if it lies inside train_dir without passing through a symlink."""
  if os.path.isabs(relative) or ".." in relative.split("/"):
    return None
  if not _is_local(train_dir):
    return os.path.join(train_dir, relative)
  current = os.path.abspath(train_dir)
  for part in relative.split("/"):
    current = os.path.join(current, part)
    if os.path.islink(current):
      return None
  return current


def start_new(train_dir: str) -> int:
  """--start_new_model: removes the files earlier yt8m runs recorded writing, and refuses
  when a checkpoint index it did not write would be picked up. Returns the count removed."""
  listed = read_manifest(train_dir)["files"]
  removed = 0
  for relative in listed:
    path = _inside(train_dir, relative)
    if path is None:
      logging.warning("--start_new_model: not removing %s (outside %s or through a link)",
                      relative, train_dir)
      continue
    if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
      tf.io.gfile.remove(path)
      removed += 1
  if listed:
    tf.io.gfile.remove(_manifest_path(train_dir))
  for name in ("checkpoint", "model_flags.json"):
    if tf.io.gfile.exists(os.path.join(train_dir, name)):
      raise TrainDirError(
          f"--train_dir {train_dir} holds a {name} file that yt8m did not record writing "
          "(a run of another tool or an older version); --start_new_model removes only what "
          "yt8m wrote: move it away or use another --train_dir")
  logging.info("--start_new_model: removed %d file(s) an earlier run wrote to %s", removed,
               train_dir)
  return removed


def remove_stale_temporaries(train_dir: str) -> None:
  """Checkpoint saves that died leave model.ckpt-N_temp/ folders (call under the lock)."""
  for name in listing(train_dir):
    path = os.path.join(train_dir, name)
    if _TEMP_DIR.match(name) and tf.io.gfile.isdir(path) and not os.path.islink(path):
      logging.info("Removing %s, left by a checkpoint save that did not finish.", path)
      if _is_local(path):
        shutil.rmtree(path)
      else:
        tf.io.gfile.rmtree(path)


# ---------------------------------------------------------------------------- checkpoints


def complete_checkpoints(train_dir: str) -> list[int]:
  """Steps of the checkpoints whose index and every data shard are on disk, ascending."""
  shards: dict[int, set[int]] = {}
  expected: dict[int, int] = {}
  indexed: set[int] = set()
  for name in listing(train_dir):
    found = _CHECKPOINT_FILE.match(name)
    if not found:
      continue
    step = int(found.group(1))
    if found.group(2) == "index":
      indexed.add(step)
    else:
      shards.setdefault(step, set()).add(int(found.group(3)))
      expected[step] = int(found.group(4))
  return sorted(s for s in indexed
                if s in expected and shards[s] == set(range(expected[s])))


def checkpoint_to_resume(train_dir: str) -> str | None:
  """The checkpoint a resumed run restores: the `checkpoint` index's latest when it is
  complete, else the newest complete one on disk (said in the log)."""
  latest = tf.train.latest_checkpoint(train_dir)
  complete = complete_checkpoints(train_dir)
  newest = os.path.join(train_dir, f"{CHECKPOINT_NAME}-{complete[-1]}") if complete else None
  if latest and (not _is_local(latest) or
                 int(latest.rsplit("-", 1)[1]) in complete):
    return latest
  if latest:
    logging.warning("%s is incomplete (missing files); resuming from %s instead.", latest,
                    newest or "scratch: no complete checkpoint is left")
  elif newest:
    logging.warning("%s has no 'checkpoint' index file; resuming from the newest complete "
                    "checkpoint on disk, %s.", train_dir, newest)
  return newest
