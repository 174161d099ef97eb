"""Frame-level records parsed a batch at a time: the default path of yt8m.readers.

`readers._parse_frame_level` parses, checks, decodes and pads ONE record per call, and the
batch is then assembled by copying every row. Here the records are batched first and one
`tf.io.parse_sequence_example` call parses the whole batch in TensorFlow's C++ parser; every
later step (the checks, the frame choice, the decoding, the dequantization) is one vectorised
op over the batch, and the frames stay uint8 until a single dequantizing pass
(`readers.dequantize_frames`), which `ReaderConfig.quantized_frames` leaves to the training or
inference step for every-frame rows. A student's k frames are picked from the parsed byte
strings before anything is decoded.

The values are bit for bit those of the record-by-record path (tests/test_frame_batches.py).
When any record of a batch fails one of the record-by-record path's checks, the batch fails
with `readers.RECHECK_MARK` and the files it came from; `readers.data_errors` then reads those
files record by record, which raises today's one-line error naming the file, record and video.
(The exported serving signature, which has no files, parses such a batch record by record in
the graph instead: `fallback=True`. Keeping that second parser out of the reader's graph makes
every pass about 0.35 s quicker to start: README, "Start-up of a pass".)
Records the C++ parser cannot read at all fail here as they do there, and `readers.data_errors`
finds the record.
"""

from __future__ import annotations

import tensorflow as tf

from yt8m import frame_selection, readers

# True: every frame-level batch outside the 2019 segment modes is parsed here. False sends it
# record by record (the reference the tests compare against, and the benchmark's "per record").
ENABLED = True
# Batches parsed at once by the dataset's map.
PARALLEL_BATCHES = tf.data.AUTOTUNE


def can_parse_batches(config: "readers.ReaderConfig") -> bool:
  """Whether `parse_batch` handles this config (2019 segments go record by record)."""
  return ENABLED and config.frame_features and not config.segment_mode


def parse_batch(paths, indices, serialized, config: "readers.ReaderConfig", training: bool,
                seed: int, positions=None, fallback: bool = False) -> dict:
  """A [B] batch of frame-level records -> the batch `readers._parse_frame_level` gives for
  each, bit for bit (positions: each record's place in the training stream, for `random`).
  A batch with a bad record fails with readers.RECHECK_MARK, or (fallback) is parsed record
  by record in the graph, which raises the record's own error."""
  names = config.feature_names
  context, lists, lengths = tf.io.parse_sequence_example(
      serialized,
      context_features={
          "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
          "video_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
          "labels": tf.io.VarLenFeature(tf.int64),
      },
      sequence_features={name: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
                         for name in names})
  video_ids = readers._video_id(context["id"], context["video_id"])
  labels = context["labels"]
  num_rows = tf.shape(serialized)[0]
  counts = {name: tf.cast(lengths[name], tf.int32) for name in names}
  ok = _records_pass_checks(video_ids, labels, lists, counts, config, num_rows)

  def vectorised():
    num_frames = tf.minimum(counts[names[0]], config.max_frames)
    if config.selects_in_reader and not config.teacher_frames:
      frames = _selected(num_frames, video_ids, config, training, seed, positions)
      quantized, present = _picked_frames(lists, counts, frames, config)
    else:
      frames = tf.range(config.max_frames)[None, :]
      frames = tf.where(frames < num_frames[:, None], frames, -1)
      quantized, present = _every_frame(lists, counts, num_frames, config)
    real = frames >= 0

    def hand_over(key, values, where, every_frame):
      # uint8 to the step (readers.dequantized) for every-frame rows only: there dequantizing
      # is the reader's largest cost; a student's k rows cost the reader little to dequantize
      # (its cost is the file stream: README, "Reader speed").
      if config.quantized_frames and every_frame:
        return {key: values, f"{key}_present": where}
      return {key: readers.dequantize_frames(values, where, config.feature_sizes)}

    teacher = {}
    if config.teacher_frames:
      # The teacher sees every frame; the student's k are gathered from them (no second decode).
      teacher = {**hand_over("teacher_features", quantized, present, True),
                 "teacher_num_frames": num_frames}
      frames = _selected(num_frames, video_ids, config, training, seed, positions)
      real = frames >= 0
      rows = tf.maximum(frames, 0)
      quantized = tf.where(real[..., None], tf.gather(quantized, rows, batch_dims=1),
                           tf.constant(0, tf.uint8))
      present = real[..., None] & tf.gather(present, rows, batch_dims=1)
    pairs = tf.stack([labels.indices[:, 0], labels.values], axis=1)
    return {  # the keys in the order of the record-by-record path
        **teacher,
        "video_ids": video_ids,
        **hand_over("features", quantized, present, not config.selects_in_reader),
        "num_frames": tf.reduce_sum(tf.cast(real, tf.int32), 1),
        "labels": readers._multi_hot(pairs, num_rows, config.num_classes),
        "frame_indices": frames,
    }

  if fallback:
    out = tf.cond(ok, vectorised, lambda: readers._parse_records(  # raises the record's error
        paths, indices, serialized, config, training, seed, positions))
  else:
    with tf.control_dependencies([readers.recheck_unless(ok, paths)]):
      out = vectorised()
  # A static batch size (drop_remainder) as batching parsed records would give.
  num_features = len(config.feature_names)
  shapes = {"features": [config.num_output_frames, config.feature_dim],
            "features_present": [config.num_output_frames, num_features],
            "frame_indices": [config.num_output_frames],
            "teacher_features": [config.max_frames, config.feature_dim],
            "teacher_features_present": [config.max_frames, num_features],
            "labels": [config.num_classes]}
  return {key: tf.ensure_shape(value, serialized.shape[:1] + shapes.get(key, []))
          for key, value in out.items()}


