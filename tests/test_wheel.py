"""The wheel: built from the sources, installed into a new venv, every command run from
another directory (what `pip install .` gives a user)."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile

import pytest

from conftest import REPO
from yt8m import __main__ as yt8m_main

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _venv_with_the_wheel(tmp_path) -> pathlib.Path:
  """Builds the wheel from a copy of the sources (the checkout stays clean) and installs it,
  without its dependencies and offline, into a new venv that sees this interpreter's packages
  (TensorFlow & co.)."""
  source = tmp_path / "source"
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  shutil.copytree(REPO / "yt8m", source / "yt8m", ignore=ignore)
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(REPO / name, source / name)
  wheels = tmp_path / "wheels"
  build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
                         capture_output=True, text=True, timeout=300)
  assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
  (wheel,) = wheels.glob("yt8m-*.whl")
  with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
    entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
  assert {"yt8m/data/segment_label_ids.csv", "yt8m/cli/train.py", "yt8m/__main__.py"} <= names
  for script in PYPROJECT["project"]["scripts"]:
    assert f"{script} = ".encode() in entry_points
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True,
                 timeout=120)
  # If this interpreter is itself a venv, --system-site-packages reaches only the base
  # Python's packages: a .pth file adds this environment's (after the venv's own).
  python = venv / "bin" / "python"
  site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        capture_output=True, text=True, check=True).stdout.strip()
  (pathlib.Path(site) / "outer_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  listed = subprocess.run([python, "-m", "pip", "list"], capture_output=True, text=True).stdout
  assert re.search(r"^setuptools ", listed, re.M), "setuptools is missing: pip install -r requirements.txt"
  install = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", str(wheel)], capture_output=True, text=True,
                           timeout=300)
  assert install.returncode == 0, install.stderr[-2000:]
  return venv


@pytest.mark.slow
def test_the_wheel_installs_and_every_command_runs_from_another_directory(tmp_path):
  venv = _venv_with_the_wheel(tmp_path)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}

  def command(name, *args, ok=True):
    program = [str(venv / "bin" / "python"), *args] if name == "python" else [
        str(venv / "bin" / name), *args]
    proc = subprocess.run(program, capture_output=True, text=True, cwd=elsewhere, env=env,
                          timeout=600)
    if ok:
      assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    assert "oneDNN" not in proc.stderr and "cpu_feature_guard" not in proc.stderr, proc.stderr
    return proc

  where = command("python", "-c", "import yt8m; print(yt8m.__file__)").stdout
  assert where.startswith(str(venv)), where  # the installed copy, not the checkout
  listing = command("python", "-m", "yt8m").stdout
  assert all(f"yt8m-{name}" in listing for name in yt8m_main.COMMANDS)
  command("yt8m-synthetic", "--output_dir=data", "--num_videos=24", "--seed=1",
          "--top_classes=5", "--num_shards=2")
  command("yt8m-train", "--frame_features", "--model=FrameLevelLogisticModel",
          "--feature_names=rgb,audio", "--feature_sizes=1024,128",
          "--train_data_pattern=data/train*.tfrecord", "--train_dir=run", "--max_steps=2",
          "--batch_size=8", "--start_new_model")
  evaluation = command("yt8m-eval", "--train_dir=run", "--eval_data_pattern=data/train0000.tfrecord",
                       "--run_once")
  assert "GAP:" in evaluation.stdout
  assert re.search(r"^eval of step 2: 12 videos \(100% of the bytes\) \| .* videos/s \| "
                   r"\d+:\d\d elapsed$", evaluation.stderr, re.M), evaluation.stderr
  # The segment whitelist is the installed one, found from this other directory.
  command("yt8m-inference", "--train_dir=run", "--input_data_pattern=data/train*.tfrecord",
          "--segment_labels", "--output_file=segments.csv")
  assert (elsewhere / "segments.csv").read_text().startswith("Class,Segments\n")
  exported = command("yt8m-export", "--train_dir=run", "--export_dir=export")
  assert exported.stdout.splitlines() == ["exported run/model.ckpt-2 to export"]
  assert (elsewhere / "export" / "saved_model.pb").exists() and "fingerprint" not in exported.stderr
  study = command("yt8m-study", ok=False)
  if not yt8m_main.available("yt8m.study"):
    assert study.returncode != 0 and study.stderr.strip() == (
        "yt8m-study: error: not in this version of yt8m (no module yt8m.study)")
  usage = command("yt8m-train", "--help").stdout
  assert "\n      --train_data_pattern='DIR/train*.tfrecord' --train_dir=/tmp/yt8m_model" in usage
  assert "train flags:" in usage and "model flags (of every model: LogisticModel" in usage
