"""The experiment scripts at toy scale: they run, and write what they promise."""

import csv

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow  # the scripts run as a user runs them, in fresh processes


def run_script(script, *args):
  return run_cli(script, *args)


def test_table1_grid_writes_csv_table_and_plot(tmp_path):
  out = tmp_path / "table1"
  args = ["scripts/table1.py", f"--output_dir={out}", "--model=LstmModel", "--lstm_cells=4",
          "--num_train=48", "--num_eval=24", "--top_classes=8", "--ks=3",
          "--strategies=uniform,last", "--regimes=serial,parallel", "--losses=rep_pred_ce",
          "--seeds=1", "--epochs=1", "--batch_size=16"]
  run_script(*args)
  rows = list(csv.DictReader(open(out / "results.csv")))
  assert [(r["regime"], r["strategy"], r["k"]) for r in rows] == [
      ("teacher", "all", "0"), ("baseline", "uniform", "3"), ("baseline", "last", "3"),
      ("serial", "uniform", "3"), ("parallel", "uniform", "3")]
  assert all(0 <= float(r["gap"]) <= 1 for r in rows)
  table = (out / "table.md").read_text()
  assert "Teacher-Skyline" in table and "Serial, L_rep + L_pred + L_CE" in table
  assert (out / "gap_vs_k.png").stat().st_size > 10_000
  # A second run resumes: nothing left to train, same rows; a teacher whose checkpoint is
  # gone is retrained (serial rows need it) without adding a row.
  import shutil
  shutil.rmtree(out / "runs" / "teacher_s1")
  run_script(*args)
  assert len(list(csv.DictReader(open(out / "results.csv")))) == 5
  assert (out / "runs" / "teacher_s1" / "checkpoint").exists()


def test_sanity_report_prints_gap_per_budget(tmp_path):
  proc = run_script("scripts/sanity_report.py", "--num_train=60", "--num_eval=30",
                    "--top_classes=8", "--ks=1,5", "--strategies=uniform,last")
  lines = [line.split() for line in proc.stdout.splitlines() if line[:4].strip().isdigit()
           or line.startswith(" all")]
  assert [(row[0], row[1]) for row in lines] == [("all", "-"), ("1", "uniform"), ("5", "uniform"),
                                           ("1", "last"), ("5", "last")]
  assert all(0 <= float(row[2]) <= 1 for row in lines)


def test_selector_study_and_selection_report(tmp_path):
  """The grid's teacher-student rows with a learned selection, from another grid's teacher,
  and the report of where the learned student looks."""
  grid = tmp_path / "grid"
  common = ["--model=LstmModel", "--lstm_cells=4", "--num_train=48", "--num_eval=24",
            "--top_classes=8", "--ks=3", "--epochs=1", "--batch_size=16", "--seeds=1"]
  run_script("scripts/table1.py", f"--output_dir={grid}", *common, "--strategies=",
             "--regimes=")
  study = tmp_path / "study"
  run_script("scripts/table1.py", f"--output_dir={study}", *common, "--strategies=",
             f"--data_dir={grid}/data", f"--teachers_from={grid}", "--regimes=serial",
             "--losses=rep_pred_ce", "--student_strategies=learned,uniform",
             "--selector_hidden=4")
  rows = list(csv.DictReader(open(study / "results.csv")))
  assert [(r["regime"], r["strategy"]) for r in rows] == [("serial", "learned"),
                                                          ("serial", "uniform")]
  table = (study / "table.md").read_text()
  assert "Teacher-Skyline" in table and "(learned-k)" in table
  report = tmp_path / "report"
  proc = run_script("scripts/selection_report.py",
                    f"--train_dir={study}/runs/serial_rep_pred_ce_learned_k3_s1",
                    f"--data_pattern={grid}/data/validate*.tfrecord", f"--output_dir={report}",
                    "--num_plots=2")
  import json
  stats = json.loads((report / "selection_stats.json").read_text())
  assert stats["k"] == 3 and stats["videos"] == 24 and '"learned"' in proc.stdout
  for name in ("learned", "uniform", "random"):
    assert 0 <= stats[name]["on_label"] <= 1 and 0 < stats[name]["coverage"] <= 1
  assert (report / "picks.png").stat().st_size > 10_000
