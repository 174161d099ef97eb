"""The batch-at-once frame-level reader: bit for bit the record-by-record one, errors included."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import frames, sequence_example, write_records
from yt8m import (
  building,
  eval_lib,
  frame_batches,
  frame_selection,
  inference_lib,
  readers,
  run_config,
  synthetic,
  train_lib,
)

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


def read(monkeypatch, files, config, batched, batch_size=4, drop_remainder=False):
  """(element_spec, batches, error message or None) with batches parsed at once or not."""
  monkeypatch.setattr(frame_batches, "ENABLED", batched)
  ds = readers.build_dataset(files, config, batch_size, drop_remainder=drop_remainder)
  batches = []
  try:
    with readers.data_errors(files, reader=config):
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
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    out.append(byte | 0x80 if value else byte)
    if not value:
      return bytes(out)


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


def test_batched_selection_is_select_frames_row_by_row():
  lengths = np.arange(1, 301)
  for strategy in frame_selection.STRATEGIES:
    if strategy == "random":
      continue
    for k in (1, 3, 10, 30, 300):
      got = frame_selection.select_frames_batch(tf.constant(lengths), k, strategy).numpy()
      for row, n in zip(got, lengths, strict=True):
        want = frame_selection.select_frames(tf.constant(n), k, strategy).numpy()
        assert row[:len(want)].tolist() == want.tolist(), (strategy, k, n)
        assert (row[len(want):] == -1).all(), (strategy, k, n)
  with pytest.raises(ValueError, match="seed per video"):
    frame_selection.select_frames_batch(tf.constant([5]), 3, "random")


def test_every_encoding_reads_as_the_record_by_record_path_reads_it(tmp_path, monkeypatch):
  n = 6
  rgb, audio = _video(n)
  visible = _entry("synthetic_visible_labels", _feature_list(frames(2, 3)))
  # A frame whose value length is a non-minimal varint: a valid protocol buffer.
  frame = frames(1, 1024)[0].tobytes()
  long_value = bytes([0x0A, 0x80 | 1024 % 128, 0x80 | 1024 >> 7, 0x00]) + frame
  long_rgb = _entry("rgb", _field(1, _field(1, long_value)) + _feature_list(frames(n - 1, 1024)))
  records = [
      _record([rgb, audio], _context("a", (1,))),
      _record([audio, visible, rgb], _context("b", (2, 3)), lists_first=True),
      _record(_video(333, offset=3), _context("c", (9,))),
      sequence_example("d", labels=(4,), num_frames=2),
      sequence_example("e", labels=(5,), num_frames=9, audio=frames(3, 128)),  # audio shorter
      sequence_example("f", labels=(6,), num_frames=4, audio=frames(11, 128)),  # audio longer
      _record([rgb, audio], _context("g", ())) + _field(1, _context(None, (2,))),  # split context
      _record([long_rgb, audio], _context("h", (3,))),
  ]
  path = write_records(tmp_path / "odd.tfrecord", records)
  for name in ("teacher", "student", "distill", "audio_first", "learned", "fml"):
    for batch_size in (3, 8):
      got, error = assert_identical(monkeypatch, [path], CONFIGS[name], batch_size=batch_size)
      assert error is None and sum(len(b["video_ids"]) for b in got) == len(records)
  # TensorFlow's parser rejects a map entry whose value comes before its key, either way.
  value_first = _field(1, _field(2, _feature_list(frames(n, 1024))) + _field(1, b"rgb"))
  rejected = write_records(tmp_path / "rejected.tfrecord", [_record([value_first, audio])])
  assert "rejected.tfrecord" in assert_identical(monkeypatch, [rejected], CONFIGS["student"])[1]


def test_training_draws_are_identical(frame_data, monkeypatch):
  """Random frames in training are seeded by the record's place in the stream, either way."""
  files = sorted(str(p) for p in frame_data.glob("*.tfrecord"))
  outputs = []
  for batched in (True, False):
    monkeypatch.setattr(frame_batches, "ENABLED", batched)
    ds = readers.build_dataset(files, CONFIGS["random"], 4, training=True, num_epochs=2, seed=5)
    outputs.append([(b["video_ids"].tolist(), b["frame_indices"].tobytes(),
                     b["features"].tobytes()) for b in ds.as_numpy_iterator()])
  assert outputs[0] and outputs[0] == outputs[1]


