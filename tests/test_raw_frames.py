"""The byte-slicing frame-level reader: bit-identical to the full parser, or it falls back."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import frames, sequence_example, write_records
from yt8m import raw_frames, readers, synthetic

CONFIGS = {
    "teacher": readers.ReaderConfig(num_classes=10),
    "student": readers.ReaderConfig(num_classes=10, student_frames=7),
    "random": readers.ReaderConfig(num_classes=10, student_frames=5, frame_selection="random"),
    "fml": readers.ReaderConfig(num_classes=10, student_frames=10,
                                frame_selection="first_middle_last"),
    "distill": readers.ReaderConfig(num_classes=10, student_frames=4, teacher_frames=True),
    "learned": readers.ReaderConfig(num_classes=10, student_frames=4, frame_selection="learned"),
    "audio_first": readers.ReaderConfig(num_classes=10, feature_names=("audio", "rgb"),
                                        feature_sizes=(128, 1024)),
}


def read(monkeypatch, files, config, sliced, batch_size=4, drop_remainder=False):
  """(element_spec, batches, error message or None) with the slicing reader on or off."""
  monkeypatch.setattr(raw_frames, "ENABLED", sliced)
  ds = readers.build_dataset(files, config, batch_size, drop_remainder=drop_remainder)
  batches = []
  try:
    with readers.data_errors(files, True):
      batches = list(ds.as_numpy_iterator())
  except readers.DataError as e:
    return ds.element_spec, batches, str(e)
  return ds.element_spec, batches, None


def assert_identical(monkeypatch, files, config, **kwargs):
  spec, got, error = read(monkeypatch, files, config, True, **kwargs)
  want_spec, want, want_error = read(monkeypatch, files, config, False, **kwargs)
  assert spec == want_spec
  # TensorFlow's own messages name graph nodes, which differ: compare what comes before.
  assert (error or "").split("{{")[0] == (want_error or "").split("{{")[0]
  assert len(got) == len(want)
  for a, b in zip(got, want, strict=True):
    assert list(a) == list(b)
    for key in a:
      assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
      if a[key].dtype == object:
        assert a[key].tolist() == b[key].tolist(), key
      else:  # bit for bit, -0.0 included
        assert a[key].tobytes() == b[key].tobytes(), key
  return got, error


# Hand-made encodings: the pieces of a SequenceExample, to put together in unusual ways.
def _varint(value):
  return raw_frames._varint_bytes(value)


def _field(number, payload):
  return bytes([number << 3 | 2]) + _varint(len(payload)) + payload


def _feature_list(rows):
  return tf.train.FeatureList(feature=[
      tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.asarray(r, np.uint8).tobytes()]))
      for r in rows]).SerializeToString()


def _entry(key, feature_list):
  return _field(1, _field(1, key.encode()) + _field(2, feature_list))


def _context(video_id="v", labels=(1, 2)):
  features = tf.train.Features()
  if video_id is not None:
    features.feature["id"].bytes_list.value.append(video_id.encode())
  features.feature["labels"].int64_list.value.extend(labels)
  return features.SerializeToString()


def _record(entries, context=None, lists_first=False):
  top = [_field(1, _context() if context is None else context), _field(2, b"".join(entries))]
  return b"".join(top[::-1] if lists_first else top)


def _video(n, offset=0):
  return [_entry("rgb", _feature_list(frames(n, 1024, offset))),
          _entry("audio", _feature_list(frames(n, 128, offset + 7)))]


def located(records, names=("rgb", "audio"), sizes=(1024, 128)):
  ok, _, counts = raw_frames.locate(tf.constant(records), names, sizes)
  return ok.numpy().tolist(), counts.numpy().tolist()


def test_frame_layout_is_the_protobuf_encoding():
  for size in (1, 127, 128, 1024, 20000):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    layout = raw_frames.FrameLayout.for_size(size)
    one_frame = _feature_list([np.frombuffer(payload, np.uint8)])
    assert one_frame == layout.header + payload
    assert layout.stride == len(one_frame)
  assert raw_frames.FrameLayout.for_size(1024).stride == 1033


def test_locate_and_gather_cut_the_right_bytes():
  records = [sequence_example(num_frames=n) for n in (1, 5, 301)]
  ok, counts = located(records)
  assert ok == [True] * 3 and counts == [[1, 1], [5, 5], [301, 301]]
  _, starts, _ = raw_frames.locate(tf.constant(records), ("rgb", "audio"), (1024, 128))
  picked = raw_frames.gather(tf.constant(records), starts[:, 0], tf.constant([[0, 0], [4, 1],
                                                                               [300, 2]]), 1024)
  assert picked.numpy()[2, 0] == frames(301, 1024)[300].tobytes()
  assert picked.numpy()[1, 0] == frames(5, 1024)[4].tobytes()


def test_unusual_encodings_are_located_or_sent_to_the_full_parser():
  n = 4
  visible = _entry("synthetic_visible_labels", tf.train.FeatureList(feature=[
      tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2]))]).SerializeToString())
  rgb, audio = _video(n)
  value_first = _field(1, _field(2, _feature_list(frames(n, 1024))) + _field(1, b"rgb"))
  odd_frame = [np.zeros(1024, np.uint8)] * 2 + [np.zeros(1023, np.uint8)] + \
      [np.zeros(1025, np.uint8)]  # the same total length as 4 good frames
  cases = {
      "canonical": (_record([rgb, audio]), True),
      "lists before context": (_record([rgb, audio], lists_first=True), True),
      "entries reordered, an extra list": (_record([visible, audio, rgb]), True),
      "more than 300 frames": (_record(_video(320)), True),
      "no context": (_field(2, rgb + audio), False),
      "context after the lists, twice": (_record([rgb, audio]) + _field(1, _context()), False),
      "value before key": (_record([value_first, audio]), False),
      "a frame of another size": (_record([_entry("rgb", _feature_list(odd_frame)), audio]),
                                  False),
      "rgb twice": (_record([rgb, audio, rgb]), False),
      "audio missing": (_record([rgb]), False),
      "an unknown top-level field": (_record([rgb, audio]) + _field(3, b"x"), False),
  }
  ok, _ = located([record for record, _ in cases.values()])
  assert dict(zip(cases, ok, strict=True)) == {name: want for name, (_, want) in cases.items()}


@pytest.mark.slow
def test_every_encoding_reads_as_the_full_parser_reads_it(tmp_path, monkeypatch, capfd):
  n = 6
  rgb, audio = _video(n)
  visible = _entry("synthetic_visible_labels", _feature_list(frames(2, 3)))
  value_first = _field(1, _field(2, _feature_list(frames(n, 1024))) + _field(1, b"rgb"))
  good = [
      _record([rgb, audio], _context("a", (1,))),
      _record([audio, visible, rgb], _context("b", (2, 3)), lists_first=True),
      _record(_video(333, offset=3), _context("c", (9,))),
      sequence_example("d", labels=(4,), num_frames=2),
      sequence_example("e", labels=(5,), num_frames=9, audio=frames(3, 128)),  # audio shorter
  ]
  canonical = write_records(tmp_path / "canonical.tfrecord", good)
  for name in ("distill", "audio_first"):
    assert_identical(monkeypatch, [canonical], CONFIGS[name])
  assert "not in the canonical" not in capfd.readouterr().err
  # A context split in two (the parser merges them) and a frame whose value length is a
  # non-minimal varint: valid protocol buffers, but not the canonical layout.
  frame = frames(1, 1024)[0].tobytes()
  long_value = bytes([0x0A, 0x80 | 1024 % 128, 0x80 | 1024 >> 7, 0x00]) + frame
  long_rgb = _entry("rgb", _field(1, _field(1, long_value)) + _feature_list(frames(n - 1, 1024)))
  odd = write_records(tmp_path / "odd.tfrecord", good[:2] + [
      _record([rgb, audio], _context("g", ())) + _field(1, _context(None, (2,))),
      _record([long_rgb, audio], _context("h", (3,))),
  ])
  got, error = assert_identical(monkeypatch, [odd], CONFIGS["distill"], batch_size=4)
  assert error is None and len(got) == 1
  err = capfd.readouterr().err
  assert "2 of 4 records of this batch are not in the canonical frame-level layout" in err
  assert "odd.tfrecord" in err
  # TensorFlow's parser rejects a map entry whose value comes before its key: so does the
  # slicing reader (through the full parser), with the same error.
  rejected = write_records(tmp_path / "rejected.tfrecord", [_record([value_first, audio])])
  assert assert_identical(monkeypatch, [rejected], CONFIGS["student"])[1]


@pytest.mark.slow
def test_generated_shards_and_fixtures_are_identical(frame_data, tmp_path, monkeypatch, capfd):
  files = sorted(str(p) for p in frame_data.glob("*.tfrecord"))
  files += synthetic.generate(str(tmp_path / "syn"), num_videos=12, seed=3, num_shards=2)
  for name in ("teacher", "random", "fml", "distill"):
    assert_identical(monkeypatch, files, CONFIGS[name], batch_size=5)
  assert_identical(monkeypatch, files, CONFIGS["student"], batch_size=5, drop_remainder=True)
  assert "not in the canonical" not in capfd.readouterr().err


@pytest.mark.parametrize("bad", [
    sequence_example(video_id=None),
    sequence_example(with_labels=False),
    sequence_example(labels=(10,)),
    sequence_example(num_frames=0),
    sequence_example(rgb=np.zeros((3, 1000), np.uint8), num_frames=3),
    sequence_example(num_frames=3, audio=np.zeros((0, 128), np.uint8)),
    b"not a protocol buffer",
], ids=["no_id", "no_labels", "label_range", "zero_frames", "rgb_size", "zero_audio",
        "not_protobuf"])  # explicit: a map's serialized order differs between processes
def test_bad_records_give_todays_error(tmp_path, monkeypatch, bad):
  path = write_records(tmp_path / "bad.tfrecord", [sequence_example("ok", num_frames=3), bad])
  _, error = assert_identical(monkeypatch, [path], CONFIGS["student"])
  assert error and "bad.tfrecord" in error


def test_serving_parse_is_identical(monkeypatch):
  records = tf.constant([sequence_example("a", num_frames=12), sequence_example("b")])
  for config in (CONFIGS["teacher"], CONFIGS["student"]):
    outputs = []
    for sliced in (True, False):
      monkeypatch.setattr(raw_frames, "ENABLED", sliced)
      outputs.append(readers.parse_serialized(records, config))
    for key in outputs[1]:
      assert outputs[0][key].numpy().tobytes() == outputs[1][key].numpy().tobytes(), key
