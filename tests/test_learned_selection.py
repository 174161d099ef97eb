"""--frame_selection=learned: the stretch grid, what the selector feeds its student, its
gradients, and the learned student through train / eval / inference / export, serial and
parallel, and under a 2-device MirroredStrategy."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, padded_videos
from conftest import run_cli as run
from yt8m import distill, models, readers
from yt8m.models import layers, selector

LSTM = ["--frame_features", "--model=LstmModel", "--lstm_cells=8", "--num_classes=10",
        "--feature_names=rgb,audio", "--feature_sizes=1024,128", "--batch_size=8"]


def test_stretches_partition_the_true_length():
  mask = selector.stretch_mask(tf.constant([10, 2, 300]), 3, 300).numpy()
  assert [np.flatnonzero(row).tolist() for row in mask[0]] == [[0, 1, 2], [3, 4, 5],
                                                               [6, 7, 8, 9]]
  assert [np.flatnonzero(row).tolist() for row in mask[1]] == [[0], [1], []]  # n < k
  # Every frame of the video in exactly one stretch; none of the padding.
  np.testing.assert_array_equal(mask[2].sum(axis=0), np.ones(300))
  np.testing.assert_array_equal(mask[0].sum(axis=0), [1] * 10 + [0] * 290)
  # Stretch starts are the uniform strategy's frames.
  starts = [np.flatnonzero(row)[0] for row in mask[2]]
  assert starts == [0, 100, 200]


def selecting_lstm(k=4, estimator="straight_through", seed=0):
  tf.keras.utils.set_random_seed(seed)
  student = models.build_model("LstmModel", 5, {"lstm_cells": 8, "lstm_layers": 1})
  model = selector.LearnedFrameSelection(
      student, k, selector.SelectorHparams(selector_hidden=4, selector_estimator=estimator))
  return model


def test_eval_picks_the_best_scored_frame_of_each_stretch_and_feeds_exactly_those():
  features, num_frames = padded_videos([40, 3, 17], 50, 1152, seed=1)
  model = selecting_lstm(k=4)
  out = model(features, num_frames, training=False)
  scores = out["selection_scores"].numpy()
  picked = out["frame_indices"].numpy()
  mask = selector.stretch_mask(tf.constant(num_frames), 4, 50).numpy()
  for b in range(3):
    for j in range(4):
      if mask[b, j].any():
        members = np.flatnonzero(mask[b, j])
        assert picked[b, j] == members[np.argmax(scores[b, members])]
      else:
        assert picked[b, j] == -1
  assert picked[1].tolist() == [0, 1, 2, -1]  # a 3-frame video gives its 3 frames
  # The student sees exactly the picked frames, in time order, right-padded.
  frames = layers.l2_normalize_frames(tf.constant(features)).numpy()
  gathered = np.zeros((3, 4, 1152), np.float32)
  counts = (picked >= 0).sum(axis=1)
  for b in range(3):
    gathered[b, :counts[b]] = frames[b, picked[b, :counts[b]]]
    assert np.all(np.diff(picked[b, :counts[b]]) > 0)
  direct = model.student(gathered, counts, training=False)["predictions"].numpy()
  np.testing.assert_allclose(out["predictions"].numpy(), direct, rtol=1e-5, atol=1e-7)
  again = model(features, num_frames, training=False)["frame_indices"].numpy()
  np.testing.assert_array_equal(again, picked)  # deterministic at evaluation


@pytest.mark.parametrize("estimator", selector.ESTIMATORS)
def test_training_draws_vary_and_the_scorer_gets_a_gradient(estimator):
  features, num_frames = padded_videos([60, 45], 60, 1152, seed=2)
  labels = tf.constant(np.eye(5, dtype=np.float32)[[1, 3]])
  model = selecting_lstm(k=5, estimator=estimator)
  draws = {tuple(model(features, num_frames, training=True)["frame_indices"].numpy().ravel())
           for _ in range(5)}
  assert len(draws) > 1  # a fresh draw within each stretch every step
  with tf.GradientTape() as tape:
    out = model(features, num_frames, training=True)
    loss = tf.reduce_mean(tf.keras.losses.binary_crossentropy(labels, out["predictions"]))
    if estimator == "reinforce":
      assert out["selection_log_prob"].shape == (2,)
      loss += tf.reduce_mean(out["selection_log_prob"] * tf.constant([1.0, -1.0]))
    else:
      assert "selection_log_prob" not in out
  scorer = model.scorer_hidden.trainable_variables + model.scorer_out.trainable_variables
  grads = tape.gradient(loss, scorer)
  assert all(g is not None for g in grads)
  assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_frame_choice_loss_is_the_cross_entropy_to_the_teachers_attention_per_stretch():
  stretches = selector.stretch_mask(tf.constant([4, 2]), 2, 4)  # video 1: [0, 1] [2, 3]
  teacher = tf.constant([[0.1, 0.3, 0.0, 0.6], [0.0, 0.0, 0.0, 0.0]])  # video 2: no attention
  scores = tf.constant([[0.5, -1.0, 2.0, 0.0], [1.0, 2.0, 0.0, 0.0]])
  log_p = tf.nn.log_softmax(tf.where(stretches, scores[:, None, :], -1e9), axis=-1)
  loss = distill.frame_choice_loss(teacher, log_p, stretches).numpy()

  def cross_entropy(q, s):
    q = np.asarray(q) / np.sum(q)
    return -np.sum(q * (np.asarray(s) - np.log(np.sum(np.exp(s)))))

  expected = (cross_entropy([0.1, 0.3], [0.5, -1.0]) + cross_entropy([0.0, 0.6], [2.0, 0.0])) / 2
  np.testing.assert_allclose(loss, [expected, 0.0], rtol=1e-5)  # no attention: no target


def test_the_scorer_learns_where_the_teacher_looks():
  """With only L_frames, the argmax picks move to the frames the teacher attends to."""
  features, num_frames = padded_videos([40, 40, 40, 40], 40, 1152, seed=3)
  hot = np.zeros((4, 40), np.float32)
  loud = np.array([3, 17, 25, 38])  # one attended frame per stretch of 10 (k = 4)
  hot[:, loud] = 1.0
  features = features + hot[..., None] * np.linspace(-1, 1, 1152, dtype=np.float32)
  model = selecting_lstm(k=4)
  optimizer = tf.keras.optimizers.Adam(0.05)
  teacher_weights = tf.constant(hot / hot.sum(1, keepdims=True))
  before = model(features, num_frames, training=False)["frame_indices"].numpy()
  for _ in range(60):
    with tf.GradientTape() as tape:
      out = model(features, num_frames, training=True)
      loss = tf.reduce_mean(distill.frame_choice_loss(teacher_weights, out["choice_log_probs"],
                                                      out["stretches"]))
    scorer = model.scorer_hidden.trainable_variables + model.scorer_out.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, scorer), scorer, strict=True))
  after = model(features, num_frames, training=False)["frame_indices"].numpy()
  assert not (before == loud).all()
  np.testing.assert_array_equal(after, np.tile(loud, (4, 1)))


@pytest.mark.slow
def test_learned_student_through_the_command_lines(tmp_path, frame_data):
  teacher = tmp_path / "teacher"
  data = f"--train_data_pattern={frame_data}/train*.tfrecord"
  run("train.py", *LSTM, data, f"--train_dir={teacher}", "--max_steps=2")
  student = tmp_path / "learned"
  proc = run("train.py", *LSTM, data, f"--train_dir={student}", "--max_steps=3",
             "--student_frames=4", "--frame_selection=learned", f"--teacher_dir={teacher}",
             "--selector_hidden=4", "--rep_weight=0.01")
  assert "rep_loss:" in proc.stderr
  saved = json.loads((student / "model_flags.json").read_text())
  assert saved["frame_selection"] == "learned" and saved["selector_hparams"] == {
      "selector_hidden": 4, "selector_temperature": 1.0,
      "selector_estimator": "straight_through", "selector_candidates": 0,
      "selector_features": "", "selector_shortlist": 0}
  # Resuming continues from the checkpoint.
  proc = run("train.py", *LSTM, data, f"--train_dir={student}", "--max_steps=4",
             "--student_frames=4", "--frame_selection=learned", f"--teacher_dir={teacher}",
             "--selector_hidden=4", "--rep_weight=0.01")
  assert "Restoring from" in proc.stderr and "Done training at step 4" in proc.stderr
  run("eval.py", f"--train_dir={student}", f"--eval_data_pattern={frame_data}/train0.tfrecord",
      "--run_once", f"--metrics_json={tmp_path}/m.json")
  assert json.loads((tmp_path / "m.json").read_text())["num_videos"] == 12
  run("inference.py", f"--train_dir={student}",
      f"--input_data_pattern={frame_data}/train0.tfrecord", f"--output_file={tmp_path}/p.csv")
  assert len((tmp_path / "p.csv").read_text().splitlines()) == 13
  run("export_model.py", f"--train_dir={student}", f"--export_dir={tmp_path}/export")
  from yt8m import eval_lib
  run_cfg, model, _ = eval_lib.load_model(str(student))
  full = next(readers.iterate_numpy([str(frame_data / "train0.tfrecord")],
                                    run_cfg.reader_config(), 4))
  assert full["features"].shape[1] == 300  # the selector looks at every frame
  expected = model(full["features"], full["num_frames"])["predictions"].numpy()
  served = tf.saved_model.load(str(tmp_path / "export")).signatures["serve_frames"](
      rgb_and_audio=tf.constant(full["features"]), num_frames=tf.constant(full["num_frames"]))
  np.testing.assert_allclose(served["predictions"].numpy(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_learned_parallel_reinforce_and_bad_flags(tmp_path, frame_data):
  data = f"--train_data_pattern={frame_data}/train*.tfrecord"
  proc = run("train.py", *LSTM, data, f"--train_dir={tmp_path}/p", "--max_steps=2",
             "--student_frames=3", "--frame_selection=learned", "--distillation=parallel",
             "--selector_estimator=reinforce")
  assert "selector_loss:" in proc.stderr and "teacher/label_loss:" in proc.stderr
  from yt8m import eval_lib  # the checkpoint holds the selecting student and the teacher
  run_cfg, model, path = eval_lib.load_model(f"{tmp_path}/p")
  assert isinstance(model, selector.LearnedFrameSelection)
  eval_lib.load_parallel_teacher(run_cfg, path)
  bad = run("train.py", *LSTM, data, f"--train_dir={tmp_path}/bad", "--max_steps=1",
            "--frame_selection=learned", check=False)
  assert bad.returncode != 0 and "--frame_selection=learned needs --student_frames" in bad.stderr
  bad = run("train.py", *LSTM, data, f"--train_dir={tmp_path}/bad", "--max_steps=1",
            "--frame_selection=learned", "--student_frames=3", "--selector_shortlist=2",
            check=False)
  assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].endswith(
      "--selector_shortlist needs --selector_features to name a part of the frame (the first "
      "stage's), e.g. audio")


@pytest.mark.slow
def test_learned_selection_under_mirrored_strategy(tmp_path, frame_data):
  script = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(REPO)!r})
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import dataclasses
    from yt8m import distill, readers, run_config, train_lib
    run = run_config.RunConfig(model="LstmModel", feature_names=("rgb", "audio"),
        feature_sizes=(1024, 128), frame_features=True, num_classes=10, student_frames=3,
        frame_selection="learned", model_hparams={{"lstm_cells": 8}},
        selector_hparams={{"selector_hidden": 4}})
    weights = dataclasses.asdict(distill.LossWeights(rep_weight=0.01))
    run = run_config.with_teacher(run, "parallel", weights)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = train_lib.TrainConfig(train_dir={str(tmp_path / "m")!r}, batch_size=4,
                                   max_steps=3, seed=1)
    result = train_lib.train(run, readers.list_files({str(frame_data / "train*.tfrecord")!r}),
                             config, strategy)
    print("replicas", strategy.num_replicas_in_sync, "step", result["step"],
          "loss", result["label_loss"])
  """)
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  words = proc.stdout.split()
  assert words[words.index("replicas") + 1] == "2" and words[words.index("step") + 1] == "3"
  assert np.isfinite(float(words[words.index("loss") + 1]))


