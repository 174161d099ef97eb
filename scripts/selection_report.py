"""Where a learned frame selector looks, against where each label is visible (synthetic data).

  python scripts/selection_report.py --train_dir=RUN --data_pattern='DATA/validate*.tfrecord' \
      --output_dir=OUT [--num_plots=4]

RUN is a --frame_selection=learned student; DATA are shards written by yt8m.synthetic, whose
per-frame `synthetic_visible_labels` say which labels each frame shows. For every video the
frames the model picks are compared with the uniform and random (evaluation seed) picks of the
same k:
  on_label   share of picked frames showing at least one of the video's labels
  coverage   share of the video's labels visible in at least one picked frame
Writes OUT/selection_stats.json (means over the videos) and OUT/picks.png (a timeline for the
first --num_plots videos: each label's visible frames, the scores, and the three pick sets).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf
from absl import app, flags

from yt8m import eval_lib, frame_selection, readers
from yt8m.models import selector

flags.DEFINE_string("train_dir", None, "A learned-selection student's run.")
flags.DEFINE_string("data_pattern", None, "Synthetic frame-level shards (with "
                    "synthetic_visible_labels).")
flags.DEFINE_string("output_dir", None, "Where selection_stats.json and picks.png go.")
flags.DEFINE_integer("num_plots", 4, "Videos drawn in picks.png.")
flags.DEFINE_integer("batch_size", 256, "Inference batch size.")
flags.mark_flags_as_required(["train_dir", "data_pattern", "output_dir"])
FLAGS = flags.FLAGS


def visible_labels(files) -> dict:
  """video id -> list over frames of the set of labels visible in that frame."""
  out = {}
  for path in files:
    for record in tf.data.TFRecordDataset(path):
      context, sequences = tf.io.parse_single_sequence_example(
          record, context_features={"id": tf.io.FixedLenFeature([], tf.string)},
          sequence_features={"synthetic_visible_labels": tf.io.VarLenFeature(tf.int64)})
      sparse = sequences["synthetic_visible_labels"]
      frames = [set() for _ in range(int(sparse.dense_shape[0]))]
      for (t, _), label in zip(sparse.indices.numpy(), sparse.values.numpy(), strict=True):
        frames[t].add(int(label))
      if not frames:
        raise ValueError(f"{path}: video {context['id'].numpy().decode()} has no "
                         "synthetic_visible_labels (not written by yt8m.synthetic)")
      out[context["id"].numpy().decode()] = frames
  return out


def pick_stats(picks, frames) -> tuple[float, float]:
  labels = set().union(*frames)
  shown = [frames[t] for t in picks]
  on_label = float(np.mean([bool(s) for s in shown]))
  coverage = len(set().union(*shown) & labels) / len(labels) if labels else 1.0
  return on_label, coverage


def main(_):
  files = readers.list_files(FLAGS.data_pattern)
  run, model, _ = eval_lib.load_model(FLAGS.train_dir)
  if run.frame_selection != frame_selection.LEARNED:
    raise app.UsageError(f"--train_dir {FLAGS.train_dir} is not a --frame_selection=learned run")
  k = run.student_frames
  truth = visible_labels(files)
  stats = {name: [] for name in ("learned", "uniform", "random")}
  examples = []
  for batch in readers.iterate_numpy(files, run.reader_config(), FLAGS.batch_size):
    out = model(batch["features"], batch["num_frames"], training=False)
    # Source frames: the model picks among the reader's frames (all, or a candidate grid).
    picked = selector.source_frames(batch["frame_indices"], out["frame_indices"]).numpy()
    scored = batch["frame_indices"]
    for row, vid in enumerate(batch["video_ids"]):
      vid = vid.decode()
      n = min(len(truth[vid]), run.max_frames)
      frames = truth[vid][:n]
      scores = np.full(n, np.nan)  # frames the scorer did not see stay empty in the plot
      scores[scored[row][scored[row] >= 0]] = out["selection_scores"].numpy()[row][
          scored[row] >= 0]
      seed = tf.stack([tf.constant(0, tf.int64), tf.strings.to_hash_bucket_fast(vid, 2**62)])
      choices = {"learned": picked[row][picked[row] >= 0],
                 "uniform": frame_selection.select_frames(n, k, "uniform").numpy(),
                 "random": frame_selection.select_frames(n, k, "random", seed=seed).numpy()}
      for name, picks in choices.items():
        stats[name].append(pick_stats(picks, frames))
      if len(examples) < FLAGS.num_plots:
        examples.append((vid, frames, scores, choices))
  summary = {"train_dir": FLAGS.train_dir, "k": k, "videos": len(stats["learned"]),
             **{name: {"on_label": float(np.mean([s[0] for s in v])),
                       "coverage": float(np.mean([s[1] for s in v]))}
                for name, v in stats.items()}}
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  with open(os.path.join(FLAGS.output_dir, "selection_stats.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print(json.dumps(summary, indent=1))
  plot(examples, k, os.path.join(FLAGS.output_dir, "picks.png"))


def plot(examples, k, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(len(examples), 1, figsize=(10, 2.2 * len(examples)), squeeze=False)
  for ax, (vid, frames, scores, choices) in zip(axes[:, 0], examples, strict=True):
    labels = sorted(set().union(*frames))
    for row, label in enumerate(labels):
      visible = [t for t, s in enumerate(frames) if label in s]
      ax.scatter(visible, [row] * len(visible), marker="s", s=6, color="tab:green")
    base = len(labels)
    for offset, (name, color) in enumerate((("learned", "tab:red"), ("uniform", "tab:blue"),
                                            ("random", "tab:gray"))):
      picks = choices[name]
      ax.scatter(picks, [base + offset] * len(picks), marker="|", s=120, color=color)
    ax.set_yticks(range(base + 3), [f"label {label}" for label in labels] +
                  ["learned", "uniform", "random"], fontsize=6)
    twin = ax.twinx()
    twin.plot(scores, color="tab:red", linewidth=0.6, alpha=0.5,
              marker="." if np.isnan(scores).any() else None)  # a candidate grid: points
    twin.set_yticks([])
    ax.set_xlim(-1, len(frames))
    ax.set_title(f"{vid}: green = label visible; ticks = picked frames (k={k}); "
                 "red line = scorer", fontsize=7)
  axes[-1, 0].set_xlabel("frame")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


if __name__ == "__main__":
  app.run(main)
