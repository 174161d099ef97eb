"""2019 segments end to end: the generator's ratings, the Class,Segments scorer and its metric."""

import dataclasses
import json
import re

import numpy as np
import pytest
import tensorflow as tf

import yt8m
from conftest import run_cli, sequence_example, write_records
from yt8m import readers, segment_scoring, submission, synthetic

WHITELIST = yt8m.SEGMENT_LABEL_IDS  # installed with the package (yt8m/data/)


# ---------------------------------------------------------------------------------------------
# The generator.


def test_ratings_add_their_fields_and_change_nothing_else(tmp_path):
  """--segment_ratings adds the segment fields to each record and manifest, and nothing else:
  with them removed, its records are byte for byte and its manifest equal to those written
  without the option (the ratings draw from their own generator, synthetic.segment_rng). This
  replaces a digest of the output pinned at one commit, which held only where numpy's float
  kernels give the same bits: another CPU changed the quantized frames in their last place."""
  kwargs = dict(num_videos=6, seed=3, num_shards=2, split="validate", num_classes=100)
  plain = synthetic.generate(str(tmp_path / "plain"), **kwargs)
  rated = synthetic.generate(str(tmp_path / "rated"), **kwargs, segment_ratings=True)
  manifests = [json.load(open(synthetic.manifest_path(str(tmp_path / d), "validate")))
               for d in ("plain", "rated")]
  assert manifests[1]["segment_ratings"]["num_draws_discarded"] == 0  # the same videos
  for a, b in zip(plain, rated, strict=True):
    plain_records = [r.numpy() for r in tf.data.TFRecordDataset(a)]
    rated_records = [tf.train.SequenceExample.FromString(r.numpy())
                     for r in tf.data.TFRecordDataset(b)]
    assert len(plain_records) == len(rated_records) > 0
    for want, got in zip(plain_records, rated_records, strict=True):
      assert set(synthetic.SEGMENT_KEYS) <= set(got.context.feature)
      for key in synthetic.SEGMENT_KEYS:
        del got.context.feature[key]
      assert got.SerializeToString(deterministic=True) == want
  for manifest in manifests:
    del manifest["flags"]["output_dir"]
  rated_manifest = manifests[1]
  del rated_manifest["segment_ratings"]
  for key in ("segment_ratings", "segment_label_ids_file"):
    del rated_manifest["flags"][key]
  rated_manifest["format"]["context"] = [
      key for key in rated_manifest["format"]["context"] if key not in synthetic.SEGMENT_KEYS]
  assert rated_manifest == manifests[0]


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
  """40 rated videos (top 100 classes, whitelisted classes only) and their parsed records."""
  out = str(tmp_path_factory.mktemp("rated"))
  paths = synthetic.generate(out, num_videos=40, seed=4, split="validate", num_classes=200,
                             top_classes=100, segment_ratings=True,
                             segment_label_ids_file=WHITELIST)
  records = [tf.train.SequenceExample.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(paths)]
  return out, paths, records


def segment_scoring_whitelist():
  from yt8m import inference_lib
  return inference_lib.read_class_whitelist(WHITELIST).tolist()


def test_ratings_follow_where_labels_are_visible(rated):
  _, _, records = rated
  whitelist = set(segment_scoring_whitelist())
  scores_seen = set()
  for ex in records:
    ctx = ex.context.feature
    labels = list(ctx["segment_labels"].int64_list.value)
    starts = list(ctx["segment_start_times"].int64_list.value)
    scores = list(ctx["segment_scores"].float_list.value)
    visible = [set(f.int64_list.value)
               for f in ex.feature_lists.feature_list[synthetic.VISIBLE_KEY].feature]
    assert labels and len(labels) == len(starts) == len(scores)  # every video is rated
    assert set(labels) <= set(ctx["labels"].int64_list.value) & whitelist
    assert len(set(zip(labels, starts, strict=True))) == len(labels)
    for label, start, score in zip(labels, starts, scores, strict=True):
      assert start % 5 == 0 and start + 5 <= min(len(visible), 300)
      shown = [label in visible[t] for t in range(start, start + 5)]
      assert all(shown) if score == 1.0 else (score == 0.0 and not any(shown))
      scores_seen.add(score)
    for label in set(labels):
      assert labels.count(label) <= synthetic.SEGMENT_POSITIVES + synthetic.SEGMENT_NEGATIVES
  assert scores_seen == {0.0, 1.0}


def test_rated_files_read_as_2019_data(rated):
  out, paths, records = rated
  manifest = json.load(open(synthetic.manifest_path(out, "validate")))
  info = manifest["segment_ratings"]
  assert manifest["format"]["context"] == ["id", "labels", *synthetic.SEGMENT_KEYS]
  assert info["num_rated_segments"] == sum(
      len(ex.context.feature["segment_labels"].int64_list.value) for ex in records)
  # The segment reader (eval.py --segment_labels) takes them: a row per rated start time.
  config = readers.ReaderConfig(num_classes=200, segment_mode="rated")
  batches = list(readers.iterate_numpy(paths, config, batch_size=64))
  weights = np.concatenate([b["label_weights"] for b in batches])
  labels = np.concatenate([b["labels"] for b in batches])
  assert weights.sum() == info["num_rated_segments"]
  assert labels.sum() == info["num_positive_ratings"] > 0
  ratings = segment_scoring.read_ratings(paths, num_classes=200)
  assert sum(len(r) for r in ratings.by_class.values()) == info["num_rated_segments"]


