"""The study command: validation split, rows and outputs, resume, and that the eval files are
read only after each run's epoch is chosen on validation."""

import dataclasses
import json
import os
import sys

import pytest
import tensorflow as tf

from conftest import REPO
from yt8m import building, eval_lib, readers, study, train_lib

ROW_KEYS = {"model", "k", "seed", "family", "gap", "map", "val_gap", "epochs", "epochs_trained",
            "seconds", "curve", "checkpoint", "num_train", "num_eval"}


def tiny_config(frame_data, output_dir, **recipe):
  files = readers.list_files(str(frame_data / "train*.tfrecord"))
  recipe = study.Recipe(**{**dict(ks=(2,), seeds=(1,), max_epochs=2, patience=1,
                                  batch_size=8), **recipe})
  # Train on one shard, score on the other.
  return study.StudyConfig(output_dir=str(output_dir), train_files=(files[0],),
                           eval_files=(files[1],), recipe=recipe, family="attention",
                           num_classes=4, feature_names=("rgb",), feature_sizes=(1024,),
                           validation_percent=25)


def test_hash_split_is_deterministic_and_disjoint(frame_data, tmp_path):
  files = readers.list_files(str(frame_data / "train*.tfrecord"))
  a = study.carve_validation(files, str(tmp_path / "a"), 25)
  b = study.carve_validation(files, str(tmp_path / "b"), 25)
  assert a["mode"] == "videos" and a["counts"] == b["counts"]
  ids = {name: [v for _, _, v in study._video_ids(a[name])] for name in ("train", "validation")}
  assert ids == {name: [v for _, _, v in study._video_ids(b[name])]
                 for name in ("train", "validation")}
  assert not set(ids["train"]) & set(ids["validation"])
  assert len(ids["train"]) + len(ids["validation"]) == 24
  assert all(study._in_validation(v, 25) for v in ids["validation"])
  # A resumed study reuses the split; other training files are refused.
  assert study.carve_validation(files, str(tmp_path / "a"), 25) == a
  with pytest.raises(study.StudyError, match="other training files"):
    study.carve_validation(files[:1], str(tmp_path / "a"), 25)


def test_many_files_split_whole_files(tmp_path):
  files = [str(tmp_path / f"train{i:02d}.tfrecord") for i in range(20)]
  split = study.carve_validation(files, str(tmp_path / "split"), 10)
  assert split["mode"] == "files" and split["validation"] == [files[0], files[10]]
  assert set(split["train"]) == set(files) - set(split["validation"])


def test_plan_has_the_teacher_first_then_every_model_at_every_k(frame_data, tmp_path):
  config = tiny_config(frame_data, tmp_path, ks=(5, 10), seeds=(1, 2))
  rows = study.planned_rows(config)
  assert len(rows) == 2 * (1 + 2 * 4)
  assert rows[0] == dict(model="teacher", k=None, seed=1, family="attention")
  assert {r["model"] for r in rows} == set(study.MODELS)
  assert study.BUDGETS["quick"].ks == (5, 10) and study.BUDGETS["quick"].seeds == (1,)
  assert study.BUDGETS["full"].ks == (5, 10, 20, 30) and study.BUDGETS["full"].seeds == (1, 2, 3)


