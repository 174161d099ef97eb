"""Frame-level records read by slicing their bytes: the fast path of yt8m.readers.

In a frame-level YouTube-8M `SequenceExample` every frame of a feature list is one `Feature`
holding one `BytesList` with one byte string of fixed size (1024 for `rgb`, 128 for `audio`).
In the canonical protobuf encoding (what TensorFlow and the official data write) such a frame
is always the same bytes, a header and then the payload:

  0x0A varint(feature_len)  0x0A varint(bytes_list_len)  0x0A varint(size)  <size bytes>

so frame t of a list starts at list_start + t * stride. `locate` walks the few length-prefixed
fields above the frames (the top-level context and feature_lists fields, the feature_lists map
entries) with small TF ops, and then checks the header of EVERY frame of the wanted lists. Only
when all of it matches is the record read here; `gather` then cuts just the wanted frames out
of the serialized record, so a student reading k frames never copies the others.

Anything else (another field or a repeated one at the top level, a map entry whose value comes
before its key, a repeated or missing key, a frame of another size, non-minimal varints, ...) is
not an error here: `locate` says `ok = False` and the caller parses the record with
`tf.io.parse_single_sequence_example`, which gives the same values, or today's error.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Sequence

import tensorflow as tf

from yt8m import readers

_LENGTH_DELIMITED_1 = 0x0A  # field 1, wire type 2
_LENGTH_DELIMITED_2 = 0x12  # field 2, wire type 2
_MAX_VARINT_BYTES = 4  # lengths below 2**28; a longer one sends the record to the full parser
_MAX_ENTRIES = 64  # feature lists walked before giving up (real data has 2)
# Off by default: on the reference machine this reader is exact but SLOWER than parsing each
# record with tf.io.parse_single_sequence_example (python -m benchmarks.bench_reader; README,
# "Reader speed"). True sends every frame-level batch through parse_batch (tests, benchmark).
ENABLED = False


def _varint_bytes(value: int) -> bytes:
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


@dataclasses.dataclass(frozen=True)
class FrameLayout:
  """The canonical bytes of one frame of `size` bytes inside a FeatureList."""
  size: int
  header: bytes  # everything before the payload
  stride: int  # header + payload: the distance between consecutive frames

  @classmethod
  def for_size(cls, size: int) -> "FrameLayout":
    bytes_list = bytes([_LENGTH_DELIMITED_1]) + _varint_bytes(size)
    bytes_list_len = len(bytes_list) + size
    feature = bytes([_LENGTH_DELIMITED_1]) + _varint_bytes(bytes_list_len) + bytes_list
    feature_len = len(feature) + size
    header = bytes([_LENGTH_DELIMITED_1]) + _varint_bytes(feature_len) + feature
    return cls(size=size, header=header, stride=len(header) + size)


def _window(serialized, length, pos, width: int):
  """int32 [B, width]: the bytes of each record from pos (zeros past its end)."""
  raw = tf.strings.substr(serialized, tf.minimum(pos, length), tf.fill(tf.shape(pos), width))
  return tf.cast(tf.io.decode_raw(raw, tf.uint8, fixed_length=width), tf.int32)


def _at(window, at):
  """window[b, at[b]] for every row."""
  return tf.gather(window, at[:, None], batch_dims=1)[:, 0]


def _varint(window, at):
  """(value, byte count, ok) of each row's varint at window[b, at[b]:]; ok = it ends within
  _MAX_VARINT_BYTES bytes."""
  b = tf.gather(window, at[:, None] + tf.range(_MAX_VARINT_BYTES), batch_dims=1)
  more = b >= 0x80
  # Byte i belongs to the varint when every byte before it has its continuation bit set.
  used = tf.math.cumprod(tf.cast(more, tf.int32), axis=1, exclusive=True)
  shifts = tf.constant([7 * i for i in range(_MAX_VARINT_BYTES)], tf.int32)
  value = tf.reduce_sum(tf.bitwise.left_shift(tf.bitwise.bitwise_and(b, 0x7F), shifts) * used, 1)
  return value, tf.reduce_sum(used, 1), ~((used[:, -1] > 0) & more[:, -1])


def _field(serialized, length, pos):
  """(tag, payload start, field end, ok) of each row's length-delimited field at pos."""
  window = _window(serialized, length, pos, 1 + _MAX_VARINT_BYTES)
  value, count, ok = _varint(window, tf.ones_like(pos))
  start = pos + 1 + count
  end = start + value
  return window[:, 0], start, end, ok & (end <= length)