def test_init_from_a_plain_run_starts_the_selections_student(tmp_path):
  """--init_from a teacher's checkpoint: a learned selection's student takes its weights and
  the scorer starts fresh; a learned selection's own checkpoint restores the whole model."""
  from yt8m import building
  features, num_frames = padded_videos([20, 9], 20, 1152, seed=4)
  # An attention teacher: its own layers are named scorer_* too, unlike a selection's.
  hparams = {"attention_scorer_size": 4, "attention_heads": 2, "attention_hidden_size": 8}
  tf.keras.utils.set_random_seed(1)
  plain = models.build_model("AttentionPoolingModel", 5, hparams)
  plain(features, num_frames)
  plain_path = tf.train.Checkpoint(model=plain).save(str(tmp_path / "plain"))
  tf.keras.utils.set_random_seed(2)
  selecting = selector.LearnedFrameSelection(
      models.build_model("AttentionPoolingModel", 5, hparams), 4,
      selector.SelectorHparams(selector_hidden=4))
  selecting(features, num_frames)
  assert building.init_target(selecting, plain_path) is selecting.student
  building.restore(plain_path, model=building.init_target(selecting, plain_path))
  for mine, theirs in zip(selecting.student.weights, plain.weights, strict=True):
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
  whole_path = tf.train.Checkpoint(model=selecting).save(str(tmp_path / "whole"))
  assert building.init_target(selecting, whole_path) is selecting
  assert building.init_target(plain, plain_path) is plain


