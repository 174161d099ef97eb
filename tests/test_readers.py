"""Readers: exact decoding, frame selection before decode, both id keys, bad input."""

import numpy as np
import pytest

from conftest import SAMPLE, example, frames, sequence_example, write_records
from yt8m import frame_selection, readers

FRAME = readers.ReaderConfig()
VIDEO = readers.ReaderConfig(feature_names=("mean_rgb", "mean_audio"), frame_features=False)


def read_all(files, config, batch_size=4):
  batches = list(readers.iterate_numpy(files, config, batch_size))
  return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def test_dequantization_constants_match_the_starter():
  values = readers.dequantize(np.array([0, 128, 255], np.uint8)).numpy()
  np.testing.assert_allclose(values, [-1.9921875, 0.0156556, 2.0078125], atol=1e-6)


def test_frame_level_values_padding_and_labels(tmp_path):
  path = write_records(tmp_path / "a.tfrecord", [
      sequence_example("v0", labels=(3, 1, 3), num_frames=4),
      sequence_example("v1", labels=(0,), num_frames=2),
  ])
  out = read_all([path], readers.ReaderConfig(num_classes=5))
  assert out["video_ids"].tolist() == [b"v0", b"v1"]
  assert out["features"].shape == (2, 300, 1152)
  assert out["num_frames"].tolist() == [4, 2]
  np.testing.assert_array_equal(out["labels"], [[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]])
  expected = readers.dequantize(np.concatenate([frames(4, 1024), frames(4, 128, 7)], 1))
  np.testing.assert_allclose(out["features"][0, :4], expected.numpy(), rtol=0, atol=0)
  assert not out["features"][0, 4:].any()  # zero padding after dequantization
  assert not out["features"][1, 2:].any()
  np.testing.assert_array_equal(out["frame_indices"][1, :3], [0, 1, -1])


def test_feature_order_follows_the_flags_and_num_frames_the_first_feature(tmp_path):
  record = sequence_example(num_frames=6, audio=frames(4, 128, 7))  # audio shorter
  path = write_records(tmp_path / "a.tfrecord", [record])
  config = readers.ReaderConfig(feature_names=("audio", "rgb"), feature_sizes=(128, 1024))
  out = read_all([path], config)
  assert out["num_frames"].tolist() == [4]
  np.testing.assert_allclose(out["features"][0, :4, :128],
                             readers.dequantize(frames(4, 128, 7)).numpy())
  rgb_only = read_all([path], readers.ReaderConfig(feature_names=("rgb",),
                                                   feature_sizes=(1024,)))
  assert rgb_only["features"].shape[-1] == 1024 and rgb_only["num_frames"].tolist() == [6]


def test_more_than_max_frames_are_truncated(tmp_path):
  path = write_records(tmp_path / "a.tfrecord", [sequence_example(num_frames=330)])
  out = read_all([path], FRAME)
  assert out["num_frames"].tolist() == [300]
  np.testing.assert_allclose(out["features"][0, 299, :1024],
                             readers.dequantize(frames(300, 1024)[299]).numpy())


@pytest.mark.parametrize("strategy", frame_selection.STRATEGIES)
def test_student_reader_returns_exactly_the_selected_frames(tmp_path, strategy):
  path = write_records(tmp_path / "a.tfrecord", [
      sequence_example("long", num_frames=250),
      sequence_example("short", num_frames=3),
  ])
  full = read_all([path], FRAME)
  config = readers.ReaderConfig(student_frames=10, frame_selection=strategy)
  student = read_all([path], config)
  assert student["features"].shape == (2, 10, 1152)
  # Shorter than k: all of its frames (the authors' padded grid reaches only frame 0).
  assert student["num_frames"][1] == (1 if strategy == "uniform_padded" else 3)
  for row in range(2):
    n = student["num_frames"][row]
    idx = student["frame_indices"][row, :n]
    assert (student["frame_indices"][row, n:] == -1).all()
    np.testing.assert_array_equal(student["features"][row, :n], full["features"][row, idx])
    assert not student["features"][row, n:].any()
  assert np.isfinite(student["features"]).all()


def test_random_frames_at_eval_depend_only_on_the_video(tmp_path):
  records = [sequence_example(f"v{i}", num_frames=200) for i in range(6)]
  a = write_records(tmp_path / "a.tfrecord", records)
  b = write_records(tmp_path / "b.tfrecord", records[::-1])
  config = readers.ReaderConfig(student_frames=8, frame_selection="random")
  first, second = read_all([a], config, 4), read_all([b], config, 3)
  by_id = dict(zip(second["video_ids"], second["frame_indices"], strict=True))
  for vid, idx in zip(first["video_ids"], first["frame_indices"], strict=True):
    np.testing.assert_array_equal(idx, by_id[vid])


