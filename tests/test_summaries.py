"""The starter's training histograms (yt8m/summaries.py)."""

import glob

import numpy as np
import tensorflow as tf

from yt8m import models, summaries


def read_histograms(folder):
  """tag -> (step, bucket counts) of the histogram summaries in an event folder."""
  found = {}
  for path in glob.glob(f"{folder}/events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "histograms":
          buckets = tf.make_ndarray(value.tensor)
          found[value.tag] = (event.step, buckets[:, 2])
  return found


def test_tags_follow_the_starter():
  assert summaries.histogram_tag("dbof_model/cluster/kernel") == "tower/cluster_weights"
  assert summaries.histogram_tag("dbof_model/hidden1/bias") == "tower/hidden1_biases"
  assert summaries.histogram_tag("dbof_model/classifier/gates/kernel") == "tower/gates/weights"
  assert summaries.histogram_tag("moe_model/experts/bias") == "tower/experts/biases"
  assert summaries.histogram_tag("dbof_model/input_bn/moving_mean") == "tower/input_bn/moving_mean"


def test_write_histograms_of_every_weight(tmp_path):
  model = models.build_model("DbofModel", 10, dict(dbof_cluster_size=16, dbof_hidden_size=8,
                                                   iterations=4, dbof_add_batch_norm=False))
  frames = tf.random.normal((2, 6, 1152))
  model(frames, tf.constant([6, 3]), training=False)
  writer = tf.summary.create_file_writer(str(tmp_path))
  with writer.as_default():
    tags = summaries.write_histograms(model, step=7, input_raw=frames)
  writer.flush()
  found = read_histograms(tmp_path)
  assert sorted(found) == sorted(tags) and len(set(tags)) == len(tags)
  for tag in ("tower/cluster_weights", "tower/cluster_biases", "tower/hidden1_weights",
              "tower/hidden1_biases", "tower/gates/weights", "tower/experts/weights",
              "tower/experts/biases", "model/input_raw"):
    assert tag in found
  sizes = {summaries.histogram_tag(w.path): int(np.prod(w.shape)) for w in model.weights}
  sizes["model/input_raw"] = 2 * 6 * 1152
  for tag, (step, counts) in found.items():
    assert step == 7 and counts.sum() == sizes[tag]  # every element is counted once


def test_buckets_match_tensorboard():
  from tensorboard.plugins.histogram import summary_v2
  values = tf.random.normal([1000], seed=1)
  for data in (values, tf.fill([7], 2.5), tf.zeros([0])):
    ours = summaries.histogram_buckets(data).numpy()
    theirs = summary_v2._buckets(tf.cast(data, tf.float64)).numpy()
    np.testing.assert_allclose(ours[:, :2], theirs[:, :2], rtol=1e-6)
    assert np.abs(ours[:, 2] - theirs[:, 2]).sum() <= 2  # a value on an edge may move over
