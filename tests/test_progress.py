"""Progress lines (count, rate, ETA by count or by bytes), the bytes a pass reads, and what
watch-mode eval says while it waits."""

import io

import pytest
from absl import logging

from conftest import example, sequence_example, write_records
from yt8m import eval_lib, progress, readers


class Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


@pytest.fixture
def clock(monkeypatch):
  fake = Clock()
  monkeypatch.setattr(progress.time, "monotonic", fake)
  return fake


def test_format_seconds():
  assert [progress.format_seconds(s) for s in (0, 7.4, 754, 3723)] == [
      "0:00", "0:07", "12:34", "1:02:03"]


def test_plain_lines_with_a_known_total(clock):
  out = io.StringIO()
  p = progress.Progress("eval", total=1000, stream=out, interval=5)
  clock.now += 2
  p.update(100)
  assert out.getvalue() == ""  # not yet 5 s since the start
  clock.now += 3
  p.update(150)
  assert out.getvalue() == "eval: 250/1,000 videos (25%) | 50 videos/s | 0:05 elapsed | ETA 0:15\n"
  clock.now += 15
  p.update(750)
  p.close()
  p.close()  # once only
  lines = out.getvalue().splitlines()
  # All done: one final line, from close().
  assert lines[1:] == ["eval: 1,000/1,000 videos (100%) | 50 videos/s | 0:20 elapsed"]


def test_eta_by_bytes_when_the_count_is_unknown(clock):
  out = io.StringIO()
  p = progress.Progress("inference", total_bytes=4000, stream=out, interval=0)
  clock.now += 10
  p.update(30, nbytes=1000)
  assert out.getvalue().strip() == ("inference: 30 videos (25% of the bytes) | 3.00 videos/s | "
                                    "0:10 elapsed | ETA 0:30")
  assert p.eta == pytest.approx(30)


def test_no_total_at_all_shows_count_and_rate(clock):
  p = progress.Progress("x", unit="steps", stream=io.StringIO(), quiet=True)
  clock.now += 4
  p.update(400)
  assert p.fraction is None and p.eta is None
  assert p.line() == "x: 400 steps | 100 steps/s | 0:04 elapsed"


def test_quiet_prints_nothing(clock):
  out = io.StringIO()
  with progress.Progress("x", total=2, stream=out, quiet=True, interval=0) as p:
    p.update(2)
  assert out.getvalue() == "" and p.count == 2


def test_bar_on_a_terminal_then_the_final_line(clock):
  out = io.StringIO()
  with progress.Progress("eval", total=10, stream=out, interval=0, bar=True) as p:
    for _ in range(10):
      clock.now += 1
      p.update(1)
  # The bar is transient: what stays is the final line.
  assert out.getvalue().rstrip().endswith(
      "eval: 10/10 videos (100%) | 1.00 videos/s | 0:10 elapsed")


def test_a_pass_reads_exactly_the_files_bytes(tmp_path):
  frame_file = write_records(tmp_path / "f.tfrecord",
                             [sequence_example(f"v{i}", num_frames=3 + 4 * i) for i in range(5)])
  video_file = write_records(tmp_path / "v.tfrecord", [example(f"w{i}") for i in range(7)])
  frame = readers.ReaderConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                               frame_features=True)
  video = readers.ReaderConfig(feature_names=("mean_rgb", "mean_audio"),
                               feature_sizes=(1024, 128), frame_features=False)
  segments = readers.ReaderConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                                  frame_features=True, segment_mode="all",
                                  require_labels=False)
  for files, config in (([frame_file], frame), ([video_file], video), ([frame_file], segments)):
    read = sum(int(b["record_bytes"].sum()) for b in readers.iterate_numpy(files, config, 3))
    assert read == readers.total_bytes(files)


def test_watch_mode_says_what_it_waits_for_and_gives_up(tmp_path, monkeypatch):
  messages = []
  monkeypatch.setattr(logging, "info", lambda fmt, *args: messages.append(fmt % args))
  assert list(eval_lib.new_checkpoints(str(tmp_path), False, 0.01, 0.05)) == []
  assert messages[0].startswith(f"Waiting for a first checkpoint in {tmp_path} (looking every "
                                "0.01 s; giving up at ")
  assert messages[0].endswith("after 0.05 s without one: --eval_timeout_secs)")
  assert messages[-1] == f"No new checkpoint in {tmp_path} for 0 s; stopping."
  endless = eval_lib.waiting_message("d", "d/ckpt-5", 30, None, 0)
  assert endless == ("Waiting for a checkpoint newer than ckpt-5 in d (looking every 30 s; no "
                     "time limit: --eval_timeout_secs is negative)")


def test_iterate_closes_at_the_end_and_on_an_error(clock):
  out = io.StringIO()
  p = progress.Progress("x", stream=out, interval=1000)
  assert [b for b in p.iterate([1, 2]) if p.update(b) is None] == [1, 2]
  assert out.getvalue() == "x: 3 videos | 0.00 videos/s | 0:00 elapsed\n"

  def failing():
    yield 1
    raise ValueError("bad record")

  out.truncate(0), out.seek(0)
  p = progress.Progress("y", stream=out, interval=1000, bar=True)
  with pytest.raises(ValueError, match="bad record"):
    for batch in p.iterate(failing()):
      p.update(batch)
  assert out.getvalue().rstrip().endswith("y: 1 videos | 0.00 videos/s | 0:00 elapsed")