def test_a_candidate_grid_reads_c_times_k_frames_and_reports_source_frames(tmp_path, frame_data,
                                                                           caplog):
  """--selector_candidates=c: the reader decodes a uniform grid of c * k frames, the selector
  picks among them, and the distillation terms see the picks' source frames."""
  import dataclasses

  from yt8m import eval_lib, frame_selection, run_config, train_lib
  assert selector.source_frames(tf.constant([[0, 5, 10, 15, -1, -1]]),
                                tf.constant([[0, 2, -1]])).numpy().tolist() == [[0, 10, -1]]
  run = run_config.RunConfig(
      model="AttentionPoolingModel", feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
      frame_features=True, num_classes=10, student_frames=3, frame_selection="learned",
      model_hparams={"attention_scorer_size": 4, "attention_heads": 2,
                     "attention_hidden_size": 8},
      selector_hparams={"selector_hidden": 4, "selector_candidates": 2})
  reader = run.reader_config()
  assert (reader.student_frames, reader.frame_selection) == (6, "uniform")
  files = readers.list_files(str(frame_data / "train*.tfrecord"))
  everything = next(readers.iterate_numpy(files, dataclasses.replace(
      reader, student_frames=None), 4))
  batch = next(readers.iterate_numpy(files, reader, 4))
  assert batch["features"].shape[1] == 6
  for row, n in enumerate(everything["num_frames"]):
    grid = frame_selection.select_frames(tf.constant(n), 6, "uniform").numpy()
    assert batch["frame_indices"][row][:len(grid)].tolist() == grid.tolist()
  # Trains with L_rep and L_frames (the parallel teacher reads every frame).
  weights = dataclasses.asdict(distill.LossWeights(rep_weight=0.01, frame_weight=1.0))
  caplog.set_level("INFO")
  result = train_lib.train(run_config.with_teacher(run, "parallel", weights), files,
                           train_lib.TrainConfig(train_dir=str(tmp_path / "c"), batch_size=4,
                                                 max_steps=2, seed=1))
  assert np.isfinite(result["label_loss"])
  logged = [float(line.split("frame_loss: ")[1].split()[0]) for line in caplog.messages
            if "frame_loss: " in line]
  assert logged and all(np.isfinite(logged))
  loaded, model, _ = eval_lib.load_model(str(tmp_path / "c"))
  assert loaded.reader_config() == reader  # eval and inference read the grid too
  out = model(batch["features"], batch["num_frames"])
  source = selector.source_frames(batch["frame_indices"], out["frame_indices"]).numpy()
  for row in range(4):
    picks = source[row][source[row] >= 0]
    assert set(picks) <= set(batch["frame_indices"][row]) and len(picks) == min(
        3, batch["num_frames"][row])