@pytest.mark.slow
def test_generated_shards_and_fixtures_are_identical(frame_data, tmp_path, monkeypatch):
  files = sorted(str(p) for p in frame_data.glob("*.tfrecord"))
  files += synthetic.generate(str(tmp_path / "syn"), num_videos=12, seed=3, num_shards=2)
  for name in ("teacher", "random", "fml", "distill"):
    assert_identical(monkeypatch, files, CONFIGS[name], batch_size=5)
  assert_identical(monkeypatch, files, CONFIGS["student"], batch_size=5, drop_remainder=True)


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
    for batched in (True, False):
      monkeypatch.setattr(frame_batches, "ENABLED", batched)
      outputs.append(readers.parse_serialized(records, config))
    for key in outputs[1]:
      assert outputs[0][key].numpy().tobytes() == outputs[1][key].numpy().tobytes(), key


def test_a_bad_record_in_training_is_named_from_its_batch_files(tmp_path):
  """A shuffled, interleaved training batch with a bad record: data_errors reads the batch's
  files record by record and names the record; without the config it still names the files."""
  good = write_records(tmp_path / "good.tfrecord",
                       [sequence_example(f"g{i}", num_frames=3) for i in range(6)])
  bad = write_records(tmp_path / "bad.tfrecord", [sequence_example("ok", num_frames=3),
                                                  sequence_example("x", labels=(10,))])
  files, config = [good, bad], CONFIGS["student"]
  ds = readers.build_dataset(files, config, 4, training=True, num_epochs=1, seed=1)
  with pytest.raises(readers.DataError, match=r"bad.tfrecord: record 1 \(video 'x'\): .*10"):
    with readers.data_errors(files, reader=config):
      list(ds)
  with pytest.raises(readers.DataError, match=r"a record of .*bad.tfrecord.* fails a check"):
    with readers.data_errors(files, True):
      list(ds)


def test_jittered_uniform_training_draws_are_identical_and_evaluation_keeps_the_grid(
    frame_data, monkeypatch):
  files = sorted(str(p) for p in frame_data.glob("*.tfrecord"))
  jittered = readers.ReaderConfig(num_classes=10, student_frames=5, uniform_jitter=True)
  outputs = []
  for batched in (True, False):
    monkeypatch.setattr(frame_batches, "ENABLED", batched)
    ds = readers.build_dataset(files, jittered, 4, training=True, num_epochs=2, seed=5)
    outputs.append([(b["video_ids"].tolist(), b["frame_indices"].tobytes(),
                     b["features"].tobytes()) for b in ds.as_numpy_iterator()])
  assert outputs[0] and outputs[0] == outputs[1]
  grid = [b["frame_indices"] for b in readers.build_dataset(
      files, readers.ReaderConfig(num_classes=10, student_frames=5), 4,
      training=True, num_epochs=2, seed=5).as_numpy_iterator()]
  assert any(not np.array_equal(np.frombuffer(o[1], np.int32).reshape(g.shape), g)
             for o, g in zip(outputs[0], grid, strict=True))
  # Evaluation reads the evenly spaced grid, jitter or not.
  plain = readers.ReaderConfig(num_classes=10, student_frames=5)
  for a, b in zip(readers.build_dataset(files, jittered, 4).as_numpy_iterator(),
                  readers.build_dataset(files, plain, 4).as_numpy_iterator(), strict=True):
    np.testing.assert_array_equal(a["frame_indices"], b["frame_indices"])


def test_jitter_with_another_selection_is_refused():
  with pytest.raises(ValueError, match="uniform_jitter jitters the uniform selection, not "
                                       "'random'"):
    readers.ReaderConfig(student_frames=5, frame_selection="random", uniform_jitter=True)


def test_a_run_config_refuses_jitter_where_it_cannot_apply():
  with pytest.raises(ValueError, match="--uniform_jitter with --frame_selection=learned needs "
                                       "--selector_candidates"):
    run_config.RunConfig(model="FrameLevelLogisticModel", feature_names=("rgb", "audio"),
                         feature_sizes=(1024, 128), frame_features=True, student_frames=5,
                         frame_selection="learned", uniform_jitter=True)


