"""SavedModel export: the serving contracts of the starter's exporters, on one model.

Signatures:
  serving_default  example_bytes [N] serialized tf.train.Example / SequenceExample strings
                   -> video_id [N], class_indexes [N, top_k] int32, predictions [N, top_k]
                   (the starter's export_model.py contract; parsing, the student's frame
                   selection and the model all run inside the SavedModel)
  serve_frames     frame-level runs: rgb_and_audio [N, T, D] float32 raw (dequantized, not
                   normalised) features and num_frames [N] int32 -> predictions [N, C]
                   (the MediaPipe contract; a student picks its k frames itself)
  serve_features   video-level runs: features [N, D] -> predictions [N, C]
"""

from __future__ import annotations

import keras
import tensorflow as tf

from yt8m import frame_selection, readers
from yt8m import run_config as run_config_lib


def export_saved_model(model: keras.Model, run: run_config_lib.RunConfig, export_dir: str,
                       top_k: int = 20) -> None:
  reader = run.reader_config(require_labels=False)
  k = min(top_k, run.num_classes)
  archive = keras.export.ExportArchive()
  archive.track(model)

  def serve_examples(example_bytes):
    batch = readers.parse_serialized(example_bytes, reader)
    probabilities = model(batch["features"], batch["num_frames"], training=False)["predictions"]
    top = tf.math.top_k(probabilities, k=k)  # ties: the lower class first
    return {"video_id": batch["video_ids"], "class_indexes": top.indices,
            "predictions": top.values}

  archive.add_endpoint("serving_default", serve_examples, input_signature=[
      tf.TensorSpec([None], tf.string, name="example_bytes")])

  if reader.frame_features:

    def serve_frames(rgb_and_audio, num_frames):
      frames, counts = rgb_and_audio, num_frames
      if reader.selects_in_reader:  # (a learned selection picks inside the model)
        frames, counts = frame_selection.gather_selected(
            rgb_and_audio, num_frames, reader.student_frames, reader.frame_selection,
            reader.max_frames)
      return {"predictions": model(frames, counts, training=False)["predictions"]}

    archive.add_endpoint("serve_frames", serve_frames, input_signature=[
        tf.TensorSpec([None, None, reader.feature_dim], tf.float32, name="rgb_and_audio"),
        tf.TensorSpec([None], tf.int32, name="num_frames")])
  else:

    def serve_features(features):
      ones = tf.ones(tf.shape(features)[:1], tf.int32)
      return {"predictions": model(features, ones, training=False)["predictions"]}

    archive.add_endpoint("serve_features", serve_features, input_signature=[
        tf.TensorSpec([None, reader.feature_dim], tf.float32, name="features")])
  archive.write_out(export_dir, verbose=False)  # our command prints its own line