def test_video_level_both_id_keys_and_unlabelled_files(tmp_path):
  a = write_records(tmp_path / "a.tfrecord", [example("x", labels=(2, 0))])
  b = write_records(tmp_path / "b.tfrecord", [example("y", id_key="video_id", with_labels=False)])
  config = readers.ReaderConfig(feature_names=("mean_rgb", "mean_audio"), frame_features=False,
                                num_classes=4, require_labels=False, allow_mixed_id_keys=True)
  out = read_all([a, b], config)
  assert out["video_ids"].tolist() == [b"x", b"y"]
  np.testing.assert_array_equal(out["labels"], [[1, 0, 1, 0], [0, 0, 0, 0]])
  np.testing.assert_allclose(out["features"][0, :1024], np.linspace(-1, 1, 1024), atol=1e-6)
  assert out["num_frames"].tolist() == [1, 1]


def test_frame_level_2017_id_key(tmp_path):
  path = write_records(tmp_path / "a.tfrecord", [sequence_example("old", id_key="video_id")])
  assert read_all([path], FRAME)["video_ids"].tolist() == [b"old"]


def test_training_order_shuffles_and_repeats(tmp_path):
  files = [write_records(tmp_path / f"{s}.tfrecord",
                         [example(f"{s}-{i}") for i in range(20)]) for s in "abc"]
  ds = readers.build_dataset(files, VIDEO, batch_size=7, training=True, num_epochs=2, seed=1)
  ids = [i for b in ds.as_numpy_iterator() for i in b["video_ids"].tolist()]
  assert len(ids) == 120 and len(set(ids)) == 60
  assert ids[:60] != sorted(ids[:60])


def test_sample_data_reads_fully():
  out = read_all(readers.list_files(str(SAMPLE / "video_level_2018" / "*.tfrecord")), VIDEO, 256)
  assert len(out["video_ids"]) == 1202
  assert len(set(out["video_ids"].tolist())) == 1202
  assert (out["labels"].sum(1) >= 1).all()


def test_all_real_shards(shared_data):
  count_2018 = sum(len(b["video_ids"]) for b in readers.iterate_numpy(
      readers.list_files(str(shared_data / "video_level_2018" / "*.tfrecord")), VIDEO, 1024))
  assert count_2018 == 11790
  config_2017 = readers.ReaderConfig(feature_names=("mean_rgb", "mean_audio"),
                                     frame_features=False, num_classes=4716,
                                     require_labels=False)
  out = read_all(readers.list_files(str(shared_data / "video_level_2017" / "*.tfrecord")),
                 config_2017, 1024)
  assert len(out["video_ids"]) == 5128
  assert int((out["labels"].sum(1) > 0).sum()) == 3419  # the validate shards


# ---------------------------------------------------------------------------- bad input


def expect_error(files, config, match):
  with pytest.raises(readers.DataError, match=match):
    list(readers.iterate_numpy(files, config, 2))


def test_empty_glob_and_missing_file(tmp_path):
  with pytest.raises(readers.DataError, match="no files match"):
    readers.list_files(str(tmp_path / "*.tfrecord"))
  with pytest.raises(readers.DataError, match="file not found: .*nope.tfrecord"):
    readers.list_files(str(tmp_path / "nope.tfrecord"))
  with pytest.raises(readers.DataError, match="pattern is empty"):
    readers.list_files(" , ")


