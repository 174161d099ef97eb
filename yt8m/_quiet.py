"""Quiet start-up for the command lines: TensorFlow's banners and warnings are not our output.

Every yt8m command calls `setup(sys.argv)` before anything imports TensorFlow (yt8m/cli's
package import does it, so `yt8m-*`, `python -m yt8m ...` and the top-level scripts all do).
It then

- sets TF_CPP_MIN_LOG_LEVEL=2 (TensorFlow's C++ INFO and WARNING lines) only where the user
  has not set it;
- imports TensorFlow with file descriptor 2 captured, and writes back everything except the
  start-up banners that TensorFlow prints before its log level applies (the oneDNN notice,
  twice, the CPU-feature notice, absl's "before InitializeLog" preamble); ERROR and FATAL
  lines and anything else are kept;
- ignores Python warnings, unless the user asked for some (`python -W ...`, PYTHONWARNINGS);
- keeps TensorFlow's and Keras' Python logging to errors (SavedModel export's "Writing
  fingerprint ...", whether through the `tensorflow` logger or absl's).

`-v N` / `--verbosity=N` with N >= 1 (absl's flag, also more of our own logging), or a
TF_CPP_MIN_LOG_LEVEL set by the user, leaves TensorFlow's output alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import Iterator, Sequence

# Start-up lines TensorFlow writes straight to the file descriptor, ahead of its log level:
# glog-style INFO/WARNING lines ("I0000 00:00:1796.. 4853 port.cc:153] oneDNN ..."), their
# continuation, and absl's preamble to them.
_BANNER = re.compile(r"[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "
                     r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                     r"|To enable the following instructions: ")
_MARKER = "YT8M_QUIET_TF_CPP_MIN_LOG_LEVEL"


def verbosity(argv: Sequence[str]) -> int | None:
  """The value of absl's --verbosity / -v on a command line (None if not given)."""
  value = None
  for i, arg in enumerate(argv):
    if arg == "--":
      break
    for name in ("--verbosity", "-verbosity", "-v", "--v"):
      if arg == name and i + 1 < len(argv):
        value = argv[i + 1]
      elif arg.startswith(name + "="):
        value = arg[len(name) + 1:]
      elif name == "-v" and arg.startswith("-v") and arg[2:].lstrip("-").isdigit():
        value = arg[2:]
  try:
    return None if value is None else int(value)
  except ValueError:
    return None  # absl will report the bad value


_LIBRARY_PATH = re.compile(r"[/\\](tensorflow|tf_keras|keras|tensorboard)[/\\]")


class _DropLibraryRecords(logging.Filter):
  """Drops the INFO and WARNING records that TensorFlow and Keras log through absl."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or not _LIBRARY_PATH.search(record.pathname)


def is_banner(line: str) -> bool:
  return bool(_BANNER.match(line))


@contextlib.contextmanager
def _without_banners() -> Iterator[None]:
  """Captures file descriptor 2 in the block, then writes back all but the banner lines."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      text = capture.read().decode(errors="replace")
      sys.stderr.write("".join(line for line in text.splitlines(True) if not is_banner(line)))
      sys.stderr.flush()


def setup(argv: Sequence[str] | None = None) -> bool:
  """Makes the process quiet unless -v >= 1 asks otherwise, and imports TensorFlow without
  its banners. Returns whether it was quiet (False too when TensorFlow was already imported:
  too late to help)."""
  argv = sys.argv if argv is None else argv
  if (verbosity(argv) or 0) >= 1 or "tensorflow" in sys.modules:
    return False
  if not sys.warnoptions and "PYTHONWARNINGS" not in os.environ:
    warnings.simplefilter("ignore")
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  # TensorFlow's Python side also logs through absl (SavedModel's "Writing fingerprint ..."):
  # absl's logger carries ours too, so TensorFlow's records are dropped by where they come from.
  from absl import logging as absl_logging  # its logger must exist before we touch it

  absl_logger = absl_logging.get_absl_logger()
  if not any(isinstance(f, _DropLibraryRecords) for f in absl_logger.filters):
    absl_logger.addFilter(_DropLibraryRecords())
  # A level we set ourselves is passed on to child processes (grid scripts start commands):
  # the marker tells them it is not the user's choice.
  ours = os.environ.get(_MARKER) == os.environ.get("TF_CPP_MIN_LOG_LEVEL")
  if "TF_CPP_MIN_LOG_LEVEL" in os.environ and not ours:
    return False  # the user chose TensorFlow's log level: show what it lets through
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = os.environ[_MARKER] = "2"
  with _without_banners():
    import tensorflow  # noqa: F401  (the banners are printed at import)
  return True
