"""Is the frame-level dataset a fair test of "seeing fewer frames"? A quick, exact check.

  python scripts/sanity_report.py [--data_dir=DIR] [--num_train=3000] [--num_eval=1000] \
      [--top_classes=100] [--from_video_level=GLOB] [--ks=1,3,10,30] \
      [--strategies=uniform,first,last]

Generates a train and an evaluation split with yt8m.synthetic (unless --data_dir already holds
`train*.tfrecord` and `validate*.tfrecord`), then for every frame budget k and selection
strategy fits a closed-form baseline and scores it on the evaluation split:

  features  the mean over the k selected frames of the L2-normalised 1152-d frame vectors
            (the starter's FrameLevelLogisticModel input), plus "all" = every frame;
  model     one-vs-rest ridge regression onto the multi-hot labels (solved exactly; no
            training loop, no randomness);
  metrics   GAP@20, mAP, Hit@1 with yt8m.metrics.

A trustworthy dataset shows GAP rising with k, and first-k / last-k below uniform-k.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf
from absl import app, flags

from yt8m import metrics, readers, synthetic
from yt8m.models import layers

flags.DEFINE_string("data_dir", "", "Directory with train*/validate* shards; generated into a "
                    "temporary directory when empty.")
flags.DEFINE_integer("num_train", 3000, "Training videos to generate.")
flags.DEFINE_integer("num_eval", 1000, "Evaluation videos to generate.")
flags.DEFINE_integer("top_classes", 100, "Keep labels < N (passed to the generator).")
flags.DEFINE_string("from_video_level", "", "Anchor the generator in these real video-level "
                    "files (built-in mode when empty).")
flags.DEFINE_integer("num_classes", readers.NUM_CLASSES_2018, "Vocabulary size.")
flags.DEFINE_list("ks", ["1", "3", "10", "30"], "Frame budgets.")
flags.DEFINE_list("strategies", ["uniform", "first", "last"], "Frame selection strategies.")
flags.DEFINE_float("ridge", 1.0, "Ridge penalty.")
FLAGS = flags.FLAGS


def mean_frame_features(files, config):
  """[N, 1152] mean of L2-normalised selected frames, and [N, C] labels."""
  ds = readers.build_dataset(files, config, batch_size=64)

  def pool(batch):
    frames = layers.l2_normalize_frames(batch["features"])
    count = tf.cast(tf.maximum(batch["num_frames"], 1), tf.float32)[:, None]
    return tf.reduce_sum(frames, axis=1) / count, batch["labels"]

  features, labels = [], []
  with readers.data_errors(files, reader=config):
    for x, y in ds.map(pool).as_numpy_iterator():
      features.append(x)
      labels.append(y)
  return np.concatenate(features).astype(np.float64), np.concatenate(labels)


def fit_ridge(x, y, penalty):
  x1 = np.hstack([x, np.ones((len(x), 1))])
  gram = x1.T @ x1 + penalty * np.eye(x1.shape[1])
  return np.linalg.solve(gram, x1.T @ y)


def score(weights, x, y):
  predictions = np.hstack([x, np.ones((len(x), 1))]) @ weights
  m = metrics.EvaluationMetrics(y.shape[1], top_k=20)
  m.accumulate(predictions.astype(np.float32), y)
  return m.get()


def main(_):
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = FLAGS.data_dir or tmp
    if not FLAGS.data_dir:
      start = time.time()
      for split, n, seed in (("train", FLAGS.num_train, 1), ("validate", FLAGS.num_eval, 2)):
        synthetic.generate(data_dir, num_videos=n, seed=seed, split=split, num_shards=4,
                           top_classes=FLAGS.top_classes,
                           from_video_level=FLAGS.from_video_level or None,
                           num_classes=FLAGS.num_classes)
      print(f"generated {FLAGS.num_train} + {FLAGS.num_eval} videos in {time.time() - start:.0f} s")
    train_files = readers.list_files(os.path.join(data_dir, "train*.tfrecord"))
    eval_files = readers.list_files(os.path.join(data_dir, "validate*.tfrecord"))
    rows = [("all", "-")] + [(int(k), s) for s in FLAGS.strategies for k in FLAGS.ks]
    print(f"{'k':>4} {'strategy':10s} {'GAP':>7} {'mAP':>7} {'Hit@1':>7}")
    for k, strategy in rows:
      config = readers.ReaderConfig(num_classes=FLAGS.num_classes,
                                    student_frames=None if k == "all" else k,
                                    frame_selection="uniform" if k == "all" else strategy)
      x_train, y_train = mean_frame_features(train_files, config)
      x_eval, y_eval = mean_frame_features(eval_files, config)
      result = score(fit_ridge(x_train, y_train, FLAGS.ridge), x_eval, y_eval)
      print(f"{k:>4} {strategy:10s} {result['gap']:7.4f} {result['map']:7.4f} "
            f"{result['hit_at_one']:7.4f}", flush=True)


if __name__ == "__main__":
  app.run(main)