def test_truncated_and_corrupt_files_are_named(tmp_path):
  good = write_records(tmp_path / "good.tfrecord", [sequence_example(f"v{i}") for i in range(3)])
  data = open(good, "rb").read()
  truncated = tmp_path / "truncated.tfrecord"
  truncated.write_bytes(data[:-100])
  corrupt = bytearray(data)
  corrupt[len(data) // 2] ^= 0xFF
  (tmp_path / "corrupt.tfrecord").write_bytes(bytes(corrupt))
  expect_error([good, str(truncated)], FRAME, r"truncated.tfrecord: record 2: truncated")
  expect_error([str(tmp_path / "corrupt.tfrecord")], FRAME,
               r"corrupt.tfrecord: record 1: corrupted")


def test_record_that_is_not_a_protobuf(tmp_path):
  path = write_records(tmp_path / "junk.tfrecord", [sequence_example(), b"\xff\x00junk"])
  expect_error([path], FRAME, r"junk.tfrecord: record 1: not a valid SequenceExample")


def test_missing_keys(tmp_path):
  path = write_records(tmp_path / "a.tfrecord", [sequence_example(), sequence_example(None)])
  expect_error([path], FRAME, r"a.tfrecord: record 1 .*missing key 'id'")
  path = write_records(tmp_path / "b.tfrecord", [sequence_example("nolabels", with_labels=False)])
  expect_error([path], FRAME, r"b.tfrecord: record 0 \(video 'nolabels'\): missing key 'labels'")
  path = write_records(tmp_path / "c.tfrecord", [example("v", with_labels=False)])
  expect_error([path], VIDEO, r"c.tfrecord: record 0 \(video 'v'\): missing key 'labels'")


def test_feature_of_the_wrong_size(tmp_path):
  path = write_records(tmp_path / "a.tfrecord", [
      sequence_example("ok"), sequence_example("bad", rgb=frames(5, 1000))])
  expect_error([path], FRAME, r"record 1 \(video 'bad'\): a 'rgb' frame has 1000 bytes, "
               r"expected 1024")
  path = write_records(tmp_path / "b.tfrecord", [
      example("ok"), example("ok2"), example("bad", mean_audio=np.zeros(100))])
  expect_error([path], VIDEO, r"b.tfrecord: record 2 \(video 'bad'\): feature 'mean_audio' "
               "does not have 128 values")


def test_label_out_of_range(tmp_path):
  path = write_records(tmp_path / "a.tfrecord", [sequence_example("v", labels=(1, 3862))])
  expect_error([path], FRAME, r"video 'v'\): label id 3862 is outside \[0, 3862\)")
  path = write_records(tmp_path / "b.tfrecord", [example("w", labels=(-1,))])
  expect_error([path], VIDEO, r"video 'w'\): a label id is outside")


def test_zero_frames(tmp_path):
  path = write_records(tmp_path / "a.tfrecord", [sequence_example("empty", num_frames=0)])
  expect_error([path], FRAME, r"video 'empty'\): 0 frames of 'rgb'")


def test_wrong_kind_of_file_is_explained():
  files = readers.list_files(str(SAMPLE / "video_level_2018" / "validate0000.tfrecord"))
  expect_error(files, FRAME, "if this is video-level data, drop --frame_features")


def test_config_errors():
  with pytest.raises(ValueError, match="feature_names has 2 entries .* feature_sizes has 1"):
    readers.ReaderConfig(feature_sizes=(1024,))
  with pytest.raises(ValueError, match="student_frames must be in"):
    readers.ReaderConfig(student_frames=301)
  with pytest.raises(ValueError, match="feature_sizes must be comma-separated integers"):
    readers.parse_feature_flags("rgb", "1024x")


def test_labels_only_reads_both_kinds_of_file(tmp_path):
  frame_file = write_records(tmp_path / "f.tfrecord", [sequence_example("f", labels=(2,))])
  video_file = write_records(tmp_path / "v.tfrecord", [example("v", labels=(1, 3))])
  out = read_all([frame_file, video_file], readers.labels_only(num_classes=4))
  assert out["video_ids"].tolist() == [b"f", b"v"]
  np.testing.assert_array_equal(out["labels"], [[0, 0, 1, 0], [0, 1, 0, 1]])
  assert out["features"].shape == (2, 0)


def test_rated_segments_as_the_starter_reads_them(tmp_path):
  record = sequence_example("v", num_frames=23,
                            segments=[(2, 5, 1.0), (4, 5, 0.0), (1, 20, 1.0)])
  path = write_records(tmp_path / "s.tfrecord", [record])
  full = read_all([path], readers.ReaderConfig(num_classes=5))["features"][0]
  out = read_all([path], readers.ReaderConfig(num_classes=5, segment_mode="rated"))
  assert out["video_ids"].tolist() == [b"v:5", b"v:20"]
  np.testing.assert_array_equal(out["labels"], [[0, 0, 1, 0, 0], [0, 1, 0, 0, 0]])
  np.testing.assert_array_equal(out["label_weights"], [[0, 0, 1, 0, 1], [0, 1, 0, 0, 0]])
  assert out["num_frames"].tolist() == [5, 3]  # the last segment runs past frame 22
  np.testing.assert_array_equal(out["features"][0], full[5:10])
  np.testing.assert_array_equal(out["features"][1, :3], full[20:23])
  assert not out["features"][1, 3:].any()


def test_all_segments_for_inference_and_missing_segment_fields(tmp_path):
  path = write_records(tmp_path / "s.tfrecord", [sequence_example("w", num_frames=12)])
  out = read_all([path], readers.ReaderConfig(num_classes=5, segment_mode="all",
                                              require_labels=False))
  assert out["video_ids"].tolist() == [b"w:0", b"w:5", b"w:10"]
  assert out["num_frames"].tolist() == [5, 5, 2]
  expect_error([path], readers.ReaderConfig(num_classes=5, segment_mode="rated"),
               r"video 'w'\): missing key 'segment_labels'")
  with pytest.raises(ValueError, match="--segment_labels needs frame-level data"):
    readers.ReaderConfig(student_frames=5, segment_mode="rated")