@pytest.mark.slow
def test_study_rows_outputs_resume_and_eval_files_read_last(frame_data, tmp_path, monkeypatch):
  config = tiny_config(frame_data, tmp_path / "out")
  eval_files = set(config.eval_files)
  events = []  # ("train", files) / ("score", files), in call order
  real_train, real_evaluate = train_lib.train, eval_lib.evaluate

  def train(run, files, train_config, strategy=None):
    events.append(("train", tuple(files)))
    return real_train(run, files, train_config, strategy)

  def evaluate(model, run, files, **kwargs):
    events.append(("score", tuple(files)))
    return real_evaluate(model, run, files, **kwargs)

  monkeypatch.setattr(train_lib, "train", train)
  monkeypatch.setattr(eval_lib, "evaluate", evaluate)
  rows = study.Study(config).run()

  out = tmp_path / "out"
  assert json.loads((out / "results.json").read_text()) == rows
  assert [(r["model"], r["k"]) for r in rows] == [
      ("teacher", None), ("uniform", 2), ("random", 2), ("distilled", 2), ("learned", 2)]
  for r in rows:
    assert ROW_KEYS <= set(r)
    assert r["family"] == "attention" and r["seed"] == 1
    assert 0 <= r["gap"] <= 1 and 0 <= r["map"] <= 1 and r["num_eval"] == 12
    # The chosen epoch is the one with the best validation GAP.
    assert r["val_gap"] == max(v for _, _, v in r["curve"])
    assert r["curve"][r["epochs"] - 1][2] == r["val_gap"]
    assert r["checkpoint"].endswith(
        f"model.ckpt-{study.steps_after(r['epochs'], r['num_train'], 8)}")
  teacher = rows[0]
  assert all(t is not None for _, t, _ in teacher["curve"])
  assert all(t is None for r in rows[1:] for _, t, _ in r["curve"])
  table = (out / "results.md").read_text()
  assert "Teacher (all frames)" in table and "learned-k" in table and "k=2 GAP" in table
  assert (out / "gap_vs_k.png").stat().st_size > 0

  # The eval files: never trained on, and scored once per row, each time after that run's
  # last training call and last validation score.
  assert not any(eval_files & set(files) for kind, files in events if kind == "train")
  scored = [i for i, (kind, files) in enumerate(events) if set(files) == eval_files]
  assert len(scored) == len(rows)
  start = 0
  for i in scored:
    segment = events[start:i]
    assert segment and segment[0][0] == "train"
    last_train = max(j for j, (kind, _) in enumerate(segment) if kind == "train")
    assert any(kind == "score" for kind, _ in segment[last_train + 1:])
    assert not any(set(files) & eval_files for _, files in segment)
    start = i + 1

  # Resume: every row done, nothing is trained or scored again.
  events.clear()
  assert study.Study(config).run() == rows
  assert events == []

  # A study killed in the middle of its last run, after its epoch 1: that row is missing,
  # its state and checkpoints stop at epoch 1. The rerun trains that run's epoch 2 only,
  # resuming from the epoch-1 checkpoint.
  run_dir = out / "runs" / "learned_k2_s1"
  step_1, step_2 = (study.steps_after(e, rows[-1]["num_train"], 8) for e in (1, 2))
  for path in run_dir.glob(f"model.ckpt-{step_2}.*"):
    path.unlink()
  epoch_1 = str(run_dir / f"model.ckpt-{step_1}")
  tf.compat.v1.train.update_checkpoint_state(str(run_dir), epoch_1,
                                             all_model_checkpoint_paths=[epoch_1])
  state_path = out / "state" / "learned_k2_s1.json"
  state = json.loads(state_path.read_text())
  state.update(epoch=1, curve=state["curve"][:1], best_epoch=1,
               best_val_gap=state["curve"][0][2], best_checkpoint=epoch_1, done=False)
  state_path.write_text(json.dumps(state, indent=1) + "\n")  # as outputs.write_json
  (out / "results.json").write_text(json.dumps(rows[:-1]))
  events.clear()
  again = study.Study(config).run()
  assert [r["model"] for r in again] == [r["model"] for r in rows]
  assert [kind for kind, _ in events] == ["train", "score", "score"]
  assert again[-1]["epochs_trained"] == 2 and (run_dir / f"model.ckpt-{step_2}.index").exists()


def test_shape_checks_name_each_claim_and_where_it_failed():
  def row(model, k, gap, seed=1):
    return dict(model=model, k=k, gap=gap, seed=seed, family="attention")
  rows = [row("teacher", None, 0.80), row("uniform", 5, 0.50), row("uniform", 10, 0.60),
          row("random", 5, 0.55), row("random", 10, 0.58), row("distilled", 5, 0.52),
          row("distilled", 10, 0.59), row("learned", 5, 0.70), row("learned", 10, 0.85),
          row("learned", 10, 0.83, seed=2)]
  checks = {claim: (held, detail) for claim, held, detail in study.shape_checks(rows)}
  assert checks["attention: teacher >= every student"] == (
      False, "teacher 0.800 vs learned k=10 0.840")  # the mean over seeds
  assert checks["attention: uniform >= random"] == (False, "uniform k=5 0.500 vs random k=5 0.550")
  assert checks["attention: distilled >= uniform"] == (False, "distilled k=10 0.590 vs "
                                                       "uniform k=10 0.600")
  assert checks["attention: learned >= uniform + 0.01 at k <= 10"][0]
  assert all(checks[f"attention: {m}: GAP rises with k"][0]
             for m in ("uniform", "random", "distilled", "learned"))
  assert not any("k=30" in claim for claim in checks)  # no k = 30 in this study