def _records_pass_checks(video_ids, labels, lists, counts, config, num_rows):
  """True when every record passes the checks of readers._parse_frame_level."""
  label_rows = tf.cast(labels.indices[:, 0], tf.int32)
  bad_label = (labels.values < 0) | (labels.values >= config.num_classes)
  ok = tf.reduce_all(tf.strings.length(video_ids) > 0) & ~tf.reduce_any(bad_label)
  if config.require_labels:
    label_count = tf.math.bincount(label_rows, minlength=num_rows, maxlength=num_rows)
    ok &= tf.reduce_all(label_count > 0)
  for name, size in zip(config.feature_names, config.feature_sizes, strict=True):
    frame = tf.range(tf.shape(lists[name])[1])[None, :]
    right_size = tf.equal(tf.strings.length(lists[name]), size) | (frame >= counts[name][:, None])
    ok &= tf.reduce_all(counts[name] > 0) & tf.reduce_all(right_size)
  return ok


def _every_frame(lists, counts, num_frames, config):
  """([B, max_frames, D] uint8, [B, max_frames, F] bool): frames 0..num_frames-1 of every
  feature, 0 after, and which rows of each feature are real."""
  parts = []
  for name, size in zip(config.feature_names, config.feature_sizes, strict=True):
    # Rows past a record's own list are "" in the batch; fixed_length decodes them as zeros.
    part = tf.io.decode_raw(lists[name], tf.uint8, fixed_length=size)[:, :config.max_frames]
    parts.append(tf.pad(part, [[0, 0], [0, config.max_frames - tf.shape(part)[1]], [0, 0]]))
  frame = tf.range(config.max_frames)[None, :]
  real = frame < num_frames[:, None]
  present = tf.stack([real & (frame < counts[name][:, None]) for name in config.feature_names],
                     axis=-1)
  return tf.concat(parts, axis=-1), present


def _picked_frames(lists, counts, frames, config):
  """([B, k, D] uint8, [B, k, F] bool): the frames[b, t] of each record (-1: padding, 0)."""
  parts, present = [], []
  for name, size in zip(config.feature_names, config.feature_sizes, strict=True):
    last = tf.shape(lists[name])[1] - 1
    picked = tf.gather(lists[name], tf.clip_by_value(frames, 0, last), batch_dims=1)
    present.append((frames >= 0) & (frames < counts[name][:, None]))
    parts.append(tf.where(present[-1][..., None], tf.io.decode_raw(picked, tf.uint8,
                                                                   fixed_length=size),
                          tf.constant(0, tf.uint8)))
  return tf.concat(parts, axis=-1), tf.stack(present, axis=-1)


def _selected(num_frames, video_ids, config, training, seed, positions):
  """[B, k] the student's frames of each video (readers._select), padded with -1."""
  k = config.student_frames
  if not config.draws_frames(training):
    return frame_selection.select_frames_batch(num_frames, k, config.frame_selection,
                                               config.max_frames)
  by_position = positions is not None
  if not by_position:
    positions = tf.fill(tf.shape(num_frames), tf.constant(-1, tf.int64))

  def one(args):
    n, video_id, position = args
    picked = readers._select(n, video_id, config, training, seed,
                             position if by_position else None)
    return tf.pad(picked, [[0, k - tf.size(picked)]], constant_values=-1)

  return tf.map_fn(one, (num_frames, video_ids, positions),
                   fn_output_signature=tf.TensorSpec([k], tf.int32))
