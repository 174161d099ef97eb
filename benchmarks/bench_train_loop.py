"""Training-loop overhead: examples/s with one step per compiled call and a host sync plus
summaries every step (the loop before --steps_per_execution) against many steps per call.

  python -m benchmarks.bench_train_loop [--rounds=3] [--models=LogisticModel,HierarchicalLstmModel]

Each figure is the median over rounds of (steps_long - steps_short) x batch / (time_long -
time_short): differencing two run lengths removes set-up and tracing. Video-level models read
the real 2018 sample shards; frame-level ones a built-in synthetic set.
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
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from yt8m import models, readers, run_config, synthetic, train_lib  # noqa: E402

flags.DEFINE_integer("rounds", 3, "Rounds per setting (median).")
flags.DEFINE_string("models", "LogisticModel,HierarchicalLstmModel", "Models to time.")
flags.DEFINE_integer("batch_size", 16, "Batch size (small: the per-step overhead shows).")
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
    train_lib.train(run, files, config, tf.distribute.OneDeviceStrategy("/cpu:0"))
    return time.perf_counter() - start


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  frame_dir = tempfile.mkdtemp(prefix="bench-loop-")
  frame_files = synthetic.generate(frame_dir, num_videos=400, seed=0, num_shards=2,
                                   top_classes=100)
  for name in FLAGS.models.split(","):
    if name in models.VIDEO_LEVEL_MODELS:
      run = run_config.RunConfig(model=name, feature_names=("mean_rgb", "mean_audio"),
                                 feature_sizes=(1024, 128), frame_features=False)
      files = readers.list_files(SAMPLE)
      short, long = 20, 220
    else:
      run = run_config.RunConfig(model=name, feature_names=("rgb", "audio"),
                                 feature_sizes=(1024, 128), frame_features=True, num_classes=100,
                                 model_hparams={"lstm_cells": 64, "hrnn_block_frames": 15}
                                 if name == "HierarchicalLstmModel" else {})
      files = frame_files
      short, long = 5, 25
    rates = {}
    for label, settings in SETTINGS.items():
      samples = []
      for _ in range(FLAGS.rounds):
        t_short = timed_run(run, files, short, **settings)
        t_long = timed_run(run, files, long, **settings)
        samples.append((long - short) * FLAGS.batch_size / max(t_long - t_short, 1e-9))
      rates[label] = statistics.median(samples)
    base = rates["per step (before)"]
    for label, rate in rates.items():
      print(f"{name:24s} {label:18s} {rate:10.0f} examples/s  {rate / base:5.2f}x")


if __name__ == "__main__":
  app.run(main)