def test_ratings_do_not_change_the_videos(tmp_path):
  """A video rated on its first draw is the default video plus the three context lists."""
  world = synthetic.build_world(0, 100)
  same = 0
  for i in range(8):
    name = synthetic.video_id("validate", 2, 0, i)
    plain = synthetic.make_video(world, synthetic.video_rng(2, "validate", i), name, 30)
    video, segments, redraws = synthetic._rated_video(
        world, synthetic.video_rng(2, "validate", i), name, 30,
        synthetic.segment_rng(2, "validate", i), None)
    if redraws:
      continue
    ex = tf.train.SequenceExample.FromString(synthetic.serialize_video(video, segments))
    for key in synthetic.SEGMENT_KEYS:
      del ex.context.feature[key]
    assert ex.SerializeToString(deterministic=True) == synthetic.serialize_video(plain)
    same += 1
  assert same >= 4


def test_a_video_shorter_than_a_segment_has_no_ratings():
  world = synthetic.build_world(0, 100)
  video = synthetic.make_video(world, synthetic.video_rng(1, "x", 0), "v", 30)
  short = dataclasses.replace(video, features=video.features[:4], shot_starts=np.array([0]),
                              shot_visible=np.ones((1, video.labels.size), bool),
                              shot_kind=np.array([0]))
  labels, starts, scores = synthetic.rate_segments(short, np.random.default_rng(0))
  assert labels.size == starts.size == scores.size == 0


def test_segment_label_ids_file_needs_segment_ratings(tmp_path):
  with pytest.raises(ValueError, match="--segment_label_ids_file needs --segment_ratings"):
    synthetic.generate(str(tmp_path), 2, 1, segment_label_ids_file=WHITELIST)


# ---------------------------------------------------------------------------------------------
# The metric.


def brute_force_map(rows, truth, k):
  """The definition, literally: truth {(segment, class): score}; rows {class: [segments]}."""
  aps = []
  for c in sorted({c for (_, c), s in truth.items() if s > 0}):
    num_positives = sum(1 for (_, cc), s in truth.items() if cc == c and s > 0)
    ranked = [s for s in rows.get(c, [])[:k] if (s, c) in truth]
    total = 0.0
    for i in range(len(ranked)):
      if truth[(ranked[i], c)] > 0:
        precision = sum(1 for j in range(i + 1) if truth[(ranked[j], c)] > 0) / (i + 1)
        total += precision
    aps.append(total / num_positives)
  return sum(aps) / len(aps)


def write_truth(path, truth):
  """Frame-level records carrying the ratings {(\"vid:start\", class): score}."""
  per_video = {}
  for (segment, c), score in truth.items():
    video, start = segment.split(":")
    per_video.setdefault(video, []).append((c, int(start), score))
  return write_records(path, [sequence_example(v, num_frames=1, segments=s)
                              for v, s in sorted(per_video.items())])


def test_average_precision_by_hand():
  # Ranked pos, neg, pos with 3 positives: (1/1 + 2/3) / 3.
  assert segment_scoring.average_precision([1, 0, 1], 3) == pytest.approx(5 / 9)
  assert segment_scoring.average_precision([], 2) == 0.0


def test_metric_matches_brute_force(tmp_path):
  rng = np.random.default_rng(0)
  videos = [f"v{i}" for i in range(30)]
  segments = [f"{v}:{5 * s}" for v in videos for s in range(6)]
  truth = {}
  for c in range(8):
    for s in rng.choice(segments, 25, replace=False):
      truth[(s, c)] = float(rng.random() < 0.4)
  truth[(segments[0], 9)] = 0.0  # a class with only negatives is not in the mean
  files = [write_truth(tmp_path / "truth.tfrecord", truth)]
  ratings = segment_scoring.read_ratings(files, num_classes=10)
  for _trial in range(20):
    rows = {}
    for c in rng.permutation(10)[:int(rng.integers(5, 11))]:  # some classes without a row
      rows[int(c)] = list(rng.choice(segments, int(rng.integers(0, 60)), replace=False))
    k = int(rng.choice([5, 20, 100_000]))
    result, _ = segment_scoring.score(segment_scoring.SegmentSubmission(rows, []), ratings, k)
    assert result["segment_map"] == pytest.approx(brute_force_map(rows, truth, k), abs=1e-12)
    assert result["num_classes_scored"] == 8


