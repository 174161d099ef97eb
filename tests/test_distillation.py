"""Teacher -> student: matching losses, the teacher untouched by student losses, and the
serial / parallel / baseline / fine-tuning regimes through the command lines."""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_cli as run
from conftest import sequence_example, write_records
from yt8m import distill, models, readers


def test_losses_match_numpy():
  rng = np.random.default_rng(0)
  e_t, e_s = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
  np.testing.assert_allclose(distill.representation_loss(e_t, e_s),
                             ((e_t - e_s) ** 2).sum(1), rtol=1e-6)
  p_t, p_s = rng.random((3, 5)), rng.random((3, 5))
  np.testing.assert_allclose(distill.prediction_loss(p_t, p_s, "mse"),
                             ((p_t - p_s) ** 2).sum(1), rtol=1e-5)
  kl = p_t * np.log(p_t / p_s) + (1 - p_t) * np.log((1 - p_t) / (1 - p_s))
  np.testing.assert_allclose(distill.prediction_loss(p_t, p_s, "kl"), kl.sum(1), rtol=1e-4)
  assert float(distill.prediction_loss(p_t, p_t, "kl")[0]) == pytest.approx(0, abs=1e-5)
  with pytest.raises(ValueError, match="differ in size"):
    distill.representation_loss(tf.zeros([1, 4]), tf.zeros([1, 5]))


def test_intermediate_loss_aligns_blocks_in_time():
  # Teacher: 20 blocks of 15 frames, block t encoded as the constant t.
  teacher = np.tile(np.arange(20, dtype=np.float32)[None, :, None], (1, 1, 2))
  # Student: k = 10 uniform frames of a 300-frame video, blocks of 5 frames:
  # frames 0..120 (mean 60 -> teacher block 4) and 150..270 (mean 210 -> block 14).
  frame_indices = np.arange(0, 300, 30, dtype=np.int32)[None]
  student = np.zeros((1, 2, 2), np.float32)
  loss = distill.intermediate_loss(teacher, student, np.ones((1, 2), np.float32), frame_indices,
                                   student_block_frames=5, teacher_block_frames=15)
  assert float(loss[0]) == pytest.approx((2 * 4**2 + 2 * 14**2) / 2)
  # A padded student block (no real frame) is ignored.
  loss = distill.intermediate_loss(teacher, student, np.array([[1, 0]], np.float32),
                                   frame_indices, 5, 15)
  assert float(loss[0]) == pytest.approx(2 * 4**2)


def test_student_terms_never_reach_the_teacher():
  teacher = models.build_model("LstmModel", 5, {"lstm_cells": 4})
  student = models.build_model("LstmModel", 5, {"lstm_cells": 4})
  frames = tf.random.normal([2, 8, 6])
  with tf.GradientTape(persistent=True) as tape:
    t_out = teacher(frames, tf.constant([8, 3]))
    s_out = student(frames[:, :4], tf.constant([4, 3]))
    terms = distill.student_terms(t_out, s_out, tf.zeros([2, 4], tf.int32),
                                  distill.LossWeights(rep_weight=1, pred_weight=1))
    assert set(terms) == {"rep_loss", "pred_loss"}
    total = tf.add_n([tf.reduce_sum(v) for _, v in terms.values()])
  assert all(g is None for g in tape.gradient(total, teacher.trainable_variables))
  assert all(g is not None for g in tape.gradient(total, student.trainable_variables))


def test_reader_hands_the_teacher_every_frame_and_the_student_k(tmp_path):
  path = write_records(tmp_path / "a.tfrecord", [sequence_example("v", num_frames=40),
                                                 sequence_example("w", num_frames=3)])
  config = readers.ReaderConfig(student_frames=6, teacher_frames=True)
  batch = next(readers.iterate_numpy([path], config, 2))
  assert batch["teacher_features"].shape == (2, 300, 1152)
  assert batch["teacher_num_frames"].tolist() == [40, 3]
  assert batch["features"].shape == (2, 6, 1152) and batch["num_frames"].tolist() == [6, 3]
  for row in range(2):
    n = batch["num_frames"][row]
    idx = batch["frame_indices"][row, :n]
    np.testing.assert_array_equal(batch["features"][row, :n],
                                  batch["teacher_features"][row, idx])



