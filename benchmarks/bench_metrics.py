"""Speed of yt8m.metrics against a straightforward per-item Python implementation.

  python -m benchmarks.bench_metrics [--num_videos=100000] [--num_classes=3862]

Both compute Hit@1, PERR, GAP@20 and mAP over the same random predictions (float32, fed in
batches of 1024 videos as an eval loop would) and must agree to 1e-9. Reports the median of
--repeats runs of the vectorised code and of --reference_repeats runs of the reference.
"""

import statistics
import time

import numpy as np
from absl import app, flags

from benchmarks import metrics_reference
from yt8m import metrics

flags.DEFINE_integer("num_videos", 100_000, "Videos.")
flags.DEFINE_integer("num_classes", 3862, "Classes.")
flags.DEFINE_integer("batch_size", 1024, "Videos per accumulate() call.")
flags.DEFINE_integer("repeats", 5, "Runs of the vectorised implementation.")
flags.DEFINE_integer("reference_repeats", 1, "Runs of the per-item reference (slow).")
FLAGS = flags.FLAGS


def make_data(num_videos, num_classes, seed=0):
  rng = np.random.default_rng(seed)
  predictions = rng.random((num_videos, num_classes), dtype=np.float32)
  labels = np.zeros((num_videos, num_classes), np.float32)
  # About 3 labels per video, frequent classes first as in the real vocabularies.
  counts = rng.poisson(2.0, num_videos) + 1
  weights = 1.0 / np.arange(1, num_classes + 1)
  weights /= weights.sum()
  rows = np.repeat(np.arange(num_videos), counts)
  labels[rows, rng.choice(num_classes, size=rows.size, p=weights)] = 1.0
  # Make the scores informative so that the metrics are not near zero.
  predictions += labels * rng.random(labels.shape, dtype=np.float32) * 0.5
  return predictions, labels


def vectorised(predictions, labels, batch_size):
  m = metrics.EvaluationMetrics(predictions.shape[1], top_k=20)
  for start in range(0, len(predictions), batch_size):
    m.accumulate(predictions[start:start + batch_size], labels[start:start + batch_size])
  return m.get()


def timed(fn, repeats):
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), result


def main(_):
  predictions, labels = make_data(FLAGS.num_videos, FLAGS.num_classes)
  fast_s, fast = timed(lambda: vectorised(predictions, labels, FLAGS.batch_size),
                       FLAGS.repeats)
  ref_s, ref = timed(lambda: metrics_reference.evaluate(predictions, labels, 20),
                     FLAGS.reference_repeats)
  worst = max(abs(fast[k] - ref[k]) for k in ("hit_at_one", "perr", "gap", "map"))
  print(f"videos={FLAGS.num_videos} classes={FLAGS.num_classes}")
  for key in ("hit_at_one", "perr", "gap", "map"):
    print(f"  {key:10s} vectorised={fast[key]:.12f} reference={ref[key]:.12f}")
  print(f"max abs difference: {worst:.2e}")
  print(f"vectorised: {fast_s:.2f} s (median of {FLAGS.repeats})")
  print(f"per-item reference: {ref_s:.1f} s (median of {FLAGS.reference_repeats})")
  print(f"speed-up: {ref_s / fast_s:.0f}x")
  if worst > 1e-9:
    raise SystemExit("vectorised and reference results differ")


if __name__ == "__main__":
  app.run(main)