def locate(serialized: tf.Tensor, names: Sequence[str], sizes: Sequence[int]):
  """Where the frames of each named feature list start, for records in the canonical layout.

  Args:
    serialized: [B] strings, SequenceExamples.
    names, sizes: the F feature lists to find and their frame sizes in bytes.

  Returns:
    (ok, starts, counts): ok [B] bool; starts [B, F] int32, the offset of frame 0's header in
    each list; counts [B, F] int32, its number of frames. starts and counts mean something
    only where ok.
  """
  layouts = [FrameLayout.for_size(size) for size in sizes]
  num = len(names)
  length = tf.strings.length(serialized)
  zero = tf.zeros_like(length)
  # Top level: exactly one context (field 1) and one feature_lists (field 2), in either order.
  tag0, start0, end0, ok0 = _field(serialized, length, zero)
  tag1, start1, end1, ok1 = _field(serialized, length, end0)
  tags_ok = (((tag0 == _LENGTH_DELIMITED_1) & (tag1 == _LENGTH_DELIMITED_2)) |
             ((tag0 == _LENGTH_DELIMITED_2) & (tag1 == _LENGTH_DELIMITED_1)))
  ok = ok0 & ok1 & tags_ok & (end1 == length)
  lists_first = tag0 == _LENGTH_DELIMITED_2
  lists_start = tf.where(lists_first, start0, start1)
  lists_end = tf.where(lists_first, end0, end1)

  names_tensor = tf.constant([list(names)])  # [1, F]
  name_lengths = tf.constant([[len(n.encode()) for n in names]], tf.int32)
  strides = tf.constant([[layout.stride for layout in layouts]], tf.int32)
  max_name = max(len(n.encode()) for n in names)
  # A map entry: 0x0A len | 0x0A keylen key | 0x12 len FeatureList. The window reaches the
  # value's header for any of our names.
  width = 1 + _MAX_VARINT_BYTES + 2 + max_name + 1 + _MAX_VARINT_BYTES

  def more(i, pos, ok, starts, counts, seen):
    return tf.reduce_any(ok & (pos < lists_end)) & (i < _MAX_ENTRIES)

  def entry(i, pos, ok, starts, counts, seen):
    active = ok & (pos < lists_end)
    window = _window(serialized, length, pos, width)
    size, used, ok_size = _varint(window, tf.ones_like(pos))
    entry_end = pos + 1 + used + size
    key_at = 1 + used  # where the key's tag sits in the window
    key_len = _at(window, key_at + 1)
    # A key whose tag is not where a canonical entry has it (say, the value came first) might
    # be ours: the full parser decides.
    key_ok = (_at(window, key_at) == _LENGTH_DELIMITED_1) & (key_len < 0x80)
    key = tf.strings.substr(serialized, tf.minimum(pos + key_at + 2, length),
                            tf.minimum(key_len, max_name + 1))
    match = (tf.equal(key[:, None], names_tensor) & tf.equal(key_len[:, None], name_lengths) &
             active[:, None])  # [B, F]
    value_at = tf.minimum(key_at + 2 + key_len, width - 1 - _MAX_VARINT_BYTES)
    value_len, value_used, ok_value = _varint(window, value_at + 1)
    value_start = pos + key_at + 2 + key_len + 1 + value_used
    value_ok = ((_at(window, value_at) == _LENGTH_DELIMITED_2) & ok_value &
                (value_start + value_len == entry_end))
    whole = tf.equal(tf.math.floormod(value_len[:, None], strides), 0)
    ours_ok = value_ok & ~tf.reduce_any(match & (~whole | seen), 1)
    entry_ok = (ok_size & (window[:, 0] == _LENGTH_DELIMITED_1) & (entry_end <= lists_end) &
                key_ok & (~tf.reduce_any(match, 1) | ours_ok))
    starts = tf.where(match, value_start[:, None], starts)
    counts = tf.where(match, value_len[:, None] // strides, counts)
    return (i + 1, tf.where(active, entry_end, pos), ok & (~active | entry_ok), starts, counts,
            seen | match)

  zeros = tf.zeros_like(tf.concat([length[:, None]] * num, 1))
  _, pos, ok, starts, counts, seen = tf.while_loop(
      more, entry, (tf.constant(0), lists_start, ok, zeros, zeros, tf.cast(zeros, tf.bool)))
  ok = ok & tf.equal(pos, lists_end) & tf.reduce_all(seen, 1)
  # Every frame of every wanted list must have the canonical header.
  for f, layout in enumerate(layouts):
    count = tf.where(ok, counts[:, f], 0)
    frame = tf.range(tf.reduce_max(tf.concat([count, [0]], 0)))[None, :]
    real = frame < count[:, None]
    positions = tf.where(real, starts[:, f:f + 1] + frame * layout.stride, 0)
    heads = tf.strings.substr(serialized[:, None], tf.minimum(positions, length[:, None]),
                              tf.fill(tf.shape(positions), len(layout.header)))
    ok = ok & tf.reduce_all(tf.equal(heads, layout.header) | ~real, 1)
  return ok, starts, counts


def gather(serialized: tf.Tensor, starts: tf.Tensor, indices: tf.Tensor, size: int) -> tf.Tensor:
  """[B, T] strings of `size` bytes: frame indices[b, t] (>= 0) of the list of record b whose
  frame 0 starts at starts[b] (from `locate`)."""
  layout = FrameLayout.for_size(size)
  positions = starts[:, None] + len(layout.header) + indices * layout.stride
  return tf.strings.substr(serialized[:, None], positions, tf.fill(tf.shape(positions), size))


def _fallback_note(paths, indices, located):
  """One log line per batch that has records the full parser reads: how many, and the first."""
  first = tf.argmax(tf.cast(~located, tf.int32), output_type=tf.int32)
  return tf.print(
      "yt8m reader:", tf.reduce_sum(tf.cast(~located, tf.int32)), "of", tf.size(located),
      "records of this batch are not in the canonical frame-level layout and were read with the "
      "full parser (same values, slower); first:", paths[first], "record", indices[first],
      output_stream=sys.stderr)


def can_parse_batches(config: "readers.ReaderConfig") -> bool:
  """Whether `parse_batch` handles this config (2019 segments go record by record)."""
  return ENABLED and config.frame_features and not config.segment_mode


def parse_batch(paths, indices, serialized, config: "readers.ReaderConfig", training: bool,
                seed: int) -> dict:
  """A [B] batch of frame-level records -> the batch `readers._parse_frame_level` gives for
  each, bit for bit. Records in the canonical layout are cut out of their bytes; if any record
  of the batch is not, or would fail a check, the whole batch goes record by record through
  `readers._parse_frame_level` (which raises today's error for a bad record)."""
  names, sizes = config.feature_names, config.feature_sizes
  context, _, _ = tf.io.parse_sequence_example(serialized, context_features={
      "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
      "video_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
      "labels": tf.io.VarLenFeature(tf.int64),
  })
  video_ids = readers._video_id(context["id"], context["video_id"])
  labels = context["labels"]
  num_rows = tf.shape(serialized)[0]
  located, starts, counts = locate(serialized, names, sizes)
  # Exactly the conditions of readers' checks: a record failing one takes the slow path, which
  # raises its error.
  label_count = tf.math.bincount(tf.cast(labels.indices[:, 0], tf.int32), minlength=num_rows,
                                 maxlength=num_rows)
  bad_label = (labels.values < 0) | (labels.values >= config.num_classes)
  bad_rows = tf.math.bincount(tf.cast(tf.boolean_mask(labels.indices[:, 0], bad_label), tf.int32),
                              minlength=num_rows, maxlength=num_rows)
  valid = (tf.strings.length(video_ids) > 0) & (bad_rows == 0) & tf.reduce_all(counts > 0, 1)
  if config.require_labels:
    valid &= label_count > 0
  fast = tf.reduce_all(located & valid)

  def cut():
    num_frames = tf.minimum(counts[:, 0], config.max_frames)
    if config.selects_in_reader and not config.teacher_frames:
      frames = _selected(num_frames, video_ids, config, training, seed)
    else:
      frames = tf.range(config.max_frames)[None, :]
      frames = tf.where(frames < num_frames[:, None], frames, -1)
    real = frames >= 0
    parts = []
    for f, (_name, size) in enumerate(zip(names, sizes, strict=True)):
      available = counts[:, f:f + 1]
      picked = gather(serialized, starts[:, f], tf.clip_by_value(frames, 0, available - 1), size)
      values = readers.dequantize(tf.io.decode_raw(picked, tf.uint8))
      # As readers: rows past a shorter feature's end are value * 0, padding is +0.
      values *= tf.cast(frames < available, tf.float32)[..., None]
      parts.append(tf.where(real[..., None], values, 0.0))
    features = tf.ensure_shape(tf.concat(parts, axis=-1),
                               [None, frames.shape[1], config.feature_dim])
    extra = {}
    if config.teacher_frames:
      extra = {"teacher_features": features, "teacher_num_frames": num_frames}
      frames = _selected(num_frames, video_ids, config, training, seed)
      real = frames >= 0
      features = tf.ensure_shape(
          tf.where(real[..., None], tf.gather(features, tf.maximum(frames, 0), batch_dims=1),
                   0.0), [None, config.student_frames, config.feature_dim])
    pairs = tf.stack([labels.indices[:, 0], labels.values], axis=1)
    return {
        **extra,
        "video_ids": video_ids,
        "features": features,
        "num_frames": tf.reduce_sum(tf.cast(real, tf.int32), 1),
        "labels": readers._multi_hot(pairs, num_rows, config.num_classes),
        "frame_indices": frames,
    }

  def record_by_record():
    with tf.control_dependencies([_fallback_note(paths, indices, located)]):
      return readers._parse_records(paths, tf.identity(indices), serialized, config, training,
                                    seed)

  out = tf.cond(fast, cut, lambda: tf.cond(tf.reduce_all(located), lambda: readers._parse_records(
      paths, indices, serialized, config, training, seed), record_by_record))
  # Keep a static batch size (drop_remainder) as batching parsed records would.
  return {key: tf.ensure_shape(value, serialized.shape[:1] + value.shape[1:])
          for key, value in out.items()}


def _selected(num_frames, video_ids, config, training, seed):
  """[B, k] the student's frames of each video (readers._select), padded with -1."""
  k = config.student_frames

  def one(args):
    n, video_id = args
    picked = readers._select(n, video_id, config, training, seed)
    return tf.pad(picked, [[0, k - tf.size(picked)]], constant_values=-1)

  return tf.map_fn(one, (num_frames, video_ids), fn_output_signature=tf.TensorSpec([k], tf.int32))