@pytest.mark.parametrize("family", sorted(study.FAMILIES))
def test_every_family_builds_its_teacher_and_students(family, tmp_path):
  config = study.StudyConfig(output_dir=str(tmp_path), train_files=(), eval_files=(),
                             recipe=study.BUDGETS["quick"], family=family, num_classes=5)
  for row in study.planned_rows(config):
    if row["model"] in ("distilled", "learned"):
      continue  # these need a trained teacher (the slow test above trains them)
    run = study.build_run(config, row)
    assert run.model == study.FAMILIES[family].model and run.student_frames == row["k"]
    assert run.frame_selection == ("random" if row["model"] == "random" else "uniform")
    out = building.dummy_outputs(building.build_model(run), run)
    assert out["predictions"].shape == (1, 5)


def test_flags_make_the_config_and_bad_ones_name_the_flag(frame_data, tmp_path):
  train, other = (str(frame_data / f"train{i}.tfrecord") for i in (0, 1))
  base = ["yt8m-study", f"--train_data_pattern={train}", f"--output_dir={tmp_path}"]
  study.define_flags()  # the command line's; importing the library defines none
  try:
    study.FLAGS(base + [f"--eval_data_pattern={other}", "--budget=full", "--ks=5,20",
                        "--num_classes=4", "--family=hrnn"])
    config = study.config_from_flags()
    assert config.recipe.ks == (5, 20) and config.recipe.seeds == (1, 2, 3)
    assert config.family == "hrnn" and config.eval_files == (other,)
    assert config.recipe.selector_candidates == 0
    study.FLAGS.unparse_flags()
    study.FLAGS(base + [f"--eval_data_pattern={other}", "--selector_candidates=4"])
    assert study.config_from_flags().recipe.selector_candidates == 4
    study.FLAGS.unparse_flags()
    study.FLAGS(base + [f"--eval_data_pattern={other}", "--teacher_frame_dropout=0.5"])
    assert study.config_from_flags().recipe.teacher_frame_dropout == 0.5
    study.FLAGS.unparse_flags()
    study.FLAGS(base + [f"--eval_data_pattern={other}", "--selector_features=audio"])
    assert study.config_from_flags().recipe.selector_features == "audio"
    study.FLAGS.unparse_flags()
    study.FLAGS(base + [f"--eval_data_pattern={other}", "--selector_features=audio",
                        "--selector_shortlist=3"])
    assert study.config_from_flags().recipe.selector_shortlist == 3
    study.FLAGS.unparse_flags()
    study.FLAGS(base + [f"--eval_data_pattern={other}", "--patience=3"])
    assert study.config_from_flags().recipe.patience == 3
    for extra, message in (([f"--eval_data_pattern={train}"], "share"),
                           ([f"--eval_data_pattern={other}", "--ks=0"], "--ks"),
                           ([f"--eval_data_pattern={other}", "--seeds=a"], "--seeds"),
                           ([f"--eval_data_pattern={other}", "--patience=-1"],
                            "--patience must be positive"),
                           ([f"--eval_data_pattern={other}", "--frame_weight=-2"],
                            "--frame_weight"),
                           ([f"--eval_data_pattern={other}", "--selector_candidates=-2"],
                            "--selector_candidates"),
                           ([f"--eval_data_pattern={other}", "--teacher_frame_dropout=1"],
                            "--teacher_frame_dropout"),
                           ([f"--eval_data_pattern={other}", "--selector_features=video"],
                            "--selector_features: 'video'"),
                           ([f"--eval_data_pattern={other}", "--selector_shortlist=-2"],
                            "--selector_shortlist must be >= 0"),
                           ([f"--eval_data_pattern={other}", "--selector_shortlist=2"],
                            "--selector_shortlist needs --selector_features"),
                           ([], "--eval_data_pattern is required")):
      study.FLAGS.unparse_flags()
      study.FLAGS(base + extra)
      with pytest.raises(study.StudyError, match=message):
        study.config_from_flags()
  finally:
    study.FLAGS.unparse_flags()


def test_study_report_gathers_studies_into_one_page(tmp_path):
  import importlib.util
  spec = importlib.util.spec_from_file_location("study_report",
                                                os.path.join(REPO, "scripts/study_report.py"))
  report = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(report)

  def row(model, k, gap):
    return dict(model=model, k=k, gap=gap, seed=1, family="attention", val_gap=gap,
                epochs=2, epochs_trained=3, seconds=30.0, curve=[[1, 0.5, 0.4], [2, 0.7, 0.6]])
  good = [row("teacher", None, 0.8), row("uniform", 5, 0.5), row("learned", 5, 0.7)]
  bad = [row("teacher", None, 0.6), row("uniform", 5, 0.5), row("learned", 5, 0.7)]
  (tmp_path / "world_a.json").write_text(json.dumps(good))
  (tmp_path / "world_a.meta.json").write_text(json.dumps({"world": "A", "wall_seconds": 95}))
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "results.json").write_text(json.dumps(bad))
  out = tmp_path / "studies.md"
  try:
    report.FLAGS([sys.argv[0], f"--output={out}"])
    report.main(["study_report", str(tmp_path / "world_a.json"), str(tmp_path / "b")])
  finally:
    report.FLAGS.unparse_flags()
  text = out.read_text()
  assert "| claim | world_a | b |" in text
  assert "| teacher >= every student | held | **failed** |" in text
  assert "- world: A" in text and "1m35s wall" in text
  assert "| Teacher (all frames) | 0.800 |  |" in text and "learned_k5_s1: 0.700" in text


