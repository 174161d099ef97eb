"""train.py / eval.py / inference.py / export_model.py end to end on small data."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from conftest import REPO, SAMPLE, sequence_example, write_records
from conftest import run_cli as run

VIDEO_TRAIN = str(SAMPLE / "video_level_2018" / "validate000[0-1].tfrecord")
VIDEO_EVAL = str(SAMPLE / "video_level_2018" / "validate0003.tfrecord")
VIDEO_FLAGS = ["--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128"]



@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
  """A trained MoE video-level run (shared by the eval/inference/export tests)."""
  train_dir = tmp_path_factory.mktemp("run") / "moe"
  run("train.py", "--model=MoeModel", *VIDEO_FLAGS, f"--train_data_pattern={VIDEO_TRAIN}",
      f"--train_dir={train_dir}", "--batch_size=64", "--max_steps=12", "--export_model_steps=5",
      "--base_learning_rate=0.05")
  return train_dir


@pytest.mark.slow
def test_the_starter_readme_command_runs_unchanged(tmp_path, frame_data):
  proc = run("train.py", "--frame_features", "--model=FrameLevelLogisticModel",
             "--feature_names=rgb,audio", "--feature_sizes=1024,128",
             f"--train_data_pattern={frame_data}/train*.tfrecord",
             f"--train_dir={tmp_path}/run", "--start_new_model")
  # 5 epochs (the default) of 24 videos < --batch_size 1024: as the starter's input queue,
  # batches run across epochs, so all 120 examples make one (smaller, final) batch.
  assert "training step 1 | Loss:" in proc.stderr
  assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("model.ckpt-1")
  saved = json.loads((tmp_path / "run" / "model_flags.json").read_text())
  assert saved["model"] == "FrameLevelLogisticModel" and saved["frame_features"] is True
  assert saved["feature_names"] == "rgb,audio" and saved["feature_sizes"] == "1024,128"


@pytest.mark.slow
def test_checkpoints_logs_and_tensorboard(video_run):
  names = sorted(os.listdir(video_run))
  assert "model.ckpt-10.index" in names and "model.ckpt-12.index" in names
  events = event_accumulator.EventAccumulator(str(video_run), size_guidance={"tensors": 0})
  events.Reload()
  tags = set(events.Tags()["tensors"])
  for tag in ("learning_rate", "label_loss", "reg_loss", "model/Training_Hit@1",
              "model/Training_Perr", "model/Training_GAP", "global_step/Examples/Second"):
    assert tag in tags, tag
  assert len(events.Tensors("label_loss")) == 12
  assert len(events.Tensors("model/Training_GAP")) == 1  # every 10 steps
  assert any(tag.startswith("tower/") for tag in tags)  # the starter's weight histograms
  # The hparams plugin holds the run's flags (its session-start summary).
  assert events.PluginTagToContent("hparams")


@pytest.mark.slow
def test_eval_inference_and_csv_scoring_agree(video_run, tmp_path):
  metrics_json = tmp_path / "eval.json"
  proc = run("eval.py", f"--train_dir={video_run}", f"--eval_data_pattern={VIDEO_EVAL}",
             "--run_once", f"--metrics_json={metrics_json}", "--batch_size=100")
  assert "epoch/eval number 12 | Avg_Hit@1:" in proc.stderr
  evaluated = json.loads(metrics_json.read_text())
  assert evaluated["num_videos"] == 300
  events = event_accumulator.EventAccumulator(str(video_run / "eval"),
                                              size_guidance={"tensors": 0})
  events.Reload()
  assert {"Epoch/Eval_Avg_Hit@1", "Epoch/Eval_Avg_Perr", "Epoch/Eval_Avg_Loss", "Epoch/Eval_GAP",
          "Epoch/Eval_MAP"} <= set(events.Tags()["tensors"])
  assert events.Tensors("Epoch/Eval_GAP")[0].step == 12

  csv = tmp_path / "pred.csv"
  run("inference.py", f"--train_dir={video_run}", f"--input_data_pattern={VIDEO_EVAL}",
      f"--output_file={csv}", f"--output_model_tgz={tmp_path}/model.tgz")
  lines = csv.read_text().splitlines()
  assert lines[0] == "VideoId,LabelConfidencePairs" and len(lines) == 301
  assert len(lines[1].split(",")[1].split()) == 40  # 20 label/confidence pairs
  scored = tmp_path / "scored.json"
  run("eval.py", f"--submission_file={csv}", f"--eval_data_pattern={VIDEO_EVAL}",
      f"--metrics_json={scored}")
  from_csv = json.loads(scored.read_text())
  # The CSV keeps 6 significant digits, so ties can appear: equal to 1e-3, and Hit@1 and PERR
  # may differ by the share of videos whose best confidences the CSV prints alike (saturated
  # sigmoids print as "1"), whose order in the CSV is then the writer's, not the model's.
  confidences = [row.split(",")[1].split()[1:20:2] for row in lines[1:]]
  tied = sum(len(set(row)) < len(row) for row in confidences)
  for key in ("hit_at_one", "perr", "gap", "map"):
    slack = tied / 300 if key in ("hit_at_one", "perr") else 0.0
    assert from_csv[key] == pytest.approx(evaluated[key], abs=1e-3 + slack), (key, tied)

  # The model bundle round-trips: same predictions from the untarred copy.
  again = tmp_path / "again.csv"
  run("inference.py", f"--input_model_tgz={tmp_path}/model.tgz",
      f"--untar_model_dir={tmp_path}/untarred", f"--input_data_pattern={VIDEO_EVAL}",
      f"--output_file={again}")
  assert again.read_text() == csv.read_text()


@pytest.mark.slow
def test_unlabelled_2017_test_files_get_predictions(tmp_path):
  train_dir = tmp_path / "run17"
  run("train.py", "--model=LogisticModel", *VIDEO_FLAGS, "--num_classes=4716",
      f"--train_data_pattern={SAMPLE}/video_level_2017/validatea0.tfrecord",
      f"--train_dir={train_dir}", "--max_steps=2", "--batch_size=32")
  csv = tmp_path / "test.csv"
  run("inference.py", f"--train_dir={train_dir}",
      f"--input_data_pattern={SAMPLE}/video_level_2017/testa0.tfrecord", f"--output_file={csv}")
  ids = [line.split(",")[0] for line in csv.read_text().splitlines()[1:]]
  assert len(ids) == 163 == len(set(ids))


@pytest.mark.slow
def test_export_signatures_match_the_checkpoint(video_run, tmp_path):
  export_dir = tmp_path / "export"
  run("export_model.py", f"--train_dir={video_run}", f"--export_dir={export_dir}")
  from yt8m import eval_lib, readers
  run_cfg, model, _ = eval_lib.load_model(str(video_run))
  batch = next(readers.iterate_numpy([VIDEO_EVAL], run_cfg.reader_config(), 5))
  expected = model(batch["features"], batch["num_frames"])["predictions"].numpy()
  loaded = tf.saved_model.load(str(export_dir))
  records = [r.numpy() for r in tf.data.TFRecordDataset(VIDEO_EVAL).take(5)]
  served = loaded.signatures["serving_default"](example_bytes=tf.constant(records))
  assert served["video_id"].numpy().tolist() == batch["video_ids"].tolist()
  top = np.argsort(-expected, axis=1, kind="stable")[:, :20]
  np.testing.assert_array_equal(served["class_indexes"].numpy(), top)
  np.testing.assert_allclose(served["predictions"].numpy(),
                             np.take_along_axis(expected, top, 1), rtol=1e-5)
  dense = loaded.signatures["serve_features"](features=tf.constant(batch["features"]))
  np.testing.assert_allclose(dense["predictions"].numpy(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_frame_level_export_serves_examples_and_dense_frames(tmp_path, frame_data):
  train_dir = tmp_path / "lstm"
  run("train.py", "--frame_features", "--model=LstmModel", "--lstm_cells=8",
      "--feature_names=rgb,audio", "--feature_sizes=1024,128",
      f"--train_data_pattern={frame_data}/train*.tfrecord", f"--train_dir={train_dir}",
      "--max_steps=2", "--batch_size=8")
  run("export_model.py", f"--train_dir={train_dir}", f"--export_dir={tmp_path}/export")
  from yt8m import eval_lib, readers
  run_cfg, model, _ = eval_lib.load_model(str(train_dir))
  files = [str(frame_data / "train0.tfrecord")]
  batch = next(readers.iterate_numpy(files, run_cfg.reader_config(), 4))
  expected = model(batch["features"], batch["num_frames"])["predictions"].numpy()
  loaded = tf.saved_model.load(str(tmp_path / "export"))
  dense = loaded.signatures["serve_frames"](rgb_and_audio=tf.constant(batch["features"]),
                                            num_frames=tf.constant(batch["num_frames"]))
  np.testing.assert_allclose(dense["predictions"].numpy(), expected, rtol=1e-4, atol=1e-6)
  records = [r.numpy() for r in tf.data.TFRecordDataset(files[0]).take(4)]
  served = loaded.signatures["serving_default"](example_bytes=tf.constant(records))
  np.testing.assert_allclose(served["predictions"].numpy()[:, 0], expected.max(1), rtol=1e-4)


@pytest.mark.slow
def test_resume_and_changed_flags(video_run, tmp_path):
  train_dir = tmp_path / "resume"
  args = ["--model=LogisticModel", *VIDEO_FLAGS, f"--train_data_pattern={VIDEO_TRAIN}",
          f"--train_dir={train_dir}", "--batch_size=32"]
  run("train.py", *args, "--max_steps=3")
  proc = run("train.py", *args, "--max_steps=5")
  assert "Restoring from" in proc.stderr and "model.ckpt-3" in proc.stderr
  assert "training step 4 |" in proc.stderr and "training step 1 |" not in proc.stderr
  flags_before = (train_dir / "model_flags.json").read_text()
  changed = run("train.py", "--model=MoeModel", *args[1:], "--max_steps=7", check=False)
  assert changed.returncode != 0
  assert "train.py: error:" in changed.stderr and "model: saved 'LogisticModel', now 'MoeModel'" \
      in changed.stderr
  assert (train_dir / "model_flags.json").read_text() == flags_before
  assert tf.train.latest_checkpoint(str(train_dir)).endswith("-5")


@pytest.mark.slow
def test_start_new_model_removes_only_our_files(tmp_path):
  train_dir = tmp_path / "fresh"
  args = ["--model=LogisticModel", *VIDEO_FLAGS, f"--train_data_pattern={VIDEO_TRAIN}",
          f"--train_dir={train_dir}", "--batch_size=32", "--max_steps=2"]
  run("train.py", *args)
  (train_dir / "notes.txt").write_text("mine")
  (train_dir / "model.ckpt-2.index.bak").write_text("also mine")
  proc = run("train.py", *args[1:], "--model=MoeModel", "--start_new_model")
  assert "Restoring" not in proc.stderr
  assert (train_dir / "notes.txt").read_text() == "mine"
  assert (train_dir / "model.ckpt-2.index.bak").exists()
  assert json.loads((train_dir / "model_flags.json").read_text())["model"] == "MoeModel"


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    (["--model=NoSuchModel"], "unknown --model 'NoSuchModel'"),
    (["--feature_sizes=1024"], "feature_names has 2 entries"),
    (["--train_data_pattern="], "--train_data_pattern is required"),
    (["--train_data_pattern=/nonexistent/*.tfrecord"], "no files match"),
    (["--optimizer=Nope"], "unknown --optimizer 'Nope'"),
])
def test_bad_command_lines_give_one_clear_line(tmp_path, args, message):
  base = ["--model=LogisticModel", *VIDEO_FLAGS, f"--train_data_pattern={VIDEO_TRAIN}",
          f"--train_dir={tmp_path}/run", "--max_steps=1"]
  proc = run("train.py", *base, *args, check=False)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("train.py: error:") and message in last, proc.stderr[-2000:]


@pytest.mark.slow
def test_unwritable_train_dir(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  proc = run("train.py", "--model=LogisticModel", *VIDEO_FLAGS,
             f"--train_data_pattern={VIDEO_TRAIN}", f"--train_dir={blocker}/run",
             "--max_steps=1", check=False)
  assert proc.returncode != 0 and "is not writable" in proc.stderr.splitlines()[-1]
  assert blocker.read_text() == "not a directory"


@pytest.mark.slow
def test_eval_rejects_contradicting_flags_and_watches_for_checkpoints(video_run):
  proc = run("eval.py", f"--train_dir={video_run}", f"--eval_data_pattern={VIDEO_EVAL}",
             "--run_once", "--model=LogisticModel", check=False)
  assert proc.returncode != 0 and "--model=LogisticModel (the run has 'MoeModel')" in proc.stderr
  start = time.time()
  proc = run("eval.py", f"--train_dir={video_run}", f"--eval_data_pattern={VIDEO_EVAL}",
             "--eval_interval_secs=0.5", "--eval_timeout_secs=2")
  assert "epoch/eval number 12" in proc.stderr and "No new checkpoint" in proc.stderr
  assert time.time() - start < 120


def wait_for(proc, text, timeout=240):
  deadline = time.time() + timeout
  seen = ""
  while time.time() < deadline:
    line = proc.stderr.readline()
    seen += line
    if text in line:
      return seen
  raise AssertionError(f"{text!r} never appeared:\n{seen[-3000:]}")


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
  train_dir = tmp_path / "killed"
  args = [sys.executable, str(REPO / "train.py"), "--model=LogisticModel", *VIDEO_FLAGS,
          f"--train_data_pattern={VIDEO_TRAIN}", f"--train_dir={train_dir}", "--batch_size=16",
          "--export_model_steps=4", "--max_steps=14"]
  proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=REPO)
  wait_for(proc, "training step 6 |")
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert tf.train.latest_checkpoint(str(train_dir)).endswith("-4")
  done = run("train.py", *args[2:])
  assert "model.ckpt-4" in done.stderr and "training step 5 |" in done.stderr
  assert tf.train.latest_checkpoint(str(train_dir)).endswith("-14")


@pytest.mark.slow
def test_killed_inference_leaves_no_partial_csv(video_run, tmp_path):
  out = tmp_path / "pred.csv"
  proc = subprocess.Popen(
      [sys.executable, str(REPO / "inference.py"), f"--train_dir={video_run}",
       f"--input_data_pattern={SAMPLE}/video_level_2018/*.tfrecord", f"--output_file={out}",
       "--batch_size=8"], stderr=subprocess.PIPE, text=True, cwd=REPO)
  wait_for(proc, "num examples processed: 16 ")
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not out.exists()


@pytest.mark.parametrize("name", ["LogisticModel", "MoeModel", "FrameLevelLogisticModel",
                                  "DbofModel", "LstmModel"])
def test_every_model_round_trips_through_a_checkpoint(tmp_path, name):
  from yt8m import building, models, run_config
  frame_level = name in models.FRAME_LEVEL_MODELS
  hparams = {"LstmModel": {"lstm_cells": 4}, "DbofModel": {"dbof_cluster_size": 8,
                                                           "dbof_hidden_size": 4}}.get(name, {})
  run_cfg = run_config.RunConfig(model=name, feature_names=("rgb",) if frame_level else
                                 ("mean_rgb",), feature_sizes=(12,), frame_features=frame_level,
                                 num_classes=5, max_frames=9, model_hparams=hparams)
  features = np.random.default_rng(0).normal(size=(3, 9, 12) if frame_level else (3, 12))
  num_frames = np.array([2, 9, 5], np.int32)
  original = building.build_model(run_cfg)
  saved = tf.train.Checkpoint(model=original).save(str(tmp_path / "ckpt"))
  copy = building.build_model(run_cfg)  # fresh random weights
  assert any(not np.array_equal(a.numpy(), b.numpy())
             for a, b in zip(copy.weights, original.weights, strict=True))
  building.restore(saved, model=copy)
  np.testing.assert_array_equal(copy(features, num_frames)["predictions"],
                                original(features, num_frames)["predictions"])


@pytest.mark.slow
def test_segment_evaluation_and_segment_submission(tmp_path, frame_data):
  train_dir = tmp_path / "seg"
  run("train.py", "--frame_features", "--model=FrameLevelLogisticModel",
      "--feature_names=rgb,audio", "--feature_sizes=1024,128", "--num_classes=10",
      f"--train_data_pattern={frame_data}/train*.tfrecord", f"--train_dir={train_dir}",
      "--max_steps=3", "--batch_size=8")
  rated = write_records(tmp_path / "rated.tfrecord", [
      sequence_example("a", num_frames=30, segments=[(1, 0, 1.0), (2, 10, 0.0), (3, 25, 1.0)]),
      sequence_example("b", num_frames=12, segments=[(2, 5, 1.0)]),
  ])
  proc = run("eval.py", f"--train_dir={train_dir}", f"--eval_data_pattern={rated}",
             "--run_once", "--segment_labels", f"--metrics_json={tmp_path}/seg.json")
  assert "epoch/eval number 3" in proc.stderr
  assert json.loads((tmp_path / "seg.json").read_text())["num_videos"] == 4  # rated segments
  events = event_accumulator.EventAccumulator(str(train_dir / "eval"),
                                              size_guidance={"tensors": 0})
  events.Reload()
  assert "Epoch/SegEval_GAP" in events.Tags()["tensors"]

  whitelist = tmp_path / "ids.csv"
  whitelist.write_text("Index\n1\n2\n3\n")
  out = tmp_path / "segments.csv"
  run("inference.py", f"--train_dir={train_dir}", f"--input_data_pattern={rated}",
      "--segment_labels", f"--segment_label_ids_file={whitelist}", "--segment_max_pred=4",
      f"--output_file={out}")
  lines = out.read_text().splitlines()
  assert lines[0] == "Class,Segments"
  classes = [int(line.split(",")[0]) for line in lines[1:]]
  assert classes == sorted(classes) and set(classes) <= {1, 2, 3} and classes
  all_segments = {"a:0", "a:5", "a:10", "a:15", "a:20", "a:25", "b:0", "b:5", "b:10"}
  for line in lines[1:]:
    segments = line.split(",")[1].split()
    assert 1 <= len(segments) <= 4 and set(segments) <= all_segments
