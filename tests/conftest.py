"""Shared helpers: tiny TFRecords written by the tests themselves, and paths to real data."""

import os
import pathlib
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
import tensorflow as tf

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED = REPO.parent / "shared" / "data" / "yt8m"


def run_cli(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
  """Runs one of the project's command lines (path relative to the repository) in a fresh
  Python, as a user would; with check, a non-zero exit fails the test with its stderr."""
  proc = subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True,
                        text=True, cwd=REPO, timeout=600)
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def padded_videos(num_frames, t: int, dim: int, seed: int = 0, pad_value: float = 0.0):
  """[B, t, dim] random raw frames: row b has num_frames[b] frames, then pad_value; and the
  [B] int32 frame counts."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(len(num_frames), t, dim)).astype(np.float32)
  for b, n in enumerate(num_frames):
    x[b, n:] = pad_value
  return x, np.asarray(num_frames, np.int32)


def numpy_lstm(frames, kernel, recurrent, bias):
  """Keras LSTM maths (gate order i, f, c, o) over every row of frames [S, F]: the outputs
  [S, U] and the final cell state."""
  units = recurrent.shape[0]
  h, c, outputs = np.zeros(units), np.zeros(units), []

  def sigmoid(v):
    return 1 / (1 + np.exp(-v))

  for frame in frames:
    z = frame @ kernel + h @ recurrent + bias
    i, f, g, o = (z[k * units:(k + 1) * units] for k in range(4))
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    outputs.append(h)
  return np.array(outputs), c


def frames(num_frames: int, size: int, offset: int = 0) -> np.ndarray:
  """Distinct, recognisable uint8 frames: frame t holds (t + offset + column) % 256."""
  t = np.arange(num_frames)[:, None] + offset + np.arange(size)[None, :]
  return (t % 256).astype(np.uint8)


def sequence_example(video_id="vid", labels=(1,), num_frames=5, rgb=None, audio=None,
                     id_key="id", with_labels=True, segments=()) -> bytes:
  """A frame-level record; rgb/audio default to `frames(...)`, pass arrays to override;
  segments: 2019 rated (label, start time, score) triples."""
  ex = tf.train.SequenceExample()
  if video_id is not None:
    ex.context.feature[id_key].bytes_list.value.append(video_id.encode())
  if with_labels:
    ex.context.feature["labels"].int64_list.value.extend(labels)
  for label, start, score in segments:
    ex.context.feature["segment_labels"].int64_list.value.append(label)
    ex.context.feature["segment_start_times"].int64_list.value.append(start)
    ex.context.feature["segment_scores"].float_list.value.append(score)
  rgb = frames(num_frames, 1024) if rgb is None else rgb
  audio = frames(num_frames, 128, offset=7) if audio is None else audio
  for name, values in (("rgb", rgb), ("audio", audio)):
    feature_list = ex.feature_lists.feature_list[name]
    for row in values:
      feature_list.feature.add().bytes_list.value.append(np.asarray(row, np.uint8).tobytes())
  return ex.SerializeToString()


def example(video_id="vid", labels=(1,), mean_rgb=None, mean_audio=None, id_key="id",
            with_labels=True) -> bytes:
  """A video-level record."""
  ex = tf.train.Example()
  ex.features.feature[id_key].bytes_list.value.append(video_id.encode())
  if with_labels:
    ex.features.feature["labels"].int64_list.value.extend(labels)
  mean_rgb = np.linspace(-1, 1, 1024) if mean_rgb is None else mean_rgb
  mean_audio = np.linspace(1, -1, 128) if mean_audio is None else mean_audio
  ex.features.feature["mean_rgb"].float_list.value.extend(mean_rgb)
  ex.features.feature["mean_audio"].float_list.value.extend(mean_audio)
  return ex.SerializeToString()


def write_records(path, records) -> str:
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in records:
      writer.write(record)
  return str(path)


@pytest.fixture
def shared_data():
  if not SHARED.is_dir():
    pytest.skip(f"real YouTube-8M data not present at {SHARED} (it sits beside the checkout "
                "as ../shared/data/yt8m)")
  return SHARED


@pytest.fixture(scope="session")
def frame_data(tmp_path_factory):
  """Tiny frame-level shards: 24 videos whose label is visible in their frames."""
  folder = tmp_path_factory.mktemp("frames")
  rng = np.random.default_rng(0)
  for shard in range(2):
    records = []
    for i in range(12):
      label = int(rng.integers(0, 4))
      n = int(rng.integers(3, 40))
      rgb = rng.integers(0, 256, (n, 1024)).astype(np.uint8)
      rgb[:, label * 10:(label + 1) * 10] = 255
      records.append(sequence_example(f"s{shard}v{i}", labels=(label,), num_frames=n, rgb=rgb))
    write_records(folder / f"train{shard}.tfrecord", records)
  return folder
