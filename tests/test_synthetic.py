"""Tests for yt8m.synthetic: real frame-level format, determinism, worlds, errors, and signal."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from yt8m import readers, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_2018 = os.path.join(REPO, "data/sample/video_level_2018/validate000*.tfrecord")
SAMPLE_2017 = os.path.join(REPO, "data/sample/video_level_2017/*.tfrecord")
SHARED_2018 = "/work/shared/data/yt8m/video_level_2018"

CONTEXT = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}
SEQUENCE = {"rgb": tf.io.FixedLenSequenceFeature([], tf.string),
      "audio": tf.io.FixedLenSequenceFeature([], tf.string)}


def read_shards(paths):
  """Parses shards the way the real frame-level reader does; returns a list of dicts."""
  videos = []
  for raw in tf.data.TFRecordDataset(paths):
    ctx, seq = tf.io.parse_single_sequence_example(raw, CONTEXT, SEQUENCE)
    proto = tf.train.SequenceExample.FromString(raw.numpy())
    visible = [list(f.int64_list.value)
           for f in proto.feature_lists.feature_list[synthetic.VISIBLE_KEY].feature]
    videos.append({
      "id": ctx["id"].numpy().decode(),
      "labels": ctx["labels"].values.numpy(),
      "rgb_len": tf.strings.length(seq["rgb"]).numpy(),
      "audio_len": tf.strings.length(seq["audio"]).numpy(),
      "rgb": tf.io.decode_raw(seq["rgb"], tf.uint8).numpy(),
      "audio": tf.io.decode_raw(seq["audio"], tf.uint8).numpy(),
      "visible": visible,
    })
  return videos


def features(video):
  return readers.dequantize(np.concatenate([video["rgb"], video["audio"]], axis=1)).numpy()


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("builtin"))
  paths = synthetic.generate(out, num_videos=150, seed=1, num_shards=3)
  return out, paths, read_shards(paths)


def test_format_matches_real_frame_level(builtin):
  out, paths, videos = builtin
  assert paths == [os.path.join(out, f"train{i:04d}.tfrecord") for i in range(3)]
  assert sorted(os.listdir(out)) == ["train0000.tfrecord", "train0001.tfrecord",
                     "train0002.tfrecord", "train_manifest.json"]  # no temp files
  assert len(videos) == 150
  assert len({v["id"] for v in videos}) == 150
  for v in videos:
    labels = v["labels"]
    assert labels.size >= 1
    assert np.all(np.diff(labels) > 0)  # sorted, unique
    assert 0 <= labels[0] and labels[-1] < 3862
    n = len(v["rgb_len"])
    assert np.all(v["rgb_len"] == 1024) and np.all(v["audio_len"] == 128)
    assert len(v["audio_len"]) == n == len(v["visible"])
    assert 10 <= n <= 360
    shown = set()
    for frame in v["visible"]:
      assert set(frame) <= set(labels.tolist())
      shown.update(frame)
    assert shown == set(labels.tolist())  # every label is visible somewhere


def test_lengths_and_manifest(builtin):
  out, _, videos = builtin
  lengths = np.array([len(v["rgb_len"]) for v in videos])
  assert (lengths > 300).any() and (lengths < 120).any()
  assert np.mean((lengths >= 120) & (lengths <= 300)) > 0.6
  with open(os.path.join(out, "train_manifest.json")) as f:
    manifest = json.load(f)
  assert manifest["num_videos_written"] == 150
  assert manifest["flags"]["num_shards"] == 3 and manifest["world_seed"] == 0
  assert manifest["num_classes"] == 3862
  assert manifest["num_label_instances"] == sum(v["labels"].size for v in videos)
  stats = manifest["frame_length_stats"]
  assert stats["max"] == lengths.max() and stats["min"] == lengths.min()
  assert stats["num_over_300"] == (lengths > 300).sum()
  assert stats["num_under_120"] == (lengths < 120).sum()


def test_intros_and_outros_are_mostly_background(builtin):
  _, _, videos = builtin
  long_videos = [v for v in videos if len(v["visible"]) >= 120]
  first = np.mean([not v["visible"][0] for v in long_videos])
  middle = np.mean([not v["visible"][len(v["visible"]) // 2] for v in long_videos])
  last = np.mean([not v["visible"][-1] for v in long_videos])
  assert first > middle + 0.2 and last > middle + 0.3


def test_same_arguments_give_identical_bytes(tmp_path):
  a = synthetic.generate(str(tmp_path / "a"), num_videos=12, seed=5, num_shards=2)
  b = synthetic.generate(str(tmp_path / "b"), num_videos=12, seed=5, num_shards=2)
  for pa, pb in zip(a, b, strict=True):
    with open(pa, "rb") as fa, open(pb, "rb") as fb:
      assert fa.read() == fb.read()
  ma = json.load(open(tmp_path / "a" / "train_manifest.json"))
  mb = json.load(open(tmp_path / "b" / "train_manifest.json"))
  ma["flags"].pop("output_dir"), mb["flags"].pop("output_dir")
  assert ma == mb


def test_seeds_splits_and_worlds(tmp_path):
  train = synthetic.generate(str(tmp_path / "t"), num_videos=10, seed=1, split="train")
  valid = synthetic.generate(str(tmp_path / "v"), num_videos=10, seed=2, split="validate")
  other = synthetic.generate(str(tmp_path / "o"), num_videos=10, seed=1, split="train", world_seed=1)
  assert os.path.basename(valid[0]) == "validate0000.tfrecord"
  vt, vv = read_shards(train), read_shards(valid)
  assert not {v["id"] for v in vt} & {v["id"] for v in vv}  # ids unique across seeds/splits
  assert not np.array_equal(vt[0]["rgb"][:10], vv[0]["rgb"][:10])
  manifests = [json.load(open(os.path.join(os.path.dirname(p[0]), f"{s}_manifest.json")))
         for p, s in ((train, "train"), (valid, "validate"), (other, "train"))]
  prints = [m["world"]["fingerprint"] for m in manifests]
  assert prints[0] == prints[1] != prints[2]  # same world_seed => same world, across seeds
  # The world object itself: rebuilt identically, different for another world_seed.
  w0, w0b, w1 = synthetic.build_world(0), synthetic.build_world(0), synthetic.build_world(1)
  np.testing.assert_array_equal(w0.directions, w0b.directions)
  np.testing.assert_array_equal(w0.visibility, w0b.visibility)
  assert not np.allclose(w0.directions, w1.directions)
  assert w0.fingerprint() == prints[0]


def test_builtin_world_statistics():
  world = synthetic.build_world(0)
  rng = np.random.default_rng(0)
  sets = [synthetic.draw_label_set(world, rng) for _ in range(3000)]
  counts = np.bincount(np.concatenate(sets), minlength=3862)
  assert counts.argmax() == 0  # label 0 is the most frequent, as in the 2018 vocabulary
  assert 2.5 < np.mean([len(s) for s in sets]) < 3.6
  norms = np.linalg.norm(world.directions, axis=1)
  assert 2.0 < np.median(norms) < 5.0
  assert np.all(world.frame_noise_std > 0)


def test_top_classes(tmp_path):
  paths = synthetic.generate(str(tmp_path), num_videos=40, seed=3, top_classes=5)
  videos = read_shards(paths)
  assert len(videos) == 40
  assert all(v["labels"].size >= 1 and v["labels"].max() < 5 for v in videos)
  assert all(max((max(f) for f in v["visible"] if f), default=0) < 5 for v in videos)


@pytest.mark.slow
def test_anchored_on_project_sample(tmp_path):
  _, real_sets, files, _ = synthetic.read_video_level(SAMPLE_2018, 3862)
  assert len(files) == 4 and len(real_sets) == 1202
  real = {tuple(s.tolist()) for s in real_sets}
  paths = synthetic.generate(str(tmp_path / "a"), num_videos=30, seed=1, from_video_level=SAMPLE_2018)
  videos = read_shards(paths)
  assert all(tuple(v["labels"].tolist()) in real for v in videos)  # real label sets
  manifest = json.load(open(tmp_path / "a" / "train_manifest.json"))
  assert manifest["world"]["mode"] == "anchored" and manifest["world"]["num_anchor_videos"] == 1202
  # top_classes restricts the pool of real label sets.
  videos = read_shards(synthetic.generate(str(tmp_path / "b"), num_videos=20, seed=1,
                      from_video_level=SAMPLE_2018, top_classes=10))
  filtered = {tuple(s[s < 10].tolist()) for s in real_sets}
  assert all(v["labels"].max() < 10 and tuple(v["labels"].tolist()) in filtered for v in videos)
  # Anchored world: directions from data, identical when rebuilt.
  w = synthetic.build_world(0, 3862, SAMPLE_2018)
  assert w.fingerprint() == manifest["world"]["fingerprint"]


def test_anchored_2017_video_id_key_and_unlabelled_test_files(tmp_path):
  # testa0 has no labels (skipped), validatea0 uses `video_id` and the 4716-class vocabulary.
  paths = synthetic.generate(str(tmp_path / "ok"), num_videos=5, seed=1,
                 from_video_level=SAMPLE_2017, num_classes=4716)
  assert len(read_shards(paths)) == 5
  manifest = json.load(open(tmp_path / "ok" / "train_manifest.json"))
  assert manifest["world"]["num_anchor_unlabelled_skipped"] == 163
  with pytest.raises(ValueError, match=r"validatea0\.tfrecord: record \d+ .*outside \[0, 3862\)"):
    synthetic.generate(str(tmp_path / "bad"), num_videos=5, seed=1, from_video_level=SAMPLE_2017)
  assert not os.path.exists(tmp_path / "bad")  # nothing written on error


def _write_video_level(path, label_sets, id_key="id"):
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(str(path)) as w:
    for i, labels in enumerate(label_sets):
      feat = {id_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"v%d" % i])),
          "mean_rgb": tf.train.Feature(float_list=tf.train.FloatList(value=rng.normal(size=1024))),
          "mean_audio": tf.train.Feature(float_list=tf.train.FloatList(value=rng.normal(size=128)))}
      if labels is not None:
        feat["labels"] = tf.train.Feature(int64_list=tf.train.Int64List(value=labels))
      w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())


def test_top_classes_without_matching_real_video(tmp_path):
  src = tmp_path / "vl.tfrecord"
  _write_video_level(src, [[5, 7], [6], None], id_key="video_id")
  with pytest.raises(ValueError, match="--top_classes=3"):
    synthetic.generate(str(tmp_path / "o"), num_videos=3, seed=1, from_video_level=str(src),
               top_classes=3)
  videos = read_shards(synthetic.generate(str(tmp_path / "o2"), num_videos=4, seed=1,
                      from_video_level=str(src), top_classes=7))
  assert all(tuple(v["labels"].tolist()) in {(5,), (6,)} for v in videos)


def test_malformed_video_level_files_are_named(tmp_path):
  _write_video_level(tmp_path / "noid.tfrecord", [[1]], id_key="name")
  with pytest.raises(ValueError, match=r"noid\.tfrecord: record 0 .*missing key 'id'"):
    synthetic.read_video_level(str(tmp_path / "noid.tfrecord"), 3862)
  with tf.io.TFRecordWriter(str(tmp_path / "nofeat.tfrecord")) as w:
    w.write(tf.train.Example().SerializeToString())
  with pytest.raises(ValueError, match=r"nofeat\.tfrecord: record 0 "):
    synthetic.read_video_level(str(tmp_path / "nofeat.tfrecord"), 3862)


def test_refuses_to_overwrite(tmp_path):
  out = tmp_path / "o"
  out.mkdir()
  (out / "train0001.tfrecord").write_bytes(b"user data")
  with pytest.raises(synthetic.OutputExistsError, match="train0001.tfrecord"):
    synthetic.generate(str(out), num_videos=4, seed=1, num_shards=2)
  assert sorted(os.listdir(out)) == ["train0001.tfrecord"]
  assert (out / "train0001.tfrecord").read_bytes() == b"user data"
  synthetic.generate(str(out), num_videos=2, seed=1, split="validate")
  with pytest.raises(ValueError, match="validate_manifest.json|validate0000.tfrecord"):
    synthetic.generate(str(out), num_videos=2, seed=9, split="validate")


def test_a_failed_or_killed_generation_leaves_no_partial_shard(tmp_path, monkeypatch):
  out = tmp_path / "o"
  out.mkdir()
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  stale = out / f"train0000.tfrecord.tmp-{int(dead.stdout)}"  # a killed generator's partial
  stale.write_bytes(b"partial")
  real_make_video = synthetic.make_video

  def fail_on_video_3(world, rng, name, top_classes=None, **kwargs):
    if name.endswith("3"):
      raise KeyboardInterrupt  # stopped in the middle of the second shard
    return real_make_video(world, rng, name, top_classes, **kwargs)

  monkeypatch.setattr(synthetic, "make_video", fail_on_video_3)
  with pytest.raises(KeyboardInterrupt):
    synthetic.generate(str(out), num_videos=4, seed=1, num_shards=2)
  # The finished first shard is in place; no partial second shard, no temporary, no manifest.
  assert sorted(os.listdir(out)) == ["train0000.tfrecord"]
  monkeypatch.setattr(synthetic, "make_video", real_make_video)
  assert len(read_shards([str(out / "train0000.tfrecord")])) == 2


def test_a_file_created_while_generating_is_not_replaced(tmp_path, monkeypatch):
  out = tmp_path / "o"
  real_serialize = synthetic.serialize_video

  def user_writes_meanwhile(video, segments=None):
    (out / "train0000.tfrecord").write_bytes(b"user data")
    return real_serialize(video, segments)

  monkeypatch.setattr(synthetic, "serialize_video", user_writes_meanwhile)
  with pytest.raises(synthetic.OutputExistsError, match="train0000.tfrecord"):
    synthetic.generate(str(out), num_videos=2, seed=1)
  assert (out / "train0000.tfrecord").read_bytes() == b"user data"
  assert sorted(os.listdir(out)) == ["train0000.tfrecord"]


@pytest.mark.parametrize("kwargs, flag", [
  ({"num_videos": 0}, "--num_videos"),
  ({"num_shards": 0}, "--num_shards"),
  ({"top_classes": 0}, "--top_classes"),
  ({"top_classes": 3863}, "--top_classes"),
  ({"seed": -1}, "--seed"),
  ({"from_video_level": "/nonexistent/*.tfrecord"}, "--from_video_level"),
  ({"structure": "waves"}, "--structure"),
])
def test_bad_arguments(tmp_path, kwargs, flag):
  args = {"output_dir": str(tmp_path / "o"), "num_videos": 3, "seed": 1, **kwargs}
  with pytest.raises(ValueError, match=flag):
    synthetic.generate(**args)
  assert not os.path.exists(tmp_path / "o")


def test_bursts_structure(tmp_path):
  """--structure=bursts: 1-3 short bursts per label, background elsewhere, within 300 frames,
  the look drifting along the video; recorded in the manifest; the default stays as it was."""
  out = str(tmp_path / "b")
  videos = read_shards(synthetic.generate(out, num_videos=40, seed=1, top_classes=30,
                                          structure="bursts"))
  with open(synthetic.manifest_path(out, "train")) as f:
    assert json.load(f)["flags"]["structure"] == "bursts"
  default = str(tmp_path / "default")
  synthetic.generate(default, num_videos=2, seed=1)
  with open(synthetic.manifest_path(default, "train")) as f:
    assert "structure" not in json.load(f)["flags"]
  background = []
  for v in videos:
    n = len(v["visible"])
    assert 20 <= n <= 300
    shown = {int(c): 0 for c in v["labels"]}
    for frame in v["visible"]:
      for c in frame:
        shown[c] += 1
    lo, hi = synthetic.BURSTS_PER_LABEL[0], synthetic.BURSTS_PER_LABEL[1] * synthetic.BURST_FRAMES[1]
    assert all(lo <= count <= hi for count in shown.values()), shown  # every label, briefly
    background.append(np.mean([not frame for frame in v["visible"]]))
  assert np.mean(background) > 0.7  # long uninformative stretches

  world = synthetic.build_world(0)
  d, e = world.directions[:30], synthetic.drift_directions(world)[:30]
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), np.linalg.norm(d, axis=1), rtol=1e-4)
  np.testing.assert_allclose((d * e).sum(1), 0, atol=1e-2)  # a second look, not the first
  first = synthetic.make_video(world, synthetic.video_rng(1, "train", 0), "v", 30)
  again = synthetic.make_video(world, synthetic.video_rng(1, "train", 0), "v", 30, structure="shots")
  np.testing.assert_array_equal(first.features, again.features)


def test_quantization_matches_real_extractor():
  x = np.array([-3.0, -2.0, -1.0, 0.0, 0.5, 2.0, 3.0])
  np.testing.assert_array_equal(synthetic.quantize(x), [0, 0, 64, 128, 159, 255, 255])
  q = np.arange(256, dtype=np.uint8)
  np.testing.assert_array_equal(synthetic.quantize(readers.dequantize(q)), q)


@pytest.mark.slow
def test_command_line(tmp_path):
  env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
  cmd = [sys.executable, "-m", "yt8m.synthetic", f"--output_dir={tmp_path / 'cli'}", "--seed=1"]
  bad = subprocess.run(cmd + ["--num_videos=0"], capture_output=True, text=True, env=env, cwd=REPO)
  assert bad.returncode != 0 and "--num_videos" in bad.stderr
  good = subprocess.run(cmd + ["--num_videos=3", "--split=validate", "--top_classes=50"],
              capture_output=True, text=True, env=env, cwd=REPO)
  assert good.returncode == 0, good.stderr
  videos = read_shards([str(tmp_path / "cli" / "validate0000.tfrecord")])
  assert len(videos) == 3 and all(v["labels"].max() < 50 for v in videos)


@pytest.mark.slow
def test_where_frames_lie_matters(tmp_path):
  """k uniformly spread frames carry the labels; the first/last k frames mostly do not."""
  top, k = 20, 5
  videos = read_shards(synthetic.generate(str(tmp_path), num_videos=300, seed=7, top_classes=top))
  world = synthetic.build_world(0)
  d = world.directions[:top].T  # (1152, 20)

  def hit_at_1(view):
    # Least-squares label weights of the view's mean feature; hit if the top one is a label.
    hits = []
    for v in videos:
      x = features(v)[:300]  # what the real reader keeps
      beta, *_ = np.linalg.lstsq(d, view(x).mean(0) - world.mu, rcond=None)
      hits.append(int(np.argmax(beta)) in v["labels"])
    return float(np.mean(hits))

  uniform = hit_at_1(lambda x: x[((np.arange(k) + 0.5) * len(x) / k).astype(int)])
  first, last = hit_at_1(lambda x: x[:k]), hit_at_1(lambda x: x[-k:])
  every = hit_at_1(lambda x: x)
  one = hit_at_1(lambda x: x[[len(x) // 2]])
  print(f"hit@1: all {every:.2f} uniform{k} {uniform:.2f} first{k} {first:.2f} "
      f"last{k} {last:.2f} middle1 {one:.2f}")
  assert uniform > first + 0.15 and uniform > last + 0.2, (uniform, first, last)
  assert every > uniform + 0.05 and uniform > one + 0.1, (every, uniform, one)  # more frames help


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHARED_2018), reason=f"{SHARED_2018} not present (shared data folder)")
def test_anchored_on_shared_2018(tmp_path):
  pattern = os.path.join(SHARED_2018, "validate00*.tfrecord")
  assert glob.glob(pattern)
  videos = read_shards(synthetic.generate(str(tmp_path), num_videos=10, seed=1, from_video_level=pattern))
  assert len(videos) == 10
  manifest = json.load(open(tmp_path / "train_manifest.json"))
  assert manifest["world"]["mode"] == "anchored"
  assert manifest["world"]["num_anchor_videos"] == 11790
  assert len(manifest["world"]["source_files"]) == len(glob.glob(pattern))
