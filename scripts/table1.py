"""Reproduces the grid of the paper's Table 1 on the synthetic frame-level dataset.

  python scripts/table1.py --output_dir=results/table1 [--seeds=1,2,3] [--ks=6,10,15,20,30]

For every seed: the teacher skyline (all frames); the baselines "model with k frames" for
each --strategies and --ks; teacher-student students (uniform k frames) for each --regimes x
--losses x --ks (serial students learn from that seed's trained teacher, frozen; parallel
ones train their own teacher alongside). Every model is evaluated on the evaluation split.

Writes, in --output_dir:
  results.csv   one row per run (regime, loss, strategy, k, seed, GAP, mAP, Hit@1, seconds);
                a re-run skips the rows already there, so an interrupted grid resumes
  table.md      GAP and mAP as mean ± std over seeds, laid out like the paper's Table 1
  gap_vs_k.png  GAP against k for every baseline strategy and distilled student

Data: --data_dir with train*/validate* shards, or generated there (yt8m.synthetic, built-in
or --from_video_level) when it has none. The scale is set by --num_train, --num_eval,
--top_classes, the model flags and --epochs; docs/RESULTS.md states the scale used.
"""

import csv
import dataclasses
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import tensorflow as tf
from absl import app, flags, logging

from yt8m import distill, eval_lib, frame_selection, models, readers, synthetic, train_lib
from yt8m import run_config as run_config_lib

flags.DEFINE_string("output_dir", "results/table1", "Where results go.")
flags.DEFINE_string("data_dir", "", "Shards train*/validate*; generated here when absent "
                    "(default: OUTPUT_DIR/data).")
flags.DEFINE_integer("num_train", 3000, "Training videos to generate.")
flags.DEFINE_integer("num_eval", 1000, "Evaluation videos to generate.")
flags.DEFINE_integer("top_classes", 100, "Keep labels < N (generator).")
flags.DEFINE_string("from_video_level", "", "Anchor the generator in real video-level files.")
flags.DEFINE_string("model", "HierarchicalLstmModel", "Teacher and student family.")
flags.DEFINE_integer("lstm_cells", 64, "LSTM width (H-RNN / LSTM).")
flags.DEFINE_integer("lstm_layers", 2, "LSTM depth.")
flags.DEFINE_integer("hrnn_block_frames", 15, "Teacher H-RNN block length.")
flags.DEFINE_integer("student_block_frames", 0, "Student H-RNN block length (0: k // 5, the "
                     "authors' 5 student blocks).")
flags.DEFINE_list("ks", ["6", "10", "15", "20", "30"], "Student frame budgets.")
flags.DEFINE_list("strategies", list(frame_selection.STRATEGIES[:1]) +
                  ["random", "first", "middle", "last", "first_middle_last"],
                  "Baseline frame selections.")
flags.DEFINE_list("regimes", ["parallel", "serial"], "Teacher-student regimes.")
flags.DEFINE_list("losses", ["rep", "pred", "rep_ce", "pred_ce", "rep_pred_ce"],
                  "Student loss combinations (terms joined by _).")
flags.DEFINE_list("student_strategies", ["uniform"], "Frame selections of the teacher-student "
                  "rows (the paper: uniform; 'learned' for the selector study).")
flags.DEFINE_string("teachers_from", "", "Use the teachers (and skyline rows) of another grid's "
                    "--output_dir instead of training them here.")
flags.DEFINE_integer("teacher_seed", 0, "Serial rows of every seed learn from this seed's "
                     "teacher (0: each seed its own).")
flags.DEFINE_integer("selector_hidden", 16, "Learned selection: scorer width.")
flags.DEFINE_enum("selector_estimator", "straight_through", ["straight_through", "reinforce"],
                  "Learned selection: the scorer's gradient estimator.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds (weights and data order).")
flags.DEFINE_bool("skyline", True, "Train and score each seed's teacher on all frames (serial "
                  "rows need it; --noskyline lets a second process run other rows meanwhile).")
