"""Progress of long work: count done, rate, ETA; a bar on a terminal, plain lines elsewhere.

    progress = Progress("eval", unit="videos", total_bytes=readers.total_bytes(files))
    for batch in progress.iterate(batches):   # closes at the end, or on an error
      ...
      progress.update(len(batch["video_ids"]), nbytes=batch["record_bytes"].sum())

  (or `with Progress(...) as progress:`, or an explicit `progress.close()`).

- total: the number of units to do, when known (e.g. training steps, videos of a manifest).
  Without it, total_bytes (the input files' size) and the bytes read give the fraction done,
  and so the ETA; with neither, the line shows the count and rate only.
- Where `stream` (default stderr) is a terminal: a rich progress bar, removed at close.
  Elsewhere (CI, logs, pipes): a plain line every `interval` seconds, and one at close.
- `line()` formats the current state, e.g.
  "eval: 1,024/2,882 videos (36%) | 512 videos/s | 0:02 elapsed | ETA 0:04"; loops that log
  their own lines (the training loop) can call it at their own pace with `quiet=True`, which
  draws no bar and prints no line.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Iterable, Iterator, TypeVar

T = TypeVar("T")


def format_seconds(seconds: float) -> str:
  """0:07, 12:34, 1:02:03."""
  seconds = int(round(max(seconds, 0)))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
  """Counts units done (and bytes read) and reports rate and ETA; see the module docstring."""

  def __init__(self, description: str, total: int | None = None, unit: str = "videos",
               total_bytes: int | None = None, stream: IO[str] | None = None,
               interval: float = 10.0, quiet: bool = False, bar: bool | None = None):
    self.description = description
    self.total = total or None
    self.unit = unit
    self.total_bytes = total_bytes or None
    self.count = 0
    self.bytes = 0
    self._stream = stream or sys.stderr
    self._interval = interval
    self._quiet = quiet
    self._start = self._last_line = time.monotonic()
    self._closed = False
    self._bar = None
    if bar is None:
      bar = not quiet and _isatty(self._stream)
    if bar:
      self._bar = _RichBar(self._stream, description)

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  @property
  def elapsed(self) -> float:
    return time.monotonic() - self._start

  @property
  def rate(self) -> float:
    """Units per second so far."""
    return self.count / self.elapsed if self.elapsed > 0 else 0.0

  @property
  def fraction(self) -> float | None:
    """Share done, by count if the total is known, else by bytes read; None if neither."""
    if self.total:
      return min(self.count / self.total, 1.0)
    if self.total_bytes:
      return min(self.bytes / self.total_bytes, 1.0)
    return None

  @property
  def eta(self) -> float | None:
    """Seconds left at the rate so far (None until something is done, or if unknown)."""
    fraction = self.fraction
    if not fraction:
      return None
    return self.elapsed * (1 - fraction) / fraction

  def line(self, compact: bool = False) -> str:
    """The state as one line; compact (beside a bar, in 80 columns): no elapsed time."""
    done = f"{self.count:,}/{self.total:,}" if self.total else f"{self.count:,}"
    parts = [f"{self.description}: {done} {self.unit}"]
    if self.fraction is not None:
      by_bytes = "" if self.total or compact else " of the bytes"
      parts[0] += f" ({self.fraction:.0%}{by_bytes})"
    parts.append(f"{self.rate:,.0f} {self.unit}/s" if self.rate >= 10
                 else f"{self.rate:.2f} {self.unit}/s")
    if not compact:
      parts.append(f"{format_seconds(self.elapsed)} elapsed")
    if self.eta is not None and not self._closed:
      parts.append(f"ETA {format_seconds(self.eta)}")
    return " | ".join(parts)

  def iterate(self, iterable: Iterable[T]) -> Iterator[T]:
    """Yields from `iterable`, then closes: when it ends, and also when it fails (the bar
    stops before the error is reported)."""
    try:
      yield from iterable
    finally:
      self.close()

  def update(self, n: int = 1, nbytes: int = 0) -> None:
    self.count += int(n)
    self.bytes += int(nbytes)
    if self._quiet:
      return
    if self._bar:
      self._bar.show(self.fraction, self.line(compact=True))
    elif (time.monotonic() - self._last_line >= self._interval
          and (self.fraction or 0) < 1):  # all done: close() prints the final line
      self._print(self.line())

  def close(self) -> None:
    """Ends the bar and prints the final line (once)."""
    if self._closed:
      return
    self._closed = True
    if self._bar:
      self._bar.stop()
    if not self._quiet:
      self._print(self.line())

  def _print(self, text: str) -> None:
    self._last_line = time.monotonic()
    print(text, file=self._stream, flush=True)


def _isatty(stream) -> bool:
  try:
    return stream.isatty()
  except (AttributeError, ValueError):
    return False


class _RichBar:
  """A one-line rich bar with our text beside it (a pulse while the fraction is unknown)."""

  def __init__(self, stream: IO[str], description: str):
    from rich import console, progress  # only terminals pay for rich's import

    self._progress = progress.Progress(
        progress.BarColumn(bar_width=20), progress.TextColumn("{task.fields[text]}"),
        console=console.Console(file=stream), transient=True)
    self._task = self._progress.add_task(description, total=None, text=description)
    self._progress.start()

  def show(self, fraction: float | None, text: str) -> None:
    if fraction is None:
      self._progress.update(self._task, text=text)
    else:
      self._progress.update(self._task, total=1.0, completed=fraction, text=text)

  def stop(self) -> None:
    self._progress.stop()