def test_an_audio_scorer_reads_audio_and_inference_dequantizes_only_it_and_the_picks(
    tmp_path, monkeypatch):
  """--selector_features=audio: the scorer sees the 128 audio columns only; with uint8 frames
  (the reader's hand-off) inference dequantizes those columns of every frame and the picked
  rows only, and gives the float path's outputs bit for bit (audio shorter or longer than rgb,
  and > 300 frames, included)."""
  from conftest import frames, sequence_example, write_records
  from yt8m import building, eval_lib, run_config

  records = [sequence_example("a", labels=(1,), num_frames=6),
             sequence_example("b", labels=(2,), num_frames=9, audio=frames(3, 128)),
             sequence_example("c", labels=(3,), num_frames=4, audio=frames(11, 128)),
             sequence_example("d", labels=(4,), num_frames=320)]
  path = write_records(tmp_path / "q.tfrecord", records)
  tf.keras.utils.set_random_seed(3)
  run = run_config.RunConfig(
      model="LstmModel", num_classes=10, frame_features=True, feature_names=("rgb", "audio"),
      feature_sizes=(1024, 128), student_frames=4, frame_selection="learned",
      model_hparams={"lstm_cells": 8, "lstm_layers": 1},
      selector_hparams={"selector_hidden": 4, "selector_features": "audio"})
  model = building.build_model(run)
  assert model.scorer_hidden.kernel.shape[0] == 128
  want_batches = list(readers.build_dataset([path], run.reader_config(), 2))
  got_batches = list(readers.build_dataset([path], run.reader_config(quantized_frames=True), 2))
  dequantized = []
  dequantize_frames = readers.dequantize_frames
  monkeypatch.setattr(readers, "dequantize_frames", lambda q, present, sizes: (
      dequantized.append(tuple(q.shape[1:])), dequantize_frames(q, present, sizes))[1])
  predict = eval_lib.make_predict_fn(model, run.feature_sizes)
  for q, f in zip(got_batches, want_batches, strict=True):
    assert q["features"].dtype == tf.uint8
    got, want = eval_lib.inference_outputs(model, q, run.feature_sizes), model(
        f["features"], f["num_frames"], training=False)
    for key in ("predictions", "frame_indices", "selection_scores"):
      assert got[key].numpy().tobytes() == want[key].numpy().tobytes(), key
    assert predict(q).numpy().tobytes() == want["predictions"].numpy().tobytes()
    # Every frame's audio, then the 4 picked rows: never every frame's 1,152 columns.
    assert set(dequantized) <= {(None, 128), (4, 1152)} | {(t, 128) for t in (9, 11, 300)}
    assert (4, 1152) in dequantized
    dequantized.clear()
  # The scores do not depend on the rgb columns.
  features, num_frames = padded_videos([40, 17], 50, 1152, seed=2)
  changed = features.copy()
  changed[..., :1024] = 0.5
  for values in (features, changed):
    dequantized.append(model(values, num_frames, training=False)["selection_scores"].numpy())
  np.testing.assert_array_equal(dequantized[-2], dequantized[-1])
  with pytest.raises(ValueError, match="--selector_features: 'video' is not a frame feature"):
    run_config.RunConfig(model="LstmModel", num_classes=10, frame_features=True,
                         feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                         student_frames=4, frame_selection="learned",
                         selector_hparams={"selector_features": "video"})