flags.DEFINE_integer("epochs", 5, "Epochs for every run.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_float("learning_rate", 0.001, "Adam learning rate (the paper's).")
flags.DEFINE_float("rep_weight", 0.01, "Weight of L_rep when it is on.")
flags.DEFINE_float("pred_weight", 1.0, "Weight of L_pred when it is on.")
flags.DEFINE_bool("share_teacher_head", True, "Students classify with the teacher's output "
                  "layer (the paper's shared output layer; rows without L_CE need it).")
FLAGS = flags.FLAGS

TERM_NAMES = {"rep": "L_rep", "pred": "L_pred", "ce": "L_CE"}
FIELDS = ("regime", "loss", "strategy", "k", "seed", "gap", "map", "hit_at_one", "seconds")


def loss_weights(combo: str) -> dict:
  terms = set(combo.split("_"))
  unknown = terms - {"rep", "pred", "ce"}
  if unknown:
    raise ValueError(f"--losses: unknown term(s) {sorted(unknown)} in {combo!r}")
  weights = distill.LossWeights(
      ce_weight=1.0 if "ce" in terms else 0.0,
      rep_weight=FLAGS.rep_weight if "rep" in terms else 0.0,
      pred_weight=FLAGS.pred_weight if "pred" in terms else 0.0)
  return {**dataclasses.asdict(weights), "share_head": FLAGS.share_teacher_head}


def base_run(k: int | None, strategy: str) -> run_config_lib.RunConfig:
  hparams = {name: value for name, value in (("lstm_cells", FLAGS.lstm_cells),
                                              ("lstm_layers", FLAGS.lstm_layers))
             if name in models.hparam_names(FLAGS.model)}
  if FLAGS.model == "HierarchicalLstmModel":
    block = FLAGS.hrnn_block_frames if k is None else (FLAGS.student_block_frames or
                                                       max(1, k // 5))
    hparams["hrnn_block_frames"] = block
  learned = strategy == frame_selection.LEARNED
  return run_config_lib.RunConfig(
      model=FLAGS.model, feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
      frame_features=True, num_classes=FLAGS.top_classes, student_frames=k,
      frame_selection=strategy, model_hparams=hparams,
      selector_hparams={"selector_hidden": FLAGS.selector_hidden,
                        "selector_estimator": FLAGS.selector_estimator} if learned else {})


def train_and_evaluate(run, train_dir, train_files, eval_files, seed):
  keras.backend.clear_session()
  keras.utils.set_random_seed(seed)
  config = train_lib.TrainConfig(
      train_dir=train_dir, batch_size=FLAGS.batch_size, num_epochs=FLAGS.epochs,
      base_learning_rate=FLAGS.learning_rate, learning_rate_decay=1.0, seed=seed,
      log_every=10**9, metrics_every=10**9, checkpoint_steps=10**9, keep_checkpoints=1)
  start = time.time()
  result = train_lib.train(run, train_files, config)
  metrics = eval_lib.evaluate(result["model"], run, eval_files, batch_size=256)
  return metrics, time.time() - start


def grid():
  """(regime, loss, strategy, k) rows in the paper's order; regime 'teacher' is the skyline."""
  if FLAGS.skyline and not FLAGS.teachers_from:
    yield "teacher", "ce", "all", 0
  for strategy in FLAGS.strategies:
    for k in map(int, FLAGS.ks):
      yield "baseline", "ce", strategy, k
  for regime in FLAGS.regimes:
    for loss in FLAGS.losses:
      for strategy in FLAGS.student_strategies:
        for k in map(int, FLAGS.ks):
          yield regime, loss, strategy, k


def ensure_data(data_dir):
  if not tf.io.gfile.glob(os.path.join(data_dir, "train*.tfrecord")):
    for split, n, seed in (("train", FLAGS.num_train, 1), ("validate", FLAGS.num_eval, 2)):
      synthetic.generate(data_dir, num_videos=n, seed=seed, split=split, num_shards=4,
                         top_classes=FLAGS.top_classes,
                         from_video_level=FLAGS.from_video_level or None)
  return (readers.list_files(os.path.join(data_dir, "train*.tfrecord")),
          readers.list_files(os.path.join(data_dir, "validate*.tfrecord")))


def write_table(rows, path):
  """Mean ± std over seeds of GAP and mAP, a line per (regime, loss, strategy), k columns."""
  ks = sorted({int(r["k"]) for r in rows if int(r["k"])})
  groups = {}
  for r in rows:
    groups.setdefault((r["regime"], r["loss"], r["strategy"]), {}).setdefault(
        int(r["k"]), []).append(r)

  def cell(entries, key):
    values = [float(e[key]) for e in entries]
    if len(values) == 1:  # one seed: no spread to show
      return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

  lines = ["| model | " + " | ".join(f"k={k} GAP | k={k} mAP" for k in ks) + " |",
           "|---|" + "---|---|" * len(ks)]
  for (regime, loss, strategy), by_k in groups.items():
    if regime == "teacher":
      label, cells = "Teacher-Skyline (all frames)", [
          f"{cell(by_k[0], 'gap')} | {cell(by_k[0], 'map')}"] + [" | "] * (len(ks) - 1)
    else:
      label = (f"Baseline {strategy}-k" if regime == "baseline"
               else f"{regime.capitalize()}, {' + '.join(TERM_NAMES[t] for t in loss.split('_'))}"
               + ("" if strategy == "uniform" else f" ({strategy}-k)"))
      cells = [f"{cell(by_k[k], 'gap')} | {cell(by_k[k], 'map')}" if k in by_k else " | "
               for k in ks]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  seeds = sorted({r["seed"] for r in rows})
  lines.append(f"\nMean ± standard deviation over seeds {', '.join(seeds)}." if len(seeds) > 1
               else f"\nOne seed ({seeds[0]}): no spread.")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def plot(rows, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.5))
  series, teacher = {}, []
  for r in rows:
    if r["regime"] == "teacher":
      teacher.append(float(r["gap"]))
      continue
    label = (r["strategy"] if r["regime"] == "baseline" else f"{r['regime']} {r['loss']}" +
             ("" if r["strategy"] == "uniform" else f" {r['strategy']}"))
    series.setdefault(label, {}).setdefault(int(r["k"]), []).append(float(r["gap"]))
  ax.set_prop_cycle(color=plt.cm.tab20.colors)  # up to 20 distinct lines
  for label, by_k in series.items():
    ks = sorted(by_k)
    style = ("--^" if label.startswith("parallel") else ":s" if label.startswith("serial")
             else "-o")
    ax.plot(ks, [statistics.mean(by_k[k]) for k in ks], style, label=label, markersize=3)
  if teacher:
    ax.axhline(statistics.mean(teacher), color="black", linestyle="--", linewidth=0.8)
  ax.set_xlabel("frames seen by the student (k)")
  ax.set_ylabel("GAP@20")
  ax.set_title("Students with k frames (dashed line: teacher, all frames)")
  ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def load_rows(results_path):
  rows = []
  if os.path.exists(results_path):
    with open(results_path) as f:
      rows = list(csv.DictReader(f))
  if FLAGS.teachers_from:  # their skyline rows, for the table and the plot
    with open(os.path.join(FLAGS.teachers_from, "results.csv")) as f:
      rows = [r for r in csv.DictReader(f) if r["regime"] == "teacher" and
              r["seed"] in ([str(FLAGS.teacher_seed)] if FLAGS.teacher_seed else FLAGS.seeds)
              ] + rows
  return rows


def main(_):
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  train_files, eval_files = ensure_data(FLAGS.data_dir or os.path.join(FLAGS.output_dir, "data"))
  results_path = os.path.join(FLAGS.output_dir, "results.csv")
  done = load_rows(results_path)
  finished = {(r["regime"], r["loss"], r["strategy"], r["k"], r["seed"]) for r in done}
  new_file = not os.path.exists(results_path)
  with open(results_path, "a", newline="") as f:
    writer = csv.DictWriter(f, FIELDS)
    if new_file:
      writer.writeheader()
    for seed in map(int, FLAGS.seeds):
      teacher_dir = os.path.join(FLAGS.teachers_from or FLAGS.output_dir, "runs",
                                 f"teacher_s{FLAGS.teacher_seed or seed}")
      if FLAGS.teachers_from and not tf.train.latest_checkpoint(teacher_dir):
        raise app.UsageError(f"--teachers_from: {teacher_dir} has no trained teacher yet")
      for regime, loss, strategy, k in grid():
        teacher_missing = (regime == "teacher" and not FLAGS.teachers_from and
                           not tf.train.latest_checkpoint(teacher_dir))
        if (regime, loss, strategy, str(k), str(seed)) in finished and not teacher_missing:
          continue  # (a teacher whose checkpoint is gone is retrained: serial rows need it)
        run = base_run(k or None, "uniform" if regime == "teacher" else strategy)
        if regime == "serial":
          run = run_config_lib.with_teacher(run, regime, loss_weights(loss), teacher_dir)
        elif regime == "parallel":  # its teacher keeps the teacher's H-RNN block length
          run = run_config_lib.with_teacher(run, regime, loss_weights(loss),
                                            parallel_teacher=base_run(None, "uniform"))
        name = "teacher_s%d" % seed if regime == "teacher" else (
            f"{regime}_{loss}_{strategy}_k{k}_s{seed}")
        metrics, seconds = train_and_evaluate(
            run, os.path.join(FLAGS.output_dir, "runs", name), train_files, eval_files, seed)
        row = {"regime": regime, "loss": loss, "strategy": strategy, "k": k, "seed": seed,
               "gap": f"{metrics['gap']:.5f}", "map": f"{metrics['map']:.5f}",
               "hit_at_one": f"{metrics['hit_at_one']:.5f}", "seconds": f"{seconds:.1f}"}
        if (regime, loss, strategy, str(k), str(seed)) not in finished:
          writer.writerow(row)
          f.flush()
        logging.info("%s: GAP %.4f mAP %.4f (%.0f s)", name, metrics["gap"], metrics["map"],
                     seconds)
  done = load_rows(results_path)  # with the rows other processes added meanwhile
  write_table(done, os.path.join(FLAGS.output_dir, "table.md"))
  plot(done, os.path.join(FLAGS.output_dir, "gap_vs_k.png"))
  print(open(os.path.join(FLAGS.output_dir, "table.md")).read())


if __name__ == "__main__":
  app.run(main)
