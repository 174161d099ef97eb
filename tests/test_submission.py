"""Kaggle CSV: writing, strict reading, scoring, and eval.py --submission_file."""

import json

import numpy as np
import pytest

from conftest import example, run_cli, sequence_example, write_records
from yt8m import outputs, submission


@pytest.fixture
def data(tmp_path):
  """Three labelled videos over 5 classes: a video-level and a frame-level file."""
  a = write_records(tmp_path / "a.tfrecord", [example("v0", (0, 2)), example("v1", (1,))])
  b = write_records(tmp_path / "b.tfrecord", [sequence_example("v2", labels=(4,))])
  return [a, b]


def write(tmp_path, lines, name="sub.csv"):
  path = tmp_path / name
  path.write_text("\n".join([submission.HEADER] + lines) + "\n")
  return str(path)


def test_write_then_read_round_trip(tmp_path):
  path = str(tmp_path / "out.csv")
  n = submission.write_csv(path, [("a", [3, 1], [0.9, 1e-7]), ("b", [], [])])
  assert n == 2
  assert open(path).read().splitlines() == [submission.HEADER, "a,3 0.9 1 1e-07", "b,"]
  sub = submission.read_csv(path, num_classes=5)
  np.testing.assert_array_equal(sub.predictions["a"][0], [3, 1])
  assert sub.predictions["b"][0].size == 0


@pytest.mark.slow
def test_scores_match_the_metric_definitions(tmp_path, data):
  path = write(tmp_path, ["v0,2 0.9 0 0.8 1 0.1", "v1,0 0.7 1 0.6", "v2,3 0.5"])
  result, warnings = submission.score(submission.read_csv(path, 5), data, num_classes=5)
  assert warnings == []
  assert result["num_videos"] == 3
  assert result["hit_at_one"] == pytest.approx(1 / 3)
  # Pooled ranking: .9+ .8+ .7- .6+ .5- .1- over 4 positives (v2's label 4 never predicted).
  assert result["gap"] == pytest.approx((1 + 1 + 3 / 4) / 4)
  assert result["perr"] == pytest.approx((1 + 0 + 0) / 3)


@pytest.mark.slow
def test_top_k_limits_each_video(tmp_path, data):
  path = write(tmp_path, ["v0,1 0.9 0 0.8 2 0.7", "v1,1 0.5", "v2,4 0.4"])
  sub = submission.read_csv(path, 5)
  full, _ = submission.score(sub, data, num_classes=5, top_k=20)
  top1, _ = submission.score(sub, data, num_classes=5, top_k=1)
  assert top1["gap"] < full["gap"]


@pytest.mark.parametrize("line,why", [
    ("v0,2 0.9 0", "3 values after the id"),
    ("v0,x 0.9", "a label is not an integer"),
    ("v0,2 high", "a confidence is not a number"),
    ("v0,7 0.9", "label 7 is outside"),
    ("v0,2 nan", "not finite"),
    ("v0,2 0.9 2 0.8", "a label appears twice"),
    ("just-an-id", "expected '<VideoId>,"),
])
def test_malformed_lines_are_named(tmp_path, line, why):
  path = write(tmp_path, ["v1,1 0.5", line])
  with pytest.raises(submission.SubmissionError, match=rf"sub.csv: line 3: .*{why}"):
    submission.read_csv(path, 5)
  skipped = submission.read_csv(path, 5, skip_bad_rows=True)
  assert list(skipped.predictions) == ["v1"] and len(skipped.warnings) == 1


@pytest.mark.slow
def test_duplicates_header_and_id_mismatches(tmp_path, data):
  path = write(tmp_path, ["v0,1 0.5", "v1,1 0.5", "v0,2 0.5"])
  with pytest.raises(submission.SubmissionError, match="line 4: duplicate VideoId 'v0' "
                     r"\(first on line 2\)"):
    submission.read_csv(path, 5)
  bad_header = tmp_path / "h.csv"
  bad_header.write_text("id,pairs\nv0,1 0.5\n")
  with pytest.raises(submission.SubmissionError, match="line 1: expected the header"):
    submission.read_csv(str(bad_header), 5)
  partial = submission.read_csv(write(tmp_path, ["v0,0 0.9", "zz,1 0.3"]), 5)
  with pytest.raises(submission.SubmissionError, match="2 video.* missing from the submission"):
    submission.score(partial, data, num_classes=5)
  result, warnings = submission.score(partial, data, num_classes=5, allow_id_mismatch=True)
  assert result["num_videos"] == 3 and len(warnings) == 2
  assert "in the submission but not in the data, e.g. 'zz'" in warnings[1]


def test_outputs_are_atomic_and_never_replace_foreign_files(tmp_path):
  path = tmp_path / "notes.txt"
  path.write_text("my notes")
  with pytest.raises(FileExistsError, match="not an earlier yt8m output"):
    submission.write_csv(str(path), [("a", [1], [0.5])])
  assert path.read_text() == "my notes"
  target = tmp_path / "p.csv"
  with pytest.raises(RuntimeError):
    with outputs.atomic_output(str(target), submission.HEADER) as f:
      f.write("partial")
      raise RuntimeError("killed")
  assert list(tmp_path.iterdir()) == [path]  # no partial file, no temporary left behind


def run_eval(*args):
  return run_cli("eval.py", *args, check=False)


@pytest.mark.slow
def test_eval_cli_scores_and_writes_json(tmp_path, data):
  sub = write(tmp_path, ["v0,2 0.9 0 0.8", "v1,1 0.7", "v2,4 0.5"])
  out = tmp_path / "m.json"
  proc = run_eval(f"--submission_file={sub}", f"--eval_data_pattern={tmp_path}/*.tfrecord",
                  "--num_classes=5", f"--metrics_json={out}")
  assert proc.returncode == 0, proc.stderr
  assert "GAP: 1.0000" in proc.stdout
  metrics = json.loads(out.read_text())
  assert set(metrics) == {"hit_at_one", "perr", "gap", "map", "num_videos"}
  assert metrics["num_videos"] == 3 and metrics["map"] == 1.0
  # Re-running replaces our own earlier output.
  assert run_eval(f"--submission_file={sub}", f"--eval_data_pattern={tmp_path}/*.tfrecord",
                  "--num_classes=5", f"--metrics_json={out}").returncode == 0


@pytest.mark.slow
def test_eval_cli_errors_are_one_clear_line(tmp_path, data):
  sub = write(tmp_path, ["v0,2 0.9", "v0,2 0.9"])
  proc = run_eval(f"--submission_file={sub}", f"--eval_data_pattern={tmp_path}/*.tfrecord",
                  "--num_classes=5")
  assert proc.returncode != 0
  assert "eval.py: error: " in proc.stderr and "duplicate VideoId 'v0'" in proc.stderr
  proc = run_eval(f"--submission_file={sub}", f"--eval_data_pattern={tmp_path}/none*.tfrecord")
  assert proc.returncode != 0 and "no files match" in proc.stderr