def test_a_study_from_before_a_recipe_field_resumes_with_its_default(frame_data, tmp_path):
  study.Study(tiny_config(frame_data, tmp_path))
  path = tmp_path / "recipe.json"
  saved = json.loads(path.read_text())
  del saved["selector_candidates"]  # as a study written before the field existed
  path.write_text(json.dumps(saved))
  study.Study(tiny_config(frame_data, tmp_path))
  with pytest.raises(study.StudyError, match="selector_candidates: 0 before, 4 now"):
    study.Study(tiny_config(frame_data, tmp_path, selector_candidates=4))
  # A study from before uniform jitter existed trained without it.
  del saved["uniform_jitter"]
  path.write_text(json.dumps(saved))
  with pytest.raises(study.StudyError, match="uniform_jitter: False before, True now"):
    study.Study(tiny_config(frame_data, tmp_path))
  study.Study(tiny_config(frame_data, tmp_path, uniform_jitter=False))


def test_teacher_frame_dropout_reaches_the_teacher_only(frame_data, tmp_path, monkeypatch):
  monkeypatch.setattr(study.run_config_lib, "with_teacher", lambda run, *args: dataclasses.replace(
      run, distillation=study.run_config_lib.Distillation(mode="serial", teacher=run)))
  config = tiny_config(frame_data, tmp_path, teacher_frame_dropout=0.5)
  rates = {(row["model"], row["k"]): study.build_run(config, row).model_hparams.frame_dropout
           for row in study.planned_rows(config)}
  student_rate = study.FAMILIES["attention"].hparams(2, 1024)["frame_dropout"]
  assert rates == {("teacher", None): 0.5, **{(m, 2): student_rate for m in study.MODELS[1:]}}
  # Families without frame dropout are untouched.
  hrnn = dataclasses.replace(config, family="hrnn")
  assert not hasattr(study.build_run(hrnn, study.planned_rows(hrnn)[0]).model_hparams,
                     "frame_dropout")


def test_uniform_and_distilled_rows_train_on_jittered_frames(frame_data, tmp_path,
                                                            monkeypatch):
  # Only the student's own reading matters here, not its teacher.
  monkeypatch.setattr(study.run_config_lib, "with_teacher", lambda run, *args: dataclasses.replace(
      run, distillation=study.run_config_lib.Distillation(mode="serial", teacher=run)))
  config = tiny_config(frame_data, tmp_path)
  jitter = {row["model"]: study.build_run(config, row).uniform_jitter
            for row in study.planned_rows(config) if row["k"]}
  assert jitter == {"uniform": True, "distilled": True, "random": False, "learned": False}
  learned = [r for r in study.planned_rows(config) if r["model"] == "learned"][0]
  candidates = tiny_config(frame_data, tmp_path, selector_candidates=3)
  assert study.build_run(candidates, learned).uniform_jitter


def test_the_study_drops_only_tensorflows_retracing_warnings(caplog):
  logger = tf.get_logger()
  for f in [f for f in logger.filters if isinstance(f, study._NoRetracingWarning)]:
    logger.removeFilter(f)  # an earlier test's study installed it

  def retracing_messages(step):  # a new tf.function per call, as a study's epochs make
    caplog.clear()
    with caplog.at_level("WARNING", logger="tensorflow"):
      for _ in range(8):
        tf.function(step)(tf.constant(1))
      logger.warning("another warning")
    messages = [r.getMessage() for r in caplog.records]
    assert "another warning" in messages
    return [m for m in messages if "triggered tf.function retracing" in m]

  assert retracing_messages(lambda x: x + 1)  # TensorFlow warns
  study.quiet_retracing_warnings()
  study.quiet_retracing_warnings()  # idempotent: one filter
  assert sum(isinstance(f, study._NoRetracingWarning) for f in logger.filters) == 1
  assert not retracing_messages(lambda x: x + 2)