def test_perfect_and_reversed_rankings(tmp_path):
  truth = {("a:0", 1): 1.0, ("a:5", 1): 0.0, ("b:0", 1): 1.0, ("b:0", 2): 1.0}
  ratings = segment_scoring.read_ratings([write_truth(tmp_path / "t.tfrecord", truth)], 5)
  perfect = {1: ["b:0", "a:0", "x:0", "a:5"], 2: ["b:0"]}  # x:0 is unrated: ignored
  result, warnings = segment_scoring.score(segment_scoring.SegmentSubmission(perfect, []),
                                           ratings)
  assert result["segment_map"] == 1.0 and warnings == []
  reversed_rows = {1: ["a:5", "a:0", "b:0"], 4: ["a:0"]}  # class 2 missing, class 4 unrated
  result, warnings = segment_scoring.score(
      segment_scoring.SegmentSubmission(reversed_rows, []), ratings)
  assert result["segment_map"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 0.0) / 2)
  assert result["num_classes_without_row"] == 1 and result["num_rows_not_scored"] == 1
  assert len(warnings) == 2


# ---------------------------------------------------------------------------------------------
# Reading files.


def write_csv(tmp_path, lines, header=submission.SEGMENT_HEADER):
  path = tmp_path / "seg.csv"
  path.write_text("\n".join([header] + lines) + "\n")
  return str(path)


def test_segment_csv_round_trip(tmp_path):
  path = str(tmp_path / "out.csv")
  submission.write_segment_csv(path, [(3, ["a:0", "b:5"]), (7, [])])
  assert segment_scoring.is_segment_csv(path)
  sub = segment_scoring.read_segment_csv(path, num_classes=10)
  assert sub.rows == {3: ["a:0", "b:5"], 7: []} and sub.warnings == []


@pytest.mark.parametrize("line, why", [
    ("x,a:0", "expected '<class>,"),
    ("12,a:0", "class 12 is outside"),
    ("3,a:0 nocolon", "class 3: segment 'nocolon' is not"),
    ("3,a:0 a:0", "class 3: a segment appears twice"),
    ("1,a:0", "duplicate class 1 (first on line 2)"),
])
def test_bad_rows_are_named(tmp_path, line, why):
  path = write_csv(tmp_path, ["1,b:0", line])
  with pytest.raises(submission.SubmissionError, match="line 3: " + re.escape(why)):
    segment_scoring.read_segment_csv(path, num_classes=10)
  sub = segment_scoring.read_segment_csv(path, num_classes=10, skip_bad_rows=True)
  assert sub.rows == {1: ["b:0"]} and len(sub.warnings) == 1


def test_bytes_that_are_not_utf8(tmp_path):
  path = tmp_path / "seg.csv"
  path.write_bytes(b"Class,Segments\n1,b:0\n2,caf\xe9:0\n")
  with pytest.raises(submission.SubmissionError, match="line 3: not UTF-8 text"):
    segment_scoring.read_segment_csv(str(path), num_classes=10)
  sub = segment_scoring.read_segment_csv(str(path), num_classes=10, skip_bad_rows=True)
  assert sub.rows == {1: ["b:0"]} and len(sub.warnings) == 1


def test_wrong_header(tmp_path):
  path = write_csv(tmp_path, [], header=submission.HEADER)
  assert not segment_scoring.is_segment_csv(path)
  with pytest.raises(submission.SubmissionError, match="line 1: expected the header"):
    segment_scoring.read_segment_csv(path, 10)


def test_bad_ratings_are_named(tmp_path):
  good = sequence_example("ok", segments=[(1, 0, 1.0)])
  cases = [
      (sequence_example("v", segments=[(1, 0, 2.0)]), "a segment score is outside"),
      (sequence_example("v", segments=[(11, 0, 1.0)]), "a segment label is outside"),
      (sequence_example("v", segments=[(1, 0, 1.0), (1, 0, 0.0)]), "rated twice"),
      (sequence_example("ok", segments=[(2, 0, 1.0)]), "appears twice"),
  ]
  for index, (record, why) in enumerate(cases):
    path = write_records(tmp_path / f"bad{index}.tfrecord", [good, record])
    with pytest.raises(readers.DataError, match=f"bad{index}.tfrecord: record 1: .*{why}"):
      segment_scoring.read_ratings([path], num_classes=10)
  unrated = write_records(tmp_path / "unrated.tfrecord", [sequence_example("v")])
  with pytest.raises(readers.DataError, match="no rated segments in 1 file"):
    segment_scoring.read_ratings([unrated], num_classes=10)


@pytest.mark.slow
def test_eval_py_scores_a_segment_csv(tmp_path):
  truth = {("a:0", 3): 1.0, ("a:5", 3): 0.0, ("b:0", 7): 1.0}
  data = write_truth(tmp_path / "truth.tfrecord", truth)
  csv = write_csv(tmp_path, ["3,a:5 a:0", "7,b:0"])
  out = tmp_path / "m.json"
  proc = run_cli("eval.py", f"--submission_file={csv}", f"--eval_data_pattern={data}",
                 f"--metrics_json={out}")
  assert "Segment mAP@100000: 0.7500" in proc.stdout
  assert json.loads(out.read_text())["segment_map"] == pytest.approx(0.75)