def test_frames_handed_over_uint8_dequantize_to_the_float_batch(tmp_path):
  """ReaderConfig.quantized_frames: every-frame rows in a quarter of the bytes (a student's k
  rows stay float32), and readers.dequantized gives the float reader's batch bit for bit
  (features of unequal lengths and distillation included)."""
  records = [sequence_example("a", labels=(1,), num_frames=6),
             sequence_example("b", labels=(2,), num_frames=9, audio=frames(3, 128)),
             sequence_example("c", labels=(3,), num_frames=4, audio=frames(11, 128)),
             sequence_example("d", labels=(4,), num_frames=320)]
  path = write_records(tmp_path / "q.tfrecord", records)
  for name, config in CONFIGS.items():
    for training in (False, True):
      kwargs = dict(training=training, num_epochs=1, seed=5)
      want = list(readers.build_dataset([path], config, 3, **kwargs))
      got = list(readers.build_dataset(
          [path], dataclasses.replace(config, quantized_frames=True), 3, **kwargs))
      assert len(got) == len(want)
      for q, f in zip(got, want, strict=True):
        every_frame = not config.selects_in_reader
        assert (q["features"].dtype == tf.uint8) == every_frame == ("features_present" in q)
        if config.teacher_frames:
          assert q["teacher_features"].dtype == tf.uint8, name
        back = readers.dequantized(q, config.feature_sizes)
        assert list(back) == list(f), name
        for key in f:
          assert back[key].numpy().tobytes() == f[key].numpy().tobytes(), (name, training, key)


def test_the_loops_give_the_same_results_with_frames_handed_over_uint8(frame_data, tmp_path,
                                                                       monkeypatch):
  """A teacher, and a student in parallel distillation (the teacher's every frame rides along),
  trained, evaluated and run for inference with readers.STEP_DEQUANTIZES on and off: the same
  weights, metrics and rows; every-frame rows reach the steps as uint8."""
  files = sorted(str(p) for p in frame_data.glob("*.tfrecord"))
  frame_level = dict(model="FrameLevelLogisticModel", num_classes=4, frame_features=True,
                     feature_names=("rgb", "audio"), feature_sizes=(1024, 128))
  teacher = run_config.RunConfig(**frame_level)
  student = run_config.RunConfig(**frame_level, student_frames=5,
                                 distillation=run_config.Distillation(mode="parallel",
                                                                      teacher=teacher))
  handed = []
  dequantized = readers.dequantized

  def spy(batch, feature_sizes):  # what the steps were handed (at tracing)
    handed.append(tuple(batch[k].dtype for k in ("features", "teacher_features") if k in batch))
    return dequantized(batch, feature_sizes)

  monkeypatch.setattr(readers, "dequantized", spy)
  u8, f32 = tf.uint8, tf.float32
  for name, run, handed_when_on in (("teacher", teacher, {(u8,)}),
                                    ("student", student, {(f32, u8), (f32,)})):
    results = {}
    for on in (True, False):
      monkeypatch.setattr(readers, "STEP_DEQUANTIZES", on)
      keras.utils.set_random_seed(1)
      train_dir = tmp_path / f"{name}{on}"
      train_lib.train(run, files, train_lib.TrainConfig(
          train_dir=str(train_dir), batch_size=4, num_epochs=1, seed=1,
          checkpoint_steps=10**6, metrics_every=10**6, log_every=10**6))
      model = building.load_model(str(train_dir))[1]
      results[on] = ([w.numpy().tobytes() for w in model.weights],
                     eval_lib.evaluate(model, run, files, batch_size=5),
                     list(inference_lib.predict_top_k(model, run, files, batch_size=5)))
      want = handed_when_on if on else {tuple(f32 for _ in kinds) for kinds in handed_when_on}
      assert set(handed) == want, (name, on, handed)
      handed.clear()
    (weights, metrics, rows), (want_weights, want_metrics, want_rows) = results[True], results[
        False]
    assert weights == want_weights and rows == want_rows, name
    assert list(metrics) == list(want_metrics)
    for key in metrics:
      assert np.array_equal(metrics[key], want_metrics[key]), (name, key)
