"""Fault injection, bad input (issue 9, "Nothing lost, nothing silent"): every damaged,
misplaced or mismatched input file gives ONE line naming the file (and record and video when
there is one), or a logged note when nothing is lost. docs/RELIABILITY.md lists the promises."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from conftest import example, run_cli, sequence_example, write_records
from yt8m import readers, submission

FRAME = readers.ReaderConfig(num_classes=10)
VIDEO = readers.ReaderConfig(feature_names=("mean_rgb", "mean_audio"), frame_features=False,
                             num_classes=10)


def read_ids(files, config, training=False):
  """Every video id of one pass, through build_dataset and data_errors as the loops use them."""
  ds = readers.build_dataset(files, config, batch_size=2, training=training, num_epochs=1)
  ids = []
  with readers.data_errors(files, reader=config):
    for batch in ds.as_numpy_iterator():
      ids.extend(batch["video_ids"].tolist())
  return ids


def one_line_error(files, config, match, training=False):
  with pytest.raises(readers.DataError, match=match) as raised:
    read_ids(files, config, training)
  message = str(raised.value)
  assert "\n" not in message and "{{" not in message and "[[" not in message, message
  return message


def videos(tmp_path, name, count=5, **kwargs):
  return write_records(tmp_path / name, [example(f"v{i}", **kwargs) for i in range(count)])


# ---------------------------------------------------------------- 7: truncation anywhere


@pytest.mark.parametrize("cut", [4, 10])  # inside the length, inside the length's checksum
def test_a_file_cut_inside_a_record_header_is_an_error(tmp_path, cut):
  whole = open(videos(tmp_path, "whole.tfrecord"), "rb").read()
  first = (tmp_path / "first.tfrecord")
  first.write_bytes(whole + whole[:cut])  # 5 complete records, then a partial 6th header
  one_line_error([str(first)], VIDEO, rf"first.tfrecord: record 5: truncated \(the file has "
                 rf"{len(whole) + cut} bytes, its complete records end at byte {len(whole)}\)")
  one_line_error([str(first)], VIDEO, r"first.tfrecord: record 5: truncated", training=True)


# ---------------------------------------------------------------- 8: a file matched twice


def test_a_file_matched_by_two_patterns_is_read_once_and_logged(tmp_path, caplog):
  a = videos(tmp_path, "a.tfrecord", 3)
  b = write_records(tmp_path / "b.tfrecord", [example("w")])
  with caplog.at_level(logging.WARNING):
    files = readers.list_files(f"{a},{tmp_path}/*.tfrecord,{tmp_path}/./b.tfrecord")
  assert files == [a, b]
  assert "matches 1 file(s) already matched by an earlier pattern" in caplog.text
  assert len(read_ids(files, VIDEO)) == 4


# ---------------------------------------------------------------- 9: 2017 and 2018 mixed


def test_a_mix_of_2017_and_2018_files_is_refused_unless_allowed(tmp_path):
  new = videos(tmp_path, "2018.tfrecord", 2)
  old = videos(tmp_path, "2017.tfrecord", 2, id_key="video_id")
  config = readers.ReaderConfig(feature_names=VIDEO.feature_names, frame_features=False,
                                num_classes=4716)
  message = one_line_error([new, old], config, r"mix two datasets")
  assert "2017.tfrecord" in message and "2018.tfrecord" in message
  allowed = readers.ReaderConfig(feature_names=VIDEO.feature_names, frame_features=False,
                                 num_classes=4716, allow_mixed_id_keys=True)
  assert len(read_ids([new, old], allowed)) == 4
  # train.py --allow_mixed_datasets: kept in model_flags.json, so eval and inference read so too.
  from yt8m import run_config
  run = run_config.RunConfig(model="LogisticModel", feature_names=VIDEO.feature_names,
                             feature_sizes=VIDEO.feature_sizes, frame_features=False,
                             num_classes=4716, allow_mixed_id_keys=True)
  again = run_config.RunConfig.from_json(run.to_json())
  assert len(read_ids([new, old], again.reader_config())) == 4


# ---------------------------------------------------------------- 10: not a TFRecord file


def test_files_that_are_not_tfrecords_are_named(tmp_path):
  (tmp_path / "tiny.tfrecord").write_bytes(b"hello")
  (tmp_path / "train_manifest.json").write_text('{"world": {"fingerprint": "abc"}, "n": 4}')
  (tmp_path / "shards").mkdir()
  good = videos(tmp_path, "good.tfrecord", 2)
  for name, what in (("tiny.tfrecord", "not a TFRecord file .5 bytes"),
                     ("train_manifest.json", "not a TFRecord file"),
                     ("shards", "is a directory")):
    one_line_error([good, str(tmp_path / name)], VIDEO, rf"{name}: {what}")
  # The generator's own layout: a glob over the whole folder names the manifest.
  (tmp_path / "gen").mkdir()
  videos(tmp_path / "gen", "train0000.tfrecord", 2)
  (tmp_path / "gen" / "train_manifest.json").write_text('{"world": {}}')
  one_line_error(readers.list_files(str(tmp_path / "gen" / "train*")), VIDEO,
                 r"gen/train_manifest.json: not a TFRecord file")


def test_a_file_of_zero_records_is_reported(tmp_path, caplog):
  empty = tmp_path / "empty.tfrecord"
  empty.write_bytes(b"")
  good = videos(tmp_path, "good.tfrecord", 2)
  with caplog.at_level(logging.WARNING):
    assert len(read_ids([str(empty), good], VIDEO)) == 2
  assert f"{empty}: 0 records" in caplog.text


# ---------------------------------------------------------------- 14: one line per data error


def _bad_records(tmp_path):
  """(files, config, expected message) per kind of data error train.py must report."""
  nan_rgb = np.linspace(-1, 1, 1024)
  nan_rgb[7] = np.inf
  video_file = videos(tmp_path, "video.tfrecord", 2)
  frame_file = write_records(tmp_path / "frames.tfrecord", [sequence_example("f")])
  whole = open(video_file, "rb").read()
  (tmp_path / "corrupt.tfrecord").write_bytes(whole[:40] + bytes([whole[40] ^ 0xFF]) +
                                              whole[41:])
  (tmp_path / "cut.tfrecord").write_bytes(whole[:-50])
  records = {
      "missing_id": ([sequence_example("a"), sequence_example(None)], FRAME, "record 1 .*missing key 'id'"),
      "no_labels": ([example("a"), example("b", with_labels=False)], VIDEO,
                    r"record 1 \(video 'b'\): missing key 'labels'"),
      "feature_size": ([example("a"), example("b", mean_audio=np.zeros(100))], VIDEO,
                       r"record 1 \(video 'b'\): feature 'mean_audio' does not have 128"),
      "label_range": ([example("a"), example("b", labels=(3, 12))], VIDEO,
                      r"record 1 \(video 'b'\): a label id is outside \[0, 10\)"),
      "zero_frames": ([sequence_example("a"), sequence_example("b", num_frames=0)], FRAME,
                      r"record 1 \(video 'b'\): 0 frames of 'rgb'"),
      "not_protobuf": ([example("a"), b"\xff\xfe junk"], VIDEO,
                       r"record 1: not a valid Example protocol buffer"),
      "nan": ([example("a"), example("b", mean_rgb=nan_rgb)], VIDEO,
              r"record 1 \(video 'b'\): feature 'mean_rgb' has a NaN or infinite value"),
  }
  cases = {name: ([write_records(tmp_path / f"{name}.tfrecord", recs)], config, match)
           for name, (recs, config, match) in records.items()}
  cases["video_level_as_frames"] = ([video_file], FRAME, r"video.tfrecord: record 0 \(video "
                                    r"'v0'\): no feature 'rgb' .*only features id, labels, "
                                    r"mean_audio, mean_rgb; if this is video-level data, drop")
  cases["frames_as_video_level"] = ([frame_file], VIDEO, r"frames.tfrecord: record 0 \(video "
                                    r"'f'\): no feature 'mean_rgb' .*frame feature lists "
                                    r"audio, rgb; if this is frame-level data, pass")
  cases["corrupt"] = ([str(tmp_path / "corrupt.tfrecord")], VIDEO,
                      r"corrupt.tfrecord: record 0: corrupted")
  cases["cut_in_a_record"] = ([str(tmp_path / "cut.tfrecord")], VIDEO,
                              r"cut.tfrecord: record 1: truncated")
  return cases


@pytest.mark.parametrize("training", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["eval", "train"])
def test_every_data_error_is_one_line_naming_file_record_and_video(tmp_path, training):
  for _name, (files, config, match) in _bad_records(tmp_path).items():
    one_line_error(files, config, match, training)


def test_2017_data_without_num_classes_4716(tmp_path, caplog):
  path = write_records(tmp_path / "validate2017.tfrecord", [
      example("a", labels=(1,), id_key="video_id"),
      example("b", labels=(4000,), id_key="video_id")])
  config = readers.ReaderConfig(feature_names=VIDEO.feature_names, frame_features=False)
  with caplog.at_level(logging.WARNING):
    one_line_error([path], config, r"validate2017.tfrecord: record 1 \(video 'b'\): a label id "
                   r"is outside \[0, 3862\); is --num_classes right .*4716 for 2017", True)
  assert "uses the 2017 key 'video_id' (the 2017 dataset has 4716 classes) but num_classes " \
         "is 3862" in caplog.text


@pytest.mark.slow
def test_train_py_reports_a_bad_record_in_one_line(tmp_path):
  path = write_records(tmp_path / "train.tfrecord",
                       [example(f"v{i}") for i in range(4)] + [example("bad", labels=(9999,))])
  proc = run_cli("train.py", "--model=LogisticModel", "--feature_names=mean_rgb,mean_audio",
                 "--feature_sizes=1024,128", f"--train_data_pattern={path}",
                 f"--train_dir={tmp_path / 'run'}", "--batch_size=5", "--num_epochs=1",
                 check=False)
  # One epoch: the bad record is read whatever the shuffle (two steps of a repeated,
  # shuffled stream once missed it).
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"train.py: error: {path}: record 4 (video 'bad'): a label id is outside [0, 3862)")


# ---------------------------------------------------------------- 15: misleading messages


def test_a_field_of_the_wrong_type_names_the_record_not_the_batch_position(tmp_path):
  bad = tf.train.Example.FromString(example("t"))
  bad.features.feature["mean_rgb"].Clear()
  bad.features.feature["mean_rgb"].bytes_list.value.append(b"\x00" * 1024)
  path = write_records(tmp_path / "types.tfrecord",
                       [example(f"v{i}") for i in range(3)] + [bad.SerializeToString()])
  one_line_error([path], VIDEO, r"types.tfrecord: record 3 \(video 't'\): feature 'mean_rgb' "
                 r"holds bytes values, expected float")
  frames = tf.train.SequenceExample.FromString(sequence_example("s"))
  frames.feature_lists.feature_list["audio"].feature[0].Clear()
  frames.feature_lists.feature_list["audio"].feature[0].float_list.value.append(0.5)
  path = write_records(tmp_path / "frame_types.tfrecord",
                       [sequence_example("r"), frames.SerializeToString()])
  one_line_error([path], FRAME, r"frame_types.tfrecord: record 1 \(video 's'\): feature 'audio' "
                 r"holds float values, expected bytes")


def test_an_absent_feature_is_named_with_the_features_the_record_has(tmp_path):
  path = videos(tmp_path, "a.tfrecord", 2)
  config = readers.ReaderConfig(feature_names=("mean_rgbx", "mean_audio"), frame_features=False)
  one_line_error([path], config, r"a.tfrecord: record 0 \(video 'v0'\): no feature 'mean_rgbx' "
                 r"\(--feature_names\); its features are id, labels, mean_audio, mean_rgb$")
  old = videos(tmp_path, "old.tfrecord", 1, id_key="video_id")
  one_line_error([old], config, r"old.tfrecord: record 0 \(video 'v0'\): no feature 'mean_rgbx' "
                 r"\(--feature_names\); its features are labels, mean_audio, mean_rgb, video_id$")
  # Absent from a later record only: named as absent, not as a size problem.
  later = tf.train.Example.FromString(example("late"))
  del later.features.feature["mean_audio"]
  path = write_records(tmp_path / "b.tfrecord", [example("a"), later.SerializeToString()])
  one_line_error([path], VIDEO, r"b.tfrecord: record 1 \(video 'late'\): no feature "
                 r"'mean_audio' \(absent or empty")


def test_a_latin1_byte_in_a_submission_names_file_and_line(tmp_path):
  path = tmp_path / "sub.csv"
  path.write_bytes(f"{submission.HEADER}\nv1,1 0.5\nv\xe9,2 0.5\nv3,3 0.1\n".encode("latin-1"))
  with pytest.raises(submission.SubmissionError,
                     match=r"sub.csv: line 3: not UTF-8 text \(byte 0xe9 at column 2\)"):
    submission.read_csv(str(path), 10)
  skipped = submission.read_csv(str(path), 10, skip_bad_rows=True)
  assert sorted(skipped.predictions) == ["v1", "v3"]
  assert len(skipped.warnings) == 1 and "line 3: not UTF-8" in skipped.warnings[0]
