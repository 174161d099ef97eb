"""The few-frames study: our Table 1 on any frame-level data, with one command.

  python -m yt8m.study --train_data_pattern=GLOB --eval_data_pattern=GLOB --output_dir=DIR \
      [--budget=quick|full] [--num_classes=N] [--family=attention|hrnn|hrnn_paper|netvlad|nextvlad] \
      [--ks=5,10] [--seeds=1]

Trains, through the library train.py uses (train_lib.train, eval_lib.evaluate): the teacher
on all frames, then at every k the uniform-k and random-k baselines, the serial distilled
student (L_rep + L_pred + L_CE, the teacher's shared head) and the learned-selection student
(the same distillation, frames picked by a scorer); all of one family.

Validation only: a split carved from the training files (docs/STUDY.md) picks every run's
epoch (early stopping on validation GAP); the eval files are read once per run, after that
choice, to score the chosen checkpoint, and never for any choice.

Writes DIR/results.json (one row per run, rewritten atomically after each), DIR/results.md
and DIR/gap_vs_k.png. Resumable: rows already in results.json are skipped, a run stopped
mid-training continues from its last epoch checkpoint (train_lib resumes exactly).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging as logging_std
import math
import os
import statistics
import sys
import time
from typing import Callable, Sequence

import keras
import tensorflow as tf
from absl import app, flags, logging

from yt8m import building, eval_lib, frame_selection, outputs, readers, train_lib
from yt8m import run_config as run_config_lib
from yt8m.models import selector, teachers

MODELS = ("teacher", "uniform", "random", "distilled", "learned")


class _NoRetracingWarning(logging_std.Filter):
  def filter(self, record: logging_std.LogRecord) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


def quiet_retracing_warnings() -> None:
  """Drops TensorFlow's "calls to ... triggered tf.function retracing" warnings: a study calls
  train_lib once per epoch and run, each call compiling its own step functions by design, so the
  warning (12-16 paragraph-long lines in a quick study's log) is a false alarm."""
  tf_logger = tf.get_logger()
  if not any(isinstance(f, _NoRetracingWarning) for f in tf_logger.filters):
    tf_logger.addFilter(_NoRetracingWarning())


# ----------------------------------------------------------------------------- the recipe


@dataclasses.dataclass(frozen=True)
class Recipe:
  """yt8m's recommended study recipe: every run of a study trains with it."""
  ks: tuple[int, ...]
  seeds: tuple[int, ...]
  max_epochs: int
  patience: int  # epochs without a better validation GAP before stopping
  batch_size: int = 64
  learning_rate: float = 0.01  # 0.001 left the 270-video teacher near chance (docs/STUDY.md)
  rep_weight: float = 0.01
  pred_weight: float = 1.0
  selector_hidden: int = 16
  frame_weight: float = 0.0  # learned rows: L_frames from the teacher's attention, if it has one
  init_from_teacher: bool = True  # distilled and learned students start from the teacher's weights
  selector_candidates: int = 0  # learned rows: pick among a grid of c * k frames (0: every frame)
  selector_features: str = ""  # learned rows: the features the scorer reads ("": all)
  selector_shortlist: int = 0  # learned rows: a second stage over each stretch's c best frames
  # Uniform and distilled rows train on frames drawn within their stretches (evaluation keeps
  # the grid): random-k's augmentation without losing uniform's coverage (docs/STUDY.md).
  uniform_jitter: bool = True
  # Share of a teacher's real frames hidden per training step, for families whose teacher
  # has frame dropout (attention); its students keep the family's own rate.
  teacher_frame_dropout: float = 0.1


# What a study's recipe.json from before a field existed ran with, where not the default.
_RECIPE_BEFORE_FIELD = {"uniform_jitter": False}


BUDGETS = {
    # Sized from timed runs on the 2-core machine (docs/STUDY.md, "Budget").
    "quick": Recipe(ks=(5, 10), seeds=(1,), max_epochs=10, patience=1),
    "full": Recipe(ks=(5, 10, 20, 30), seeds=(1, 2, 3), max_epochs=20, patience=3),
}


@dataclasses.dataclass(frozen=True)
class Family:
  """A teacher family and its same-family students."""
  model: str
  hparams: Callable[[int | None, int], dict]  # (k or None for the teacher, rgb size) -> hparams
  frame_weights: bool = False  # the teacher returns per-frame weights (attention)


FAMILIES = {
    "attention": Family("AttentionPoolingModel", lambda k, rgb: dict(
        attention_scorer_size=64, attention_heads=4, attention_hidden_size=256,
        attention_drop_rate=0.5, frame_dropout=0.1), frame_weights=True),
    # The H-RNN with its blocks attention-pooled (docs/STUDY.md: the paper's final-state
    # H-RNN, "hrnn_paper", memorised or lagged and was not the skyline). Teacher blocks of 5
    # frames, chosen on validation GAP (0.851 against 0.757 with 15 on the bursts world).
    "hrnn": Family("HierarchicalLstmModel", lambda k, rgb: dict(
        lstm_cells=64, lstm_layers=2,
        hrnn_block_frames=5 if k is None else teachers.student_block_frames(k),
        hrnn_pooling="attention", attention_scorer_size=64, hrnn_drop_rate=0.5),
        frame_weights=True),
    "hrnn_paper": Family("HierarchicalLstmModel", lambda k, rgb: dict(
        lstm_cells=64, lstm_layers=2,
        hrnn_block_frames=15 if k is None else teachers.student_block_frames(k))),
    "netvlad": Family("NetVladModel", lambda k, rgb: dict(
        rgb_size=rgb, netvlad_cluster_size=16, netvlad_hidden_size=256, bn_momentum=0.9)),
    "nextvlad": Family("NeXtVladModel", lambda k, rgb: dict(
        rgb_size=rgb, nextvlad_cluster_size=32, nextvlad_hidden_size=256, groups=8,
        expansion=2, gating_reduction=8, drop_rate=0.5, bn_momentum=0.9)),
}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  output_dir: str
  train_files: tuple[str, ...]
  eval_files: tuple[str, ...]
  recipe: Recipe
  family: str = "attention"
  num_classes: int = readers.NUM_CLASSES_2018
  feature_names: tuple[str, ...] = ("rgb", "audio")
  feature_sizes: tuple[int, ...] = (1024, 128)
  validation_percent: int = 10


class StudyError(ValueError):
  """A bad flag or input of the study; the message names it."""


# ------------------------------------------------------------------------ validation split

_SPLIT_FILE = "split.json"
# With at least this many training files, whole files are held out (no copying).
_MIN_FILES_FOR_FILE_SPLIT = 10


def _in_validation(video_id: bytes, percent: int) -> bool:
  """Deterministic on every machine: the first 8 bytes of sha256(id), mod 100."""
  return int.from_bytes(hashlib.sha256(video_id).digest()[:8], "big") % 100 < percent


def _video_ids(files: Sequence[str]):
  """(file, serialized record, video id) for every record, in file order."""
  def parse(serialized):
    context, _ = tf.io.parse_single_sequence_example(serialized, context_features={
        "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "video_id": tf.io.FixedLenFeature([], tf.string, default_value="")})
    return serialized, tf.where(tf.strings.length(context["id"]) > 0, context["id"],
                                context["video_id"])
  for path in files:
    for serialized, video_id in tf.data.TFRecordDataset(path).map(parse).as_numpy_iterator():
      yield path, serialized, video_id


def _unfinished_split(path: str) -> bool:
  """A split file may be replaced only by a carve that never finished (no split.json yet)."""
  return not tf.io.gfile.exists(os.path.join(os.path.dirname(path), _SPLIT_FILE))


def _write_records(path: str, records: list[bytes]) -> None:
  with outputs.atomic_path(path, signature=_unfinished_split) as temporary, \
       tf.io.TFRecordWriter(temporary) as writer:
    for record in records:
      writer.write(record)


def _spread(records: list, n: int) -> list:
  """n records evenly spaced over the list (a probe drawn from all of it)."""
  return [records[i * len(records) // n] for i in range(min(n, len(records)))]


def carve_validation(train_files: Sequence[str], data_dir: str, percent: int) -> dict:
  """Splits the training files into training and validation, once per study.

  Ten or more files: every file whose sorted position i has i % (100 // percent) == 0 is
  validation (whole files: nothing is copied). Fewer: each video goes to validation when
  sha256(its id) mod 100 < percent, and the two parts are written to data_dir. Either way a
  training probe (training videos spread over them, as many as the validation has) measures the
  training GAP of the teachers' curves. The split is recorded in data_dir/split.json and
  reused by a resumed study.
  """
  split_path = os.path.join(data_dir, _SPLIT_FILE)
  if tf.io.gfile.exists(split_path):
    with tf.io.gfile.GFile(split_path) as f:
      split = json.load(f)
    if split["source_files"] != list(train_files) or split["percent"] != percent:
      raise StudyError(f"{split_path} was carved from other training files or another "
                       "--validation_percent; use another --output_dir")
    return split
  files = sorted(train_files)
  if len(files) >= _MIN_FILES_FOR_FILE_SPLIT:
    every = max(2, 100 // percent)
    validation = [f for i, f in enumerate(files) if i % every == 0]
    training = [f for f in files if f not in validation]
    split = dict(mode="files", train=training, validation=validation, probe=training[:1])
  else:
    parts = {"train": [], "validation": []}
    for _, serialized, video_id in _video_ids(files):
      parts["validation" if _in_validation(video_id, percent) else "train"].append(serialized)
    if not parts["validation"] or not parts["train"]:
      raise StudyError(f"--train_data_pattern: {len(files)} file(s) with "
                       f"{sum(map(len, parts.values()))} videos leave no "
                       f"{'validation' if not parts['validation'] else 'training'} videos "
                       f"at --validation_percent={percent}")
    tf.io.gfile.makedirs(data_dir)
    names = {}
    for name, records in (("train", parts["train"]), ("validation", parts["validation"]),
                          ("probe", _spread(parts["train"], len(parts["validation"])))):
      names[name] = [os.path.join(data_dir, f"{name}.tfrecord")]
      _write_records(names[name][0], records)
    split = dict(mode="videos", **names, counts={k: len(v) for k, v in parts.items()})
  split.update(source_files=list(train_files), percent=percent)
  outputs.write_json(split_path, split)
  return split


# ------------------------------------------------------------------------------- the runs


def row_key(row: dict) -> tuple:
  return (row["model"], row["k"], row["seed"], row["family"])


def planned_rows(config: StudyConfig) -> list[dict]:
  """Every (model, k, seed) of the study, the teacher of each seed first."""
  rows = []
  for seed in config.recipe.seeds:
    rows.append(dict(model="teacher", k=None, seed=seed, family=config.family))
    for k in config.recipe.ks:
      rows += [dict(model=m, k=k, seed=seed, family=config.family) for m in MODELS[1:]]
  return rows


def run_name(row: dict) -> str:
  return "teacher_s%d" % row["seed"] if row["k"] is None else (
      f"{row['model']}_k{row['k']}_s{row['seed']}")


def _hparams(family: Family, k: int | None, config: StudyConfig) -> dict:
  hparams = family.hparams(k, config.feature_sizes[0])
  if k is None and "frame_dropout" in hparams:
    hparams["frame_dropout"] = config.recipe.teacher_frame_dropout
  return hparams


def build_run(config: StudyConfig, row: dict, teacher_dir: str = "",
              teacher_checkpoint: str = "") -> run_config_lib.RunConfig:
  family = FAMILIES[config.family]
  k = row["k"]
  strategy = {"random": "random", "learned": frame_selection.LEARNED}.get(row["model"],
                                                                          "uniform")
  recipe = config.recipe
  run = run_config_lib.RunConfig(
      model=family.model, feature_names=config.feature_names,
      feature_sizes=config.feature_sizes, frame_features=True,
      num_classes=config.num_classes, student_frames=k, frame_selection=strategy,
      uniform_jitter=recipe.uniform_jitter and not run_config_lib.why_no_jitter(
          k, strategy, recipe.selector_candidates),
      model_hparams=_hparams(family, k, config),
      selector_hparams=({"selector_hidden": recipe.selector_hidden,
                         "selector_candidates": recipe.selector_candidates,
                         "selector_features": recipe.selector_features,
                         "selector_shortlist": recipe.selector_shortlist}
                        if strategy == frame_selection.LEARNED else {}))
  if row["model"] in ("distilled", "learned"):
    weights = dict(ce_weight=1.0, rep_weight=recipe.rep_weight,
                   pred_weight=recipe.pred_weight, share_head=True)
    if row["model"] == "learned" and family.frame_weights:
      weights["frame_weight"] = recipe.frame_weight
    run = run_config_lib.with_teacher(run, "serial", weights, teacher_dir)
    # The teacher's validation-chosen epoch, not its last one.
    run = dataclasses.replace(run, distillation=dataclasses.replace(
        run.distillation, teacher_checkpoint=teacher_checkpoint))
  return run


def _read_json(path: str, default):
  if not tf.io.gfile.exists(path):
    return default
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _count(files: Sequence[str]) -> int:
  return int(tf.data.TFRecordDataset(list(files)).reduce(
      tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def steps_after(epoch: int, num_videos: int, batch_size: int) -> int:
  """Where epoch `epoch` ends in the run's one stream of passes (batches span epochs)."""
  return math.ceil(epoch * num_videos / batch_size)


class Study:
  """Runs the planned rows, skipping those already in results.json."""

  def __init__(self, config: StudyConfig,
               strategy: tf.distribute.Strategy | None = None):
    self.config = config
    self.strategy = strategy
    self.results_path = os.path.join(config.output_dir, "results.json")
    self.state_dir = os.path.join(config.output_dir, "state")
    self.split = carve_validation(config.train_files, os.path.join(config.output_dir, "data"),
                                  config.validation_percent)
    self.num_train = _count(self.split["train"])
    self.check_recipe()

  def check_recipe(self) -> None:
    """A resumed study must train its remaining rows as it trained the first ones."""
    path = os.path.join(self.config.output_dir, "recipe.json")
    recipe = dict(family=self.config.family, num_classes=self.config.num_classes,
                  **{k: v for k, v in dataclasses.asdict(self.config.recipe).items()
                     if k not in ("ks", "seeds")})
    saved = _read_json(path, None)
    if saved is not None:  # a study from before a recipe field existed ran with its default
      saved = {**{f.name: _RECIPE_BEFORE_FIELD.get(f.name, f.default)
                  for f in dataclasses.fields(Recipe)
                  if f.default is not dataclasses.MISSING and f.name in recipe}, **saved}
    if saved is None:
      outputs.write_json(path, recipe)
    elif saved != recipe:
      diff = [f"{k}: {saved.get(k)!r} before, {v!r} now" for k, v in recipe.items()
              if saved.get(k) != v]
      raise StudyError(f"{path}: this --output_dir was run with another recipe "
                       f"({'; '.join(diff)}); use the same flags or another --output_dir")

  def rows(self) -> list[dict]:
    return _read_json(self.results_path, [])

  def write_rows(self, rows: list[dict]) -> None:
    with outputs.atomic_output(self.results_path, signature="[") as f:
      json.dump(rows, f, indent=1)
      f.write("\n")

  def fit(self, name: str, run: run_config_lib.RunConfig, seed: int,
          train_curve: bool) -> dict:
    """Trains epoch by epoch, scores the validation split after each, stops after
    `patience` epochs without a better validation GAP. Returns the run's state (best
    checkpoint, its epoch and validation GAP, the curve). Resumes from its state file."""
    recipe = self.config.recipe
    train_dir = os.path.join(self.config.output_dir, "runs", name)
    state_path = os.path.join(self.state_dir, f"{name}.json")
    state = _read_json(state_path, dict(epoch=0, curve=[], best_epoch=0, best_val_gap=-1.0,
                                        best_checkpoint="", done=False, seconds=0.0))
    steps_per_epoch = math.ceil(self.num_train / recipe.batch_size)
    while not state["done"]:
      epoch = state["epoch"] + 1
      start = time.time()
      keras.backend.clear_session()
      keras.utils.set_random_seed(seed * 1000 + epoch)
      # One stream of max_epochs passes; each call trains one more epoch of it.
      train_config = train_lib.TrainConfig(
          train_dir=train_dir, batch_size=recipe.batch_size, num_epochs=recipe.max_epochs,
          max_steps=steps_after(epoch, self.num_train, recipe.batch_size), base_learning_rate=recipe.learning_rate,
          learning_rate_decay=1.0, seed=seed, log_every=steps_per_epoch,
          metrics_every=10**9, checkpoint_steps=10**9, keep_checkpoints=recipe.max_epochs + 1,
          steps_per_execution=steps_per_epoch,
          init_from=(run.distillation.teacher_checkpoint
                     if run.distillation and recipe.init_from_teacher else ""))
      model = train_lib.train(run, self.split["train"], train_config, self.strategy)["model"]
      val_gap = eval_lib.evaluate(model, run, self.split["validation"], batch_size=256)["gap"]
      train_gap = (eval_lib.evaluate(model, run, self.split["probe"], batch_size=256)["gap"]
                   if train_curve else None)
      checkpoint = tf.train.latest_checkpoint(train_dir)
      state["curve"].append([epoch, train_gap, val_gap])
      state["epoch"] = epoch
      state["seconds"] += time.time() - start
      if val_gap > state["best_val_gap"]:
        state.update(best_epoch=epoch, best_val_gap=val_gap, best_checkpoint=checkpoint)
      state["done"] = (epoch - state["best_epoch"] >= recipe.patience or
                       epoch >= recipe.max_epochs)
      outputs.write_json(state_path, state)
      logging.info("%s epoch %d: validation GAP %.4f%s (best: epoch %d)", name, epoch,
                   val_gap, "" if train_gap is None else f", training GAP {train_gap:.4f}",
                   state["best_epoch"])
    return state

  def run(self) -> list[dict]:
    quiet_retracing_warnings()
    rows = self.rows()
    done = {row_key(r) for r in rows}
    plan = planned_rows(self.config)
    todo = [r for r in plan if row_key(r) not in done]
    logging.info("Study: %d rows planned, %d done, %d to run.", len(plan), len(plan) - len(todo),
                 len(todo))
    session_start, finished = time.time(), 0
    for row in todo:
      name = run_name(row)
      teacher_dir = teacher_checkpoint = ""
      if row["model"] in ("distilled", "learned"):
        teacher_dir = os.path.join(self.config.output_dir, "runs", f"teacher_s{row['seed']}")
        teacher_state = _read_json(os.path.join(self.state_dir, f"teacher_s{row['seed']}.json"),
                                   {})
        teacher_checkpoint = teacher_state.get("best_checkpoint", "")
        if not teacher_state.get("done"):
          raise StudyError(f"{name} needs the trained teacher of seed {row['seed']} "
                           f"({teacher_dir}), which is not finished")
      run = build_run(self.config, row, teacher_dir, teacher_checkpoint)
      state = self.fit(name, run, row["seed"], train_curve=row["model"] == "teacher")
      # Only now, with the epoch chosen on validation, are the eval files read.
      keras.backend.clear_session()
      _, model, _ = building.load_model(os.path.join(self.config.output_dir, "runs", name),
                                        state["best_checkpoint"])
      metrics = eval_lib.evaluate(model, run, self.config.eval_files, batch_size=256)
      rows.append(dict(
          row, gap=metrics["gap"], map=metrics["map"], hit_at_one=metrics["hit_at_one"],
          val_gap=state["best_val_gap"], epochs=state["best_epoch"],
          epochs_trained=state["epoch"], seconds=state["seconds"], curve=state["curve"],
          checkpoint=state["best_checkpoint"], num_train=self.num_train,
          num_eval=metrics["num_videos"]))
      self.write_rows(rows)
      finished += 1
      per_row = (time.time() - session_start) / finished
      remaining = len(todo) - finished
      logging.info("[%d/%d] %s: GAP %.4f (validation %.4f, epoch %d of %d) | %.0f s/row, "
                   "ETA %s", len(plan) - remaining, len(plan), name, metrics["gap"],
                   state["best_val_gap"], state["best_epoch"], state["epoch"], per_row,
                   _duration(per_row * remaining))
    write_table(rows, os.path.join(self.config.output_dir, "results.md"))
    plot(rows, os.path.join(self.config.output_dir, "gap_vs_k.png"))
    return rows


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
      f"{seconds // 60}m{seconds % 60:02d}s")


# ---------------------------------------------------------------------------- the outputs

_LABELS = {"teacher": "Teacher (all frames)", "uniform": "Uniform-k", "random": "Random-k",
           "distilled": "Serial distilled, L_rep + L_pred + L_CE (uniform-k)",
           "learned": "Serial distilled, L_rep + L_pred + L_CE (learned-k)"}


def _cell(values: list[float]) -> str:
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _mean_gap(rows: list[dict], family: str, model: str, k: int | None) -> float | None:
  gaps = [r["gap"] for r in rows if (r["family"], r["model"], r["k"]) == (family, model, k)]
  return statistics.mean(gaps) if gaps else None


def _name(key: tuple) -> str:
  return key[0] if key[1] is None else f"{key[0]} k={key[1]}"


def _compare(claim: str, gap: dict, pairs: list, margin: float = 0.0
             ) -> tuple[str, bool, str] | None:
  """(claim, held, detail): every pair (a, b) has gap[a] >= gap[b] + margin."""
  pairs = [(a, b) for a, b in pairs if gap[a] is not None and gap[b] is not None]
  if not pairs:
    return None
  failed = [f"{_name(a)} {gap[a]:.3f} vs {_name(b)} {gap[b]:.3f}"
            for a, b in pairs if gap[a] < gap[b] + margin]
  return claim, not failed, "; ".join(failed) or f"{len(pairs)} compared"


def shape_checks(rows: list[dict]) -> list[tuple[str, bool, str]]:
  """The paper's shape, claim by claim, per family (GAP means over seeds): (claim, held,
  where it failed or how many cells it compared)."""
  checks = []
  for family in sorted({r["family"] for r in rows}):
    ks = sorted({r["k"] for r in rows if r["family"] == family and r["k"] is not None})
    gap = {(m, k): _mean_gap(rows, family, m, k) for m in MODELS for k in [None] + ks}
    students = [(m, k) for m in MODELS[1:] for k in ks]
    claims = [(f"{family}: teacher >= every student", [(("teacher", None), s) for s in students], 0.0)]
    claims += [(f"{family}: {m}: GAP rises with k",
                [((m, b), (m, a)) for a, b in zip(ks, ks[1:], strict=False)], 0.0)
               for m in MODELS[1:]]
    claims += [(f"{family}: {a} >= {b}", [((a, k), (b, k)) for k in ks], 0.0)
               for a, b in (("uniform", "random"), ("distilled", "uniform"),
                            ("learned", "uniform"))]
    claims.append((f"{family}: learned >= uniform + 0.01 at k <= 10",
                   [(("learned", k), ("uniform", k)) for k in ks if k <= 10], 0.01))
    if 30 in ks:  # the paper: the best student within 0.005 of the teacher at k = 30
      scored = [(gap[m, 30], m) for m in MODELS[1:] if gap[m, 30] is not None]
      if scored:
        best = max(scored)[1]
        claims.append((f"{family}: best student at k=30 within 0.01 of the teacher",
                       [((best, 30), ("teacher", None))], -0.01))
    checks += [c for c in (_compare(claim, gap, pairs, margin)
                           for claim, pairs, margin in claims) if c]
  return checks


def teacher_curve(row: dict) -> str:
  """A teacher row's "epoch: training probe GAP / validation GAP, ..."."""
  return ", ".join(f"{e}: {t:.3f} / {v:.3f}" for e, t, v in row["curve"])


def write_table(rows: list[dict], path: str) -> None:
  """GAP and mAP per model (lines) and k (columns), mean ± std over seeds; the teachers'
  training vs validation GAP per epoch below."""
  ks = sorted({r["k"] for r in rows if r["k"] is not None})
  lines = ["| model | family | seeds | all frames GAP | all frames mAP | " +
           " | ".join(f"k={k} GAP | k={k} mAP" for k in ks) + " |",
           "|---|---|---|---|---|" + "---|---|" * len(ks)]
  for family in sorted({r["family"] for r in rows}):
    for model in MODELS:
      mine = [r for r in rows if r["model"] == model and r["family"] == family]
      if not mine:
        continue
      cells = []
      for k in [None] + ks:
        at_k = [r for r in mine if r["k"] == k]
        cells.append(f"{_cell([r['gap'] for r in at_k])} | {_cell([r['map'] for r in at_k])}"
                     if at_k else " | ")
      seeds = len({r["seed"] for r in mine})
      lines.append(f"| {_LABELS[model]} | {family} | {seeds} | " + " | ".join(cells) + " |")
  lines += ["", "GAP@20 and mAP on the eval files, each run at the epoch of its best "
            "validation GAP. Teachers, GAP per epoch (training probe / validation):", ""]
  for r in rows:
    if r["model"] == "teacher":
      lines.append(f"- {r['family']} seed {r['seed']}: {teacher_curve(r)} "
                   f"(chosen: epoch {r['epochs']})")
  lines += ["", "The paper's shape (GAP, mean over seeds):", ""]
  lines += [f"- {'held' if held else '**failed**'}: {claim} ({detail})"
            for claim, held, detail in shape_checks(rows)]
  with outputs.atomic_output(path, signature="| model") as f:
    f.write("\n".join(lines) + "\n")


def plot(rows: list[dict], path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for model, style in zip(MODELS[1:], ("-o", "-s", ":^", "--D"), strict=True):
    by_k = {}
    for r in rows:
      if r["model"] == model:
        by_k.setdefault(r["k"], []).append(r["gap"])
    if by_k:
      ks = sorted(by_k)
      ax.plot(ks, [statistics.mean(by_k[k]) for k in ks], style, label=_LABELS[model])
  teachers = [r["gap"] for r in rows if r["model"] == "teacher"]
  if teachers:
    ax.axhline(statistics.mean(teachers), color="black", linestyle="--", linewidth=0.8,
               label=_LABELS["teacher"])
  ax.set_xlabel("frames seen by the student (k)")
  ax.set_ylabel("GAP@20 (eval files)")
  ax.set_title(f"Few-frames study: {', '.join(sorted({r['family'] for r in rows}))}")
  ax.legend(fontsize=7)
  fig.tight_layout()
  temporary = f"{path}.tmp-{os.getpid()}.png"
  fig.savefig(temporary, dpi=120)
  plt.close(fig)
  os.replace(temporary, path)


# ---------------------------------------------------------------------- the command line

def define_flags() -> flags.FlagValues:
  """Defines the study's flags (once; the command line calls this, importing the library
  defines nothing) and returns absl's FlagValues."""
  global FLAGS
  if FLAGS is None:
    flags.DEFINE_string("train_data_pattern", None, "Frame-level training files (a glob; "
                        "comma-separated globs work). The validation split is carved from them.")
    flags.DEFINE_string("eval_data_pattern", None, "Frame-level files every run is scored on, "
                        "once, after its epoch is chosen on validation.")
    flags.DEFINE_string("output_dir", None, "Where results.json, results.md, gap_vs_k.png, the "
                        "runs and the validation split go.")
    flags.DEFINE_enum("budget", "quick", sorted(BUDGETS), "quick: one seed, k in {5, 10}, "
                      "short training; full: seeds 1, 2, 3, k in {5, 10, 20, 30}, longer.")
    flags.DEFINE_integer("num_classes", readers.NUM_CLASSES_2018, "Classes (labels >= N are an "
                         "error, as in train.py).")
    flags.DEFINE_enum("family", "attention", sorted(FAMILIES), "Teacher family; students are of "
                      "the same family.")
    flags.DEFINE_list("ks", [], "Student frame budgets (default: the budget's).")
    flags.DEFINE_list("seeds", [], "Seeds (default: the budget's).")
    flags.DEFINE_string("feature_names", "rgb,audio", "Frame features, as train.py.")
    flags.DEFINE_string("feature_sizes", "1024,128", "Their sizes, as train.py.")
    flags.DEFINE_float("learning_rate", 0, "Override the recipe's learning rate (0: the recipe's).")
    flags.DEFINE_integer("max_epochs", 0, "Override the budget's epoch limit (0: the budget's).")
    flags.DEFINE_integer("patience", 0, "Override the budget's early stop: epochs without a "
                         "better validation GAP before a run stops (0: the budget's).")
    flags.DEFINE_bool("init_from_teacher", None, "Override the recipe: distilled and learned "
                      "students start from their teacher's weights (default: the recipe's).")
    flags.DEFINE_float("frame_weight", -1, "Override the recipe's L_frames weight for learned "
                       "students of an attention teacher (-1: the recipe's; 0: off).")
    flags.DEFINE_integer("selector_candidates", -1, "Override the recipe: learned students "
                         "pick among a uniform grid of c * k frames (-1: the recipe's; 0: every "
                         "frame).")
    flags.DEFINE_bool("uniform_jitter", None, "Override the recipe: uniform and distilled "
                      "students train on frames drawn within their stretches (default: the "
                      "recipe's, on).")
    flags.DEFINE_string("selector_features", None, "Override the recipe: the frame features "
                        "a learned student's scorer reads, e.g. audio (default: the recipe's, "
                        "all of them).")
    flags.DEFINE_integer("selector_shortlist", -1, "Override the recipe: with "
                         "--selector_features, a second scorer of every feature picks among "
                         "each stretch's c best frames by the first (-1: the recipe's; 0: one "
                         "stage).")
    flags.DEFINE_float("teacher_frame_dropout", -1, "Override the recipe: share of the "
                       "teacher's frames hidden per training step, for families with frame "
                       "dropout (-1: the recipe's).")
    flags.DEFINE_integer("validation_percent", 10, "Share of the training videos (or files) "
                         "held out for validation.")
    FLAGS = flags.FLAGS
  return FLAGS


FLAGS = None  # absl's FlagValues once define_flags() ran


def _positive_ints(name: str, values: list[str]) -> tuple[int, ...]:
  try:
    numbers = tuple(int(v) for v in values)
  except ValueError:
    raise StudyError(f"--{name} must be positive integers, got {','.join(values)}") from None
  if not numbers or min(numbers) < 1:
    raise StudyError(f"--{name} must be positive integers, got {','.join(values)}")
  return numbers


def config_from_flags() -> StudyConfig:
  for name in ("train_data_pattern", "eval_data_pattern", "output_dir"):
    if not FLAGS[name].value:
      raise StudyError(f"--{name} is required")
  if not 1 <= FLAGS.validation_percent <= 50:
    raise StudyError(f"--validation_percent must be in [1, 50], got {FLAGS.validation_percent}")
  recipe = BUDGETS[FLAGS.budget]
  if FLAGS.ks:
    recipe = dataclasses.replace(recipe, ks=_positive_ints("ks", FLAGS.ks))
  if FLAGS.seeds:
    recipe = dataclasses.replace(recipe, seeds=_positive_ints("seeds", FLAGS.seeds))
  for name in ("learning_rate", "max_epochs", "patience"):  # 0: the recipe's
    value = FLAGS[name].value
    if value < 0:
      raise StudyError(f"--{name} must be positive (or 0: the recipe's), got {value}")
    if value:
      recipe = dataclasses.replace(recipe, **{name: value})
  if FLAGS.init_from_teacher is not None:
    recipe = dataclasses.replace(recipe, init_from_teacher=FLAGS.init_from_teacher)
  if FLAGS.uniform_jitter is not None:
    recipe = dataclasses.replace(recipe, uniform_jitter=FLAGS.uniform_jitter)
  if FLAGS.frame_weight != -1:
    if FLAGS.frame_weight < 0:
      raise StudyError(f"--frame_weight must be >= 0 (or -1: the recipe's), got "
                       f"{FLAGS.frame_weight}")
    recipe = dataclasses.replace(recipe, frame_weight=FLAGS.frame_weight)
  if FLAGS.selector_candidates != -1:
    if FLAGS.selector_candidates < 0:
      raise StudyError(f"--selector_candidates must be >= 0 (or -1: the recipe's), got "
                       f"{FLAGS.selector_candidates}")
    recipe = dataclasses.replace(recipe, selector_candidates=FLAGS.selector_candidates)
  if FLAGS.selector_features is not None:
    recipe = dataclasses.replace(recipe, selector_features=FLAGS.selector_features)
  if FLAGS.selector_shortlist != -1:
    if FLAGS.selector_shortlist < 0:
      raise StudyError(f"--selector_shortlist must be >= 0 (or -1: the recipe's), got "
                       f"{FLAGS.selector_shortlist}")
    recipe = dataclasses.replace(recipe, selector_shortlist=FLAGS.selector_shortlist)
  if FLAGS.teacher_frame_dropout != -1:
    if not 0 <= FLAGS.teacher_frame_dropout < 1:
      raise StudyError(f"--teacher_frame_dropout must be in [0, 1) (or -1: the recipe's), got "
                       f"{FLAGS.teacher_frame_dropout}")
    recipe = dataclasses.replace(recipe, teacher_frame_dropout=FLAGS.teacher_frame_dropout)
  names, sizes = readers.parse_feature_flags(FLAGS.feature_names, FLAGS.feature_sizes)
  try:
    scored = selector.scored_features(recipe.selector_features, names)
    selector.check_shortlist(selector.SelectorHparams(
        selector_shortlist=recipe.selector_shortlist), len(scored), len(names))
  except ValueError as e:
    raise StudyError(str(e)) from None
  train_files = readers.list_files(FLAGS.train_data_pattern)
  eval_files = readers.list_files(FLAGS.eval_data_pattern)
  overlap = sorted(set(train_files) & set(eval_files))
  if overlap:
    raise StudyError(f"--eval_data_pattern and --train_data_pattern share {overlap[0]}")
  return StudyConfig(output_dir=FLAGS.output_dir, train_files=tuple(train_files),
                     eval_files=tuple(eval_files), recipe=recipe, family=FLAGS.family,
                     num_classes=FLAGS.num_classes, feature_names=names, feature_sizes=sizes,
                     validation_percent=FLAGS.validation_percent)


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = config_from_flags()
  except (StudyError, readers.DataError) as e:
    raise app.UsageError(str(e)) from None  # a flag: the usage helps
  try:
    Study(config).run()
  except (StudyError, readers.DataError, train_lib.TrainError,
          run_config_lib.RunConfigError, building.CheckpointError, FileExistsError) as e:
    sys.exit(f"yt8m-study: error: {e}")  # one line, no usage: the flags were fine
  print(open(os.path.join(config.output_dir, "results.md")).read())


def main():
  """The console script entry point (yt8m-study)."""
  define_flags()
  app.run(_main)


if __name__ == "__main__":
  main()
