"""Training-loop overhead: examples/s with one step per compiled call and a host sync plus
summaries every step (the loop before --steps_per_execution) against many steps per call.

  python -m benchmarks.bench_train_loop [--rounds=3] [--models=LogisticModel,HierarchicalLstmModel]

Each figure is the median over rounds of (steps_long - steps_short) x batch / (time_long -
time_short): differencing two run lengths removes set-up and tracing. Every round times every
setting once, in an order that alternates between rounds; a gain is the median of the rounds'
own ratios (benchmarks/timing.py). Frame-level models read a
built-in synthetic set (100 classes). Video-level models read the real 2018 sample shards with
all 3,862 classes (--num_classes=3862: on a CPU the step is then compute-bound, the optimizer
updating 4.4M weights) or random video-level records with fewer classes (default 100: the
overhead-bound case, where the per-step host round trip shows).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from benchmarks import timing  # noqa: E402
from yt8m import models, readers, run_config, synthetic, train_lib  # noqa: E402

flags.DEFINE_integer("rounds", 3, "Rounds per setting (median).")
flags.DEFINE_string("models", "LogisticModel,HierarchicalLstmModel", "Models to time.")
flags.DEFINE_integer("batch_size", 16, "Batch size (small: the per-step overhead shows).")
flags.DEFINE_integer("num_classes", 100, "Classes of the video-level runs (3862: the real "
                     "sample shards).")
FLAGS = flags.FLAGS

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                      "sample", "video_level_2018", "validate000?.tfrecord")
SETTINGS = {"per step (before)": dict(steps_per_execution=1, log_every=1),
            "100 steps a call": dict(steps_per_execution=100, log_every=100)}


def timed_run(run, files, steps, **settings) -> float:
  with tempfile.TemporaryDirectory() as directory:
    keras.utils.set_random_seed(1)
    config = train_lib.TrainConfig(train_dir=directory, batch_size=FLAGS.batch_size,
                                   num_epochs=1000, max_steps=steps, seed=1,
                                   checkpoint_steps=10**6, metrics_every=10**6, **settings)
    start = time.perf_counter()
    result = train_lib.train(run, files, config, tf.distribute.OneDeviceStrategy("/cpu:0"))
    seconds = time.perf_counter() - start
    if result["step"] != steps:
      raise RuntimeError(f"the run ended at step {result['step']}, not {steps}")
    return seconds


def random_video_level(path: str, num_videos: int, num_classes: int) -> list[str]:
  """Video-level records with random features and 1-3 labels below num_classes."""
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(num_videos):
      example = tf.train.Example()
      feature = example.features.feature
      feature["id"].bytes_list.value.append(f"v{i}".encode())
      feature["labels"].int64_list.value.extend(
          rng.choice(num_classes, int(rng.integers(1, 4)), replace=False).tolist())
      feature["mean_rgb"].float_list.value.extend(rng.normal(size=1024).tolist())
      feature["mean_audio"].float_list.value.extend(rng.normal(size=128).tolist())
      writer.write(example.SerializeToString())
  return [path]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  frame_dir = tempfile.mkdtemp(prefix="bench-loop-")
  frame_files = synthetic.generate(frame_dir, num_videos=400, seed=0, num_shards=2,
                                   top_classes=100)
  for name in FLAGS.models.split(","):
    if name in models.VIDEO_LEVEL_MODELS:
      run = run_config.RunConfig(model=name, feature_names=("mean_rgb", "mean_audio"),
                                 feature_sizes=(1024, 128), frame_features=False,
                                 num_classes=FLAGS.num_classes)
      files = (readers.list_files(SAMPLE) if FLAGS.num_classes == readers.NUM_CLASSES_2018
               else random_video_level(os.path.join(frame_dir, "video_level.tfrecord"), 2000,
                                       FLAGS.num_classes))
      # Enough steps that the difference dwarfs the jitter of set-up (about a second).
      short, long = (20, 220) if FLAGS.num_classes == readers.NUM_CLASSES_2018 else (50, 2050)
    else:
      run = run_config.RunConfig(model=name, feature_names=("rgb", "audio"),
                                 feature_sizes=(1024, 128), frame_features=True, num_classes=100,
                                 model_hparams={"lstm_cells": 64, "hrnn_block_frames": 15}
                                 if name == "HierarchicalLstmModel" else {})
      files = frame_files
      short, long = 5, 25
    samples = {label: [] for label in SETTINGS}  # examples/s per round
    for _, label in timing.alternating_rounds(list(SETTINGS), FLAGS.rounds,
                                                        warmup=False):
      t_short = timed_run(run, files, short, **SETTINGS[label])
      t_long = timed_run(run, files, long, **SETTINGS[label])
      samples[label].append((long - short) * FLAGS.batch_size / max(t_long - t_short, 1e-9))
    base = "per step (before)"
    for label, rates in samples.items():
      classes = FLAGS.num_classes if name in models.VIDEO_LEVEL_MODELS else 100
      print(f"{name:22s} {classes:5d} classes {label:18s} {statistics.median(rates):10.0f} "
            f"examples/s  {timing.median_ratio(rates, samples[base]):5.2f}x")


if __name__ == "__main__":
  app.run(main)
