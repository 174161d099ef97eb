"""Cost of the starter's training histograms (yt8m.summaries.write_histograms).

  python -m benchmarks.bench_histograms [--model=DbofModel] [--batch_size=32] [--repeats=5]
      [--tf_summary_histogram]

Builds the model at the starter's default size (DBoF: 8192 clusters, 1024 hidden, MoE over
3,862 classes), then times, median of --repeats runs each: one write_histograms call (every
weight plus the raw input batch, to a real event file), and, as the baseline, one training
step of the same model on a batch of --batch_size 300-frame videos (forward, backward, Adam).
The ratio says what writing histograms at a log step adds to that step. With
--tf_summary_histogram, also the same tensors through tf.summary.histogram (slow).
"""

import statistics
import tempfile
import time

import keras
import tensorflow as tf
from absl import app, flags

from yt8m import models, summaries

flags.DEFINE_string("model", "DbofModel", "A frame-level model of yt8m.models.")
flags.DEFINE_integer("batch_size", 32, "Videos per training step.")
flags.DEFINE_integer("num_classes", 3862, "Classes.")
flags.DEFINE_integer("repeats", 5, "Timed runs of each.")
flags.DEFINE_bool("tf_summary_histogram", False, "Also time tf.summary.histogram.")
FLAGS = flags.FLAGS


def median_seconds(fn, repeats):
  fn()  # warm-up: tracing and first allocations
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  model = models.build_model(FLAGS.model, FLAGS.num_classes)
  frames = tf.random.normal((FLAGS.batch_size, 300, 1152))
  num_frames = tf.fill([FLAGS.batch_size], 300)
  labels = tf.cast(tf.random.uniform((FLAGS.batch_size, FLAGS.num_classes)) < 0.001, tf.float32)
  model(frames, num_frames, training=False)
  optimizer = keras.optimizers.Adam(1e-3)

  @tf.function
  def train_step():
    with tf.GradientTape() as tape:
      predictions = model(frames, num_frames, training=True)["predictions"]
      loss = tf.reduce_mean(keras.losses.binary_crossentropy(labels, predictions))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights),
                                  model.trainable_weights, strict=True))

  writer = tf.summary.create_file_writer(tempfile.mkdtemp())

  def histograms():
    with writer.as_default():
      summaries.write_histograms(model, 1, frames)
    writer.flush()

  def tf_histograms():
    with writer.as_default():
      for weight in model.weights:
        tf.summary.histogram(summaries.histogram_tag(weight.path), weight.value, step=1)
      tf.summary.histogram("model/input_raw", frames, step=1)
    writer.flush()

  step = median_seconds(train_step, FLAGS.repeats)
  hist = median_seconds(histograms, FLAGS.repeats)
  size = sum(int(tf.size(w)) for w in model.weights)
  print(f"{FLAGS.model}: {len(model.weights)} weights, {size / 1e6:.1f} M values")
  print(f"training step (batch {FLAGS.batch_size}): {step * 1000:.0f} ms (median of "
        f"{FLAGS.repeats})")
  print(f"write_histograms: {hist * 1000:.0f} ms (median of {FLAGS.repeats}); "
        f"{hist / step:.2f} x a training step")
  if FLAGS.tf_summary_histogram:
    slow = median_seconds(tf_histograms, FLAGS.repeats)
    print(f"tf.summary.histogram: {slow * 1000:.0f} ms (median of {FLAGS.repeats}); "
          f"{slow / step:.2f} x a training step")


if __name__ == "__main__":
  app.run(main)