def test_a_shortlist_picks_by_both_scorers_among_the_first_stages_best_frames(tmp_path,
                                                                                monkeypatch):
  """--selector_shortlist=c: the audio scorer keeps each stretch's c best frames, the second
  scorer reads every feature of those k * c rows only, and the pick maximises the sum of both
  scores. At init (second scorer 0) it is the one-stage pick; inference from uint8 frames
  dequantizes every frame's audio and the k * c shortlisted rows, bit for bit as the float
  path; training reaches both scorers."""
  from conftest import sequence_example, write_records
  from yt8m import building, eval_lib, run_config

  def shortlisting(**extra):
    return run_config.RunConfig(
        model="LstmModel", num_classes=10, frame_features=True, feature_names=("rgb", "audio"),
        feature_sizes=(1024, 128), student_frames=4, frame_selection="learned",
        model_hparams={"lstm_cells": 8, "lstm_layers": 1},
        selector_hparams={"selector_hidden": 4, "selector_features": "audio",
                          "selector_shortlist": 3, **extra})

  tf.keras.utils.set_random_seed(5)
  run = shortlisting()
  model = building.build_model(run)
  assert model.scorer2_hidden.kernel.shape[0] == 1152
  features, num_frames = padded_videos([40, 3, 17], 50, 1152, seed=4)
  mask = selector.stretch_mask(tf.constant(num_frames), 4, 50).numpy()

  def check_picks(out, second):
    scores, picked = out["selection_scores"].numpy(), out["frame_indices"].numpy()
    for b in range(3):
      for j in range(4):
        members = np.flatnonzero(mask[b, j])
        if not len(members):
          assert picked[b, j] == -1
          continue
        best = members[np.argsort(-scores[b, members], kind="stable")[:3]]
        assert picked[b, j] == best[np.argmax(scores[b, best] + second[b, best])]

  check_picks(model(features, num_frames, training=False), np.zeros((3, 50)))  # stage 1's
  model.scorer2_out.kernel.assign(tf.random.normal(model.scorer2_out.kernel.shape, seed=1))
  frames = layers.l2_normalize_frames(tf.constant(features))
  second = model.scorer2_out(model.scorer2_hidden(frames))[..., 0].numpy()
  out = model(features, num_frames, training=False)
  check_picks(out, second)
  assert (out["frame_indices"].numpy() != model(features, num_frames, training=False)[
      "frame_indices"].numpy()).sum() == 0  # deterministic

  records = [sequence_example(v, labels=(1,), num_frames=n) for v, n in
             (("a", 6), ("b", 25), ("c", 2), ("d", 320))]
  path = write_records(tmp_path / "q.tfrecord", records)
  quantized = list(readers.build_dataset([path], run.reader_config(quantized_frames=True), 2))
  floats = list(readers.build_dataset([path], run.reader_config(), 2))
  dequantized = []
  dequantize_frames = readers.dequantize_frames
  monkeypatch.setattr(readers, "dequantize_frames", lambda q, present, sizes: (
      dequantized.append(tuple(q.shape[1:])), dequantize_frames(q, present, sizes))[1])
  for q, f in zip(quantized, floats, strict=True):
    got = eval_lib.inference_outputs(model, q, run.feature_sizes)
    want = model(f["features"], f["num_frames"], training=False)
    for key in ("predictions", "frame_indices"):
      assert got[key].numpy().tobytes() == want[key].numpy().tobytes(), key
    assert {shape[-1] for shape in dequantized} == {128, 1152}
    assert all(shape == (12, 1152) for shape in dequantized if shape[-1] == 1152)
    dequantized.clear()

  labels = tf.constant(np.eye(10, dtype=np.float32)[[1, 3, 5]])
  with tf.GradientTape() as tape:
    out = model(features, num_frames, training=True)
    loss = tf.reduce_mean(tf.keras.losses.binary_crossentropy(labels, out["predictions"]))
  both = [model.scorer_hidden.kernel, model.scorer2_hidden.kernel, model.scorer2_out.kernel]
  assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in tape.gradient(loss, both))

  with pytest.raises(ValueError, match="--selector_shortlist needs --selector_features"):
    shortlisting(selector_features="")
  with pytest.raises(ValueError, match="needs --selector_estimator=straight_through"):
    shortlisting(selector_estimator="reinforce")
