"""docs/results/studies.md from the raw rows of several `python -m yt8m.study` runs.

  python scripts/study_report.py --output=docs/results/studies.md docs/results/studies/*.json

Each input is a study's results.json (or its output directory); the file name (without .json)
names the study. A `NAME.meta.json` beside it, if present, says what the study ran on:
{"world": ..., "data": ..., "command": ..., "wall_seconds": ...}. For each study: the GAP
table (teacher, and each student kind at each k, mean ± std over seeds), the teacher's
training vs validation GAP per epoch, the paper's shape claim by claim (yt8m.study.
shape_checks), and the compute the rows took. Then one line per claim across the studies.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags

flags.DEFINE_string("output", None, "The Markdown file to write.")
flags.mark_flag_as_required("output")
FLAGS = flags.FLAGS


def load(path: str) -> tuple[str, list[dict], dict]:
  """(name, rows, meta) of one study."""
  if os.path.isdir(path):
    name, path = os.path.basename(os.path.normpath(path)), os.path.join(path, "results.json")
  else:
    name = os.path.basename(path)[:-len(".json")]
  with open(path) as f:
    rows = json.load(f)
  meta_path = os.path.join(os.path.dirname(path), f"{name}.meta.json")
  meta = {}
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      meta = json.load(f)
  return name, rows, meta


def section(name: str, rows: list[dict], meta: dict) -> list[str]:
  from yt8m import study

  ks = sorted({r["k"] for r in rows if r["k"] is not None})
  lines = [f"## {name}", ""]
  for key in ("world", "data", "command", "note"):
    if key in meta:
      lines.append(f"- {key}: `{meta[key]}`" if key in ("data", "command") else
                   f"- {key}: {meta[key]}")
  train_seconds = sum(r["seconds"] for r in rows)
  wall = meta.get("wall_seconds")
  lines.append(f"- compute: {study._duration(train_seconds)} of training and validation over "
               f"{len(rows)} rows" + (f"; {study._duration(wall)} wall for the whole command"
                                      if wall else ""))
  lines += ["", "| model | " + " | ".join(["all frames"] + [f"k={k}" for k in ks]) + " |",
            "|---|" + "---|" * (len(ks) + 1)]
  for model in study.MODELS:
    mine = [r for r in rows if r["model"] == model]
    if mine:
      cells = [study._cell([r["gap"] for r in mine if r["k"] == k]) if any(
          r["k"] == k for r in mine) else "" for k in [None] + ks]
      lines.append(f"| {study._LABELS[model]} | " + " | ".join(cells) + " |")
  lines += ["", "GAP@20 on the eval files at the epoch of the best validation GAP (chosen "
            "epoch / epochs trained):", ""]
  for r in rows:
    lines.append(f"- {study.run_name(r)}: {r['gap']:.3f} (validation {r['val_gap']:.3f}, "
                 f"epoch {r['epochs']} / {r['epochs_trained']}, {study._duration(r['seconds'])})")
  for r in rows:
    if r["model"] == "teacher":
      lines += ["", f"Teacher seed {r['seed']}, training probe / validation GAP per epoch: "
                f"{study.teacher_curve(r)}."]
  lines += ["", "The paper's shape:", ""]
  lines += [f"- {'held' if held else '**failed**'}: {claim} ({detail})"
            for claim, held, detail in study.shape_checks(rows)]
  return lines + [""]


def main(argv):
  from yt8m import outputs, study

  studies = [load(p) for p in argv[1:] if not p.endswith(".meta.json")]  # a glob takes both
  if not studies:
    raise app.UsageError("give at least one results.json or study directory")
  lines = ["# Few-frames studies (`python -m yt8m.study`)", "",
           f"Generated from the raw rows by `python scripts/study_report.py "
           f"--output={FLAGS.output} STUDY.json ...` (results.json files or study "
           f"directories; a NAME.meta.json beside NAME.json describes it). One line per claim "
           f"and study:", "",
           "| claim | " + " | ".join(name for name, _, _ in studies) + " |",
           "|---|" + "---|" * len(studies)]
  verdicts = [{claim.split(": ", 1)[1]: held for claim, held, _ in study.shape_checks(rows)}
              for _, rows, _ in studies]
  claims = list(dict.fromkeys(c for v in verdicts for c in v))
  for claim in claims:
    lines.append(f"| {claim} | " + " | ".join(
        "" if claim not in v else ("held" if v[claim] else "**failed**") for v in verdicts)
        + " |")
  lines.append("")
  for name, rows, meta in studies:
    lines += section(name, rows, meta)
  with outputs.atomic_output(FLAGS.output, signature="# Few-frames studies") as f:
    f.write("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