@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, frame_data):
  folder = tmp_path_factory.mktemp("teacher") / "run"
  run("train.py", *LSTM, f"--train_data_pattern={frame_data}/train*.tfrecord",
      f"--train_dir={folder}", "--max_steps=4")
  return folder


LSTM = ["--frame_features", "--model=LstmModel", "--lstm_cells=8", "--num_classes=10",
        "--feature_names=rgb,audio", "--feature_sizes=1024,128", "--batch_size=8"]


@pytest.mark.slow
def test_serial_student_stands_alone(tmp_path, frame_data, teacher_dir):
  student = tmp_path / "student"
  proc = run("train.py", *LSTM, f"--train_data_pattern={frame_data}/train*.tfrecord",
             f"--train_dir={student}", "--max_steps=3", "--student_frames=4",
             f"--teacher_dir={teacher_dir}")
  assert "Teacher (frozen)" in proc.stderr and "rep_loss:" in proc.stderr
  saved = json.loads((student / "model_flags.json").read_text())
  assert saved["student_frames"] == 4 and saved["distillation"]["mode"] == "serial"
  keys = [k for k, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(student)))]
  assert not any(k.startswith("teacher") for k in keys)  # the teacher stays in its own dir
  # Eval and inference on the student read only k frames; the export selects them itself.
  run("eval.py", f"--train_dir={student}", f"--eval_data_pattern={frame_data}/train0.tfrecord",
      "--run_once")
  run("export_model.py", f"--train_dir={student}", f"--export_dir={tmp_path}/export")
  from yt8m import eval_lib
  run_cfg, model, _ = eval_lib.load_model(str(student))
  files = [str(frame_data / "train0.tfrecord")]
  k_frames = next(readers.iterate_numpy(files, run_cfg.reader_config(), 4))
  assert k_frames["features"].shape[1] == 4
  expected = model(k_frames["features"], k_frames["num_frames"])["predictions"].numpy()
  full = next(readers.iterate_numpy(files, run_cfg.teacher.reader_config(), 4))
  served = tf.saved_model.load(str(tmp_path / "export")).signatures["serve_frames"](
      rgb_and_audio=tf.constant(full["features"]), num_frames=tf.constant(full["num_frames"]))
  np.testing.assert_allclose(served["predictions"].numpy(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_parallel_run_evaluates_teacher_and_student(tmp_path, frame_data):
  student = tmp_path / "parallel"
  run("train.py", *LSTM, f"--train_data_pattern={frame_data}/train*.tfrecord",
      f"--train_dir={student}", "--max_steps=3", "--student_frames=4",
      "--distillation=parallel", "--pred_loss=kl")
  proc = run("eval.py", f"--train_dir={student}",
             f"--eval_data_pattern={frame_data}/train1.tfrecord", "--run_once",
             f"--metrics_json={tmp_path}/m.json")
  assert "teacher: Hit@1" in proc.stdout and "student: Hit@1" in proc.stdout
  metrics = json.loads((tmp_path / "m.json").read_text())
  assert metrics["num_videos"] == metrics["teacher"]["num_videos"] == 12


@pytest.mark.slow
def test_baseline_and_fine_tuning(tmp_path, frame_data, teacher_dir):
  base = tmp_path / "k4"
  run("train.py", *LSTM, f"--train_data_pattern={frame_data}/train*.tfrecord",
      f"--train_dir={base}", "--max_steps=2", "--student_frames=4", "--frame_selection=random")
  assert json.loads((base / "model_flags.json").read_text())["distillation"] is None
  tuned = tmp_path / "tuned"
  proc = run("train.py", *LSTM, f"--train_data_pattern={frame_data}/train*.tfrecord",
             f"--train_dir={tuned}", "--max_steps=4", "--student_frames=4",
             "--frame_selection=random", f"--init_from={base}", "--base_learning_rate=1e-12")
  assert "Starting from the model weights" in proc.stderr and "training step 1 |" in proc.stderr
  # A learning rate of 1e-12 leaves the weights where --init_from put them: the base's.
  from yt8m import building
  start = building.load_model(str(base))[1].weights
  end = building.load_model(str(tuned))[1].weights
  assert start
  for a, b in zip(start, end, strict=True):
    np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6, err_msg=a.path)


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    (["--distillation=serial", "--student_frames=4"], "needs --teacher_dir"),
    (["--distillation=parallel"], "needs --student_frames"),
    (["--teacher_dir=TEACHER"], "needs --student_frames"),
    (["--uniform_jitter"], "--uniform_jitter needs --student_frames"),
    (["--uniform_jitter", "--student_frames=4", "--frame_selection=random"],
     "--uniform_jitter jitters --frame_selection=uniform, not random"),
])
def test_bad_student_flags(tmp_path, frame_data, teacher_dir, args, message):
  args = [a.replace("TEACHER", str(teacher_dir)) for a in args]
  proc = run("train.py", *LSTM, f"--train_data_pattern={frame_data}/train*.tfrecord",
             f"--train_dir={tmp_path}/x", "--max_steps=1", *args, check=False)
  assert proc.returncode != 0 and message in proc.stderr.splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_shared_teacher_head_lets_rep_alone_train_the_student(tmp_path, frame_data, teacher_dir,
                                                             mode):
  student = tmp_path / mode
  teacher_flag = [f"--teacher_dir={teacher_dir}"] if mode == "serial" else [
      "--distillation=parallel"]
  run("train.py", *LSTM, f"--train_data_pattern={frame_data}/train*.tfrecord",
      f"--train_dir={student}", "--max_steps=3", "--student_frames=4", *teacher_flag,
      "--share_teacher_head", "--ce_weight=0", "--pred_weight=0", "--rep_weight=1")
  # Checkpoints are read through the object graph (TF names a variable by its shortest
  # path, which may be the optimizer's), so compare restored models, not key names.
  from yt8m import eval_lib
  run_cfg, model, path = eval_lib.load_model(str(student))
  teacher = (eval_lib.load_parallel_teacher(run_cfg, path) if mode == "parallel"
             else eval_lib.load_model(str(teacher_dir))[1])
  for mine, theirs in zip(model.classifier.weights, teacher.classifier.weights, strict=True):
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.slow
def test_hrnn_student_blocks_and_intermediate_matching(tmp_path, frame_data):
  student = tmp_path / "hrnn"
  proc = run("train.py", "--frame_features", "--model=HierarchicalLstmModel", "--lstm_cells=4",
             "--num_classes=10", "--feature_names=rgb,audio", "--feature_sizes=1024,128",
             "--batch_size=8", f"--train_data_pattern={frame_data}/train*.tfrecord",
             f"--train_dir={student}", "--max_steps=2", "--student_frames=10",
             "--student_hrnn_block_frames=2", "--distillation=parallel",
             "--intermediate_weight=1", "--log_every_steps=1")
  assert "intermediate_loss:" in proc.stderr
  saved = json.loads((student / "model_flags.json").read_text())
  assert saved["model_hparams"]["hrnn_block_frames"] == 2  # the student: 5 blocks of 2
  assert saved["distillation"]["teacher"]["model_hparams"]["hrnn_block_frames"] == 15


@pytest.mark.slow
def test_cached_frozen_teacher_gives_the_same_losses(tmp_path, frame_data, teacher_dir):
  lines = {}
  for flag in ("--cache_teacher_outputs", "--nocache_teacher_outputs"):
    proc = run("train.py", *LSTM, f"--train_data_pattern={frame_data}/train*.tfrecord",
               f"--train_dir={tmp_path}/{flag.strip('-')}", "--max_steps=3",
               "--student_frames=4", f"--teacher_dir={teacher_dir}", "--seed=5",
               "--log_every_steps=1", flag)
    # "training step N | Loss: x Examples/sec: y | terms | progress": the loss and the terms.
    lines[flag] = [line.split("| ", 1)[1].split(" Examples/sec")[0] + line.split(
        "Examples/sec: ")[1].split(" | ")[1] for line in proc.stderr.splitlines()
                   if "training step" in line]
    cached_lines = [line for line in proc.stderr.splitlines()
                    if "Cached the frozen teacher" in line]
    assert bool(cached_lines) == (flag == "--cache_teacher_outputs"), cached_lines
  assert len(lines["--cache_teacher_outputs"]) == 3
  assert lines["--cache_teacher_outputs"] == lines["--nocache_teacher_outputs"]
