"""Fault injection for training: locks, what --start_new_model may delete, exact resume,
the NaN guard, damaged checkpoints, bad flags and bad data (docs/RELIABILITY.md)."""

import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, example, write_records
from yt8m import building, readers, run_config, train_dir, train_lib

RUN = run_config.RunConfig(model="LogisticModel", feature_names=("mean_rgb", "mean_audio"),
                           feature_sizes=(8, 4), frame_features=False, num_classes=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """30 tiny video-level records in 3 files: 8 steps an epoch at batch 4 (the last short)."""
  folder = tmp_path_factory.mktemp("tiny")
  rng = np.random.default_rng(0)
  paths = []
  for shard in range(3):
    records = []
    for i in range(10):
      label = int(rng.integers(0, 5))
      rgb = rng.normal(size=8)
      rgb[label] += 3
      records.append(example(f"f{shard}v{i}", labels=(label,), mean_rgb=rgb,
                             mean_audio=rng.normal(size=4)))
    paths.append(write_records(folder / f"train{shard}.tfrecord", records))
  return paths


def train(files, directory, run=RUN, **overrides):
  keras.utils.set_random_seed(1)
  settings = dict(train_dir=str(directory), batch_size=4, num_epochs=3, seed=1,
                  base_learning_rate=0.1, checkpoint_steps=5, metrics_every=1000,
                  log_every=1000)
  settings.update(overrides)
  return train_lib.train(run, files, train_lib.TrainConfig(**settings),
                         tf.distribute.OneDeviceStrategy("/cpu:0"))


def weights(result):
  return [v.numpy() for v in result["model"].trainable_variables]


def assert_same_weights(a, b):
  assert len(a) == len(b) > 0
  for x, y in zip(a, b, strict=True):
    np.testing.assert_allclose(x, y, atol=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(files, tmp_path_factory):
  return train(files, tmp_path_factory.mktemp("whole") / "run")


# --- resume equals an uninterrupted run ----------------------------------------------------


def test_a_run_covers_its_epochs_in_full_batches(uninterrupted):
  assert uninterrupted["step"] == 23  # ceil(3 epochs x 30 videos / 4)


@pytest.mark.parametrize("stop", [5, 8, 15, 22])  # after a checkpoint, across an epoch end
def test_a_stopped_run_resumes_to_the_same_weights(files, tmp_path, uninterrupted, stop):
  first = train(files, tmp_path / "run", max_steps=stop)
  assert first["step"] == stop
  resumed = train(files, tmp_path / "run")
  assert resumed["step"] == 23
  assert_same_weights(weights(resumed), weights(uninterrupted))


RANDOM_RUNS = {
    # DBoF draws its frames at random when training: its generator is in the checkpoint.
    "dbof_sampling": dict(model="DbofModel", model_hparams={
        "iterations": 5, "dbof_cluster_size": 8, "dbof_hidden_size": 4}),
    # --frame_selection=random draws in the reader, seeded by the record's stream position.
    "random_frames": dict(model="FrameLevelLogisticModel", student_frames=3,
                          frame_selection="random"),
    # --uniform_jitter: the same seeding, one frame drawn in each stretch.
    "jittered_frames": dict(model="FrameLevelLogisticModel", student_frames=3,
                            uniform_jitter=True),
}


@pytest.mark.parametrize("kind, stop", [("dbof_sampling", 7), ("random_frames", 5),
                                        ("jittered_frames", 5)])
def test_a_run_that_draws_at_random_resumes_to_the_same_weights(frame_data, tmp_path, kind,
                                                                  stop):
  run = run_config.RunConfig(feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                             frame_features=True, num_classes=4, **RANDOM_RUNS[kind])
  files = readers.list_files(str(frame_data / "train*.tfrecord"))
  whole = train(files, tmp_path / "whole", run=run, num_epochs=2)
  train(files, tmp_path / "run", run=run, num_epochs=2, max_steps=stop)
  resumed = train(files, tmp_path / "run", run=run, num_epochs=2)
  assert resumed["step"] == whole["step"] == 12
  assert_same_weights(weights(resumed), weights(whole))


def test_rerunning_a_finished_run_does_nothing(files, tmp_path):
  done = train(files, tmp_path / "run")
  before = sorted(os.listdir(tmp_path / "run"))
  again = train(files, tmp_path / "run")
  assert again["step"] == done["step"]
  assert sorted(os.listdir(tmp_path / "run")) == before
  assert_same_weights(weights(again), weights(done))


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_resumes_to_the_same_weights(tmp_path):
  """A real SIGKILL of train.py while it trains on, then the same command again."""
  data = str(REPO / "data" / "sample" / "video_level_2018" / "validate0000.tfrecord")
  command = [sys.executable, str(REPO / "train.py"), "--model=LogisticModel",
             "--feature_names=mean_rgb,mean_audio", "--feature_sizes=1024,128",
             f"--train_data_pattern={data}", "--batch_size=32", "--num_epochs=2",
             "--export_model_steps=4", "--seed=5", "--base_learning_rate=0.05"]
  whole = subprocess.run(command + [f"--train_dir={tmp_path / 'whole'}"], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
  assert whole.returncode == 0, whole.stderr[-2000:]
  killed_dir = tmp_path / "killed"
  proc = subprocess.Popen(command + [f"--train_dir={killed_dir}", "--steps_per_execution=1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
  try:
    for _ in range(3000):
      if (killed_dir / "model.ckpt-8.index").exists() or proc.poll() is not None:
        break
      subprocess.run(["sleep", "0.02"])
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait(timeout=60)
  resumed = subprocess.run(command + [f"--train_dir={killed_dir}"], capture_output=True,
                           text=True, timeout=300, cwd=REPO)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert tf.train.latest_checkpoint(str(killed_dir)).endswith(
      tf.train.latest_checkpoint(str(tmp_path / "whole")).rsplit("/", 1)[1])
  whole_model = building.load_model(str(tmp_path / "whole"))[1]
  killed_model = building.load_model(str(killed_dir))[1]
  assert_same_weights([v.numpy() for v in killed_model.weights],
                      [v.numpy() for v in whole_model.weights])


@pytest.mark.slow
def test_many_epoch_boundaries_under_mirrored_strategy_do_not_hang(tmp_path, files):
  """One iterator for the whole run: 30 epochs of 8 steps on 2 logical devices."""
  script = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {str(REPO)!r})
      import tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from yt8m import run_config, train_lib
      run = run_config.RunConfig(model="LogisticModel", feature_names=("mean_rgb", "mean_audio"),
                                 feature_sizes=(8, 4), frame_features=False, num_classes=5)
      config = train_lib.TrainConfig(train_dir={str(tmp_path / "run")!r}, batch_size=2,
                                     num_epochs=30, seed=1, checkpoint_steps=10**6,
                                     log_every=50, metrics_every=10**6)
      result = train_lib.train(run, {files!r}, config,
                               tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
      print("STEP", result["step"])
      """)
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=240)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "STEP 225" in proc.stdout  # 30 x 30 videos / global batch 4


# --- the train directory -------------------------------------------------------------------


def test_a_second_run_on_a_locked_directory_fails_with_one_line(files, tmp_path):
  directory = tmp_path / "run"
  directory.mkdir()
  with train_dir.locked(str(directory)):
    with pytest.raises(train_lib.TrainError, match=r"in use by another train.py \(pid \d+ on "
                                                   r"host .*\)"):
      train(files, directory, max_steps=1)
  assert train(files, directory, max_steps=1)["step"] == 1  # released


def test_a_stale_lock_is_taken_over_and_reported(files, tmp_path, caplog):
  directory = tmp_path / "run"
  directory.mkdir()
  (directory / train_dir.LOCK_FILE).write_text("pid 999999 on host elsewhere\n")
  assert train(files, directory, max_steps=1)["step"] == 1
  assert "pid 999999 on host elsewhere" in caplog.text


def test_start_new_model_removes_only_what_yt8m_wrote(files, tmp_path):
  directory = tmp_path / "run"
  train(files, directory, max_steps=6)
  assert (directory / "model.ckpt-6.index").exists()
  mine = ["events.out.tfevents.123.user", "model.ckpt-99.index", "notes.txt"]
  for name in mine:
    (directory / name).write_text("the user's")
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  (outside / "events.out.tfevents.1.other").write_text("keep")
  (outside / "model.ckpt-1.index").write_text("keep")
  os.symlink(outside, directory / "eval")
  train(files, directory, max_steps=2, start_new_model=True)
  for name in mine:
    assert (directory / name).read_text() == "the user's"
  assert sorted(os.listdir(outside)) == ["events.out.tfevents.1.other", "model.ckpt-1.index"]
  assert not (directory / "model.ckpt-5.index").exists()
  assert not (directory / "model.ckpt-6.index").exists()
  assert tf.train.latest_checkpoint(str(directory)).endswith("model.ckpt-2")


def test_start_new_model_refuses_a_checkpoint_index_it_did_not_write(files, tmp_path):
  directory = tmp_path / "run"
  directory.mkdir()
  (directory / "checkpoint").write_text('model_checkpoint_path: "theirs"\n')
  with pytest.raises(train_lib.TrainError, match="did not record writing"):
    train(files, directory, max_steps=1, start_new_model=True)
  assert (directory / "checkpoint").read_text() == 'model_checkpoint_path: "theirs"\n'


def test_stale_checkpoint_temporaries_are_removed_at_start(files, tmp_path):
  directory = tmp_path / "run"
  (directory / "model.ckpt-3_temp").mkdir(parents=True)
  (directory / "model.ckpt-3_temp" / "part-00000-of-00001.data-00000-of-00001").write_text("x")
  (directory / "my_temp").mkdir()
  train(files, directory, max_steps=1)
  assert not (directory / "model.ckpt-3_temp").exists()
  assert (directory / "my_temp").exists()


def test_a_lost_checkpoint_index_resumes_from_the_newest_complete_checkpoint(files, tmp_path,
                                                                              caplog):
  directory = tmp_path / "run"
  train(files, directory, max_steps=10)
  (directory / "checkpoint").unlink()
  assert train(files, directory, max_steps=12)["step"] == 12  # from 10, not from scratch
  assert "no 'checkpoint' index" in caplog.text
  for data in directory.glob("model.ckpt-12.data-*"):
    data.unlink()
  caplog.clear()
  result = train(files, directory, max_steps=13)
  assert result["step"] == 13  # from 10
  assert "model.ckpt-12 is incomplete" in caplog.text


def test_a_changed_optimizer_is_refused(files, tmp_path):
  train(files, tmp_path / "run", max_steps=2)
  with pytest.raises(train_lib.TrainError, match="trained with AdamOptimizer"):
    train(files, tmp_path / "run", max_steps=4, optimizer="SGD")


# --- NaN guard -----------------------------------------------------------------------------


def test_divergence_keeps_no_poisoned_checkpoint(files, tmp_path):
  directory = tmp_path / "run"
  with pytest.raises(FloatingPointError, match="last good checkpoint is"):
    train(files, directory, base_learning_rate=1e30, checkpoint_steps=1)
  latest = tf.train.latest_checkpoint(str(directory))
  if latest:
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
      if name.startswith("model/"):
        assert np.all(np.abs(reader.get_tensor(name)) < 1e10), name
  # A sane learning rate carries on from the last good checkpoint (or from scratch).
  assert train(files, directory, max_steps=5)["step"] == 5


# --- flags and data ------------------------------------------------------------------------


@pytest.mark.parametrize("field, flag", [("checkpoint_steps", "--export_model_steps"),
                                         ("log_every", "--log_every_steps"),
                                         ("max_steps", "--max_steps"),
                                         ("batch_size", "--batch_size")])
def test_zero_flag_values_are_one_line_errors(field, flag, tmp_path):
  with pytest.raises(train_lib.TrainError, match=f"{flag} must be at least 1"):
    train_lib.TrainConfig(train_dir=str(tmp_path), **{field: 0})


def test_bad_training_data_is_one_line_naming_the_file(files, tmp_path):
  bad = run_config.RunConfig(model="LogisticModel", feature_names=("mean_rgb", "mean_audio"),
                             feature_sizes=(8, 5), frame_features=False, num_classes=5)
  with pytest.raises(readers.DataError, match=r"train\d\.tfrecord"):
    train(files, tmp_path / "run", run=bad, max_steps=2)


def test_steps_per_execution_changes_nothing(files, tmp_path, uninterrupted):
  many = train(files, tmp_path / "many", steps_per_execution=100)  # log_every is 1000 here
  assert many["step"] == uninterrupted["step"]
  assert_same_weights(weights(many), weights(uninterrupted))


def test_xla_compiled_steps_train_like_plain_ones(files, tmp_path):
  plain = train(files, tmp_path / "plain", max_steps=6)
  compiled = train(files, tmp_path / "xla", max_steps=6, jit_compile=True)
  for a, b in zip(weights(plain), weights(compiled), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_a_run_written_before_the_seam_still_loads_and_resumes(frame_data, tmp_path, caplog):
  """model_flags.json and checkpoints of the previous code (tests/data/legacy_parallel_run)."""
  import shutil
  directory = tmp_path / "legacy"
  shutil.copytree(REPO / "tests" / "data" / "legacy_parallel_run", directory)
  run = run_config.load(str(directory))
  assert run.distillation.parallel and run.distillation.share_head
  assert run.distillation.weights.rep_weight == 0.01
  _, student, _ = building.load_model(str(directory))
  teacher = building.load_parallel_teacher(run, tf.train.latest_checkpoint(str(directory)))
  for mine, theirs in zip(student.classifier.weights, teacher.classifier.weights, strict=True):
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())  # the shared head
  files = readers.list_files(str(frame_data / "train*.tfrecord"))
  result = train(files, directory, run=run, max_steps=3, batch_size=8)
  assert result["step"] == 3
  assert "holds no data_seed" in caplog.text


def test_mixed_float16_trains_with_a_loss_scale_and_resumes_exactly(files, tmp_path,
                                                                     uninterrupted):
  try:
    whole = train(files, tmp_path / "whole", mixed_precision="mixed_float16",
                  clip_gradient_norm=1.0)
    assert whole["step"] == 23
    learned = weights(whole)
    assert all(np.isfinite(w).all() for w in learned)
    # It learns what the float32 run learns, to float16's precision.
    for x, y in zip(learned, weights(uninterrupted), strict=True):
      np.testing.assert_allclose(x, y, atol=0.05)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "whole")))
    assert any("scale" in name for name in reader.get_variable_to_shape_map())
    train(files, tmp_path / "stopped", mixed_precision="mixed_float16", clip_gradient_norm=1.0,
          max_steps=8)
    resumed = train(files, tmp_path / "stopped", mixed_precision="mixed_float16",
                    clip_gradient_norm=1.0)
    assert_same_weights(weights(resumed), learned)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  with pytest.raises(train_lib.TrainError, match="unknown --mixed_precision 'float8'"):
    train_lib.TrainConfig(train_dir=str(tmp_path / "bad"), mixed_precision="float8")
