"""Packaging: pyproject.toml and the requirements files agree, every command is declared, the
data files ship in the package, `python -m yt8m` lists the commands, quiet start-up."""

import logging
import pathlib
import tomllib

import pytest
from packaging.requirements import Requirement

import yt8m
from conftest import REPO
from yt8m import __main__ as yt8m_main
from yt8m import _quiet

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement_lines(name: str) -> dict[str, Requirement]:
  lines = (REPO / name).read_text().splitlines()
  requirements = [Requirement(line.split("#")[0]) for line in lines
                  if line.split("#")[0].strip()]
  return {r.name: r for r in requirements}


def declared() -> dict[str, Requirement]:
  project = PYPROJECT["project"]
  names = project["dependencies"] + project["optional-dependencies"]["test"]
  return {r.name: r for r in map(Requirement, names)}


@pytest.mark.parametrize("name,tensorflow", [("requirements.txt", "tensorflow-cpu"),
                                             ("requirements-gpu.txt", "tensorflow")])
def test_requirements_files_pin_what_pyproject_declares(name, tensorflow):
  pins, wanted = requirement_lines(name), declared()
  if tensorflow == "tensorflow":  # the GPU file: the same version of tensorflow[and-cuda]
    assert pins["tensorflow"].extras == {"and-cuda"}
    pins["tensorflow-cpu"] = pins.pop("tensorflow")
  assert set(pins) == set(wanted), f"{name} and pyproject.toml list different packages"
  for package, requirement in wanted.items():
    pin = pins[package]
    exact = [s.version for s in pin.specifier if s.operator == "=="]
    if exact:
      assert requirement.specifier.contains(exact[0]), f"{name}: {pin} vs pyproject {requirement}"
    else:
      assert pin.specifier == requirement.specifier, f"{name}: {pin} vs pyproject {requirement}"


def test_every_command_is_a_console_script():
  scripts = PYPROJECT["project"]["scripts"]
  assert set(scripts) == {"yt8m-" + name for name in yt8m_main.COMMANDS} == {
      "yt8m-train", "yt8m-eval", "yt8m-inference", "yt8m-export", "yt8m-synthetic",
      "yt8m-study"}
  for name, (module, _) in yt8m_main.COMMANDS.items():
    target = scripts["yt8m-" + name]
    # yt8m-study goes through the dispatcher, which says so cleanly while yt8m.study is missing.
    assert target == ("yt8m.__main__:study" if name == "study" else f"{module}:run")


def test_data_files_ship_with_the_package():
  package_data = PYPROJECT["tool"]["setuptools"]["package-data"]["yt8m"]
  shipped = {p.relative_to(REPO / "yt8m").as_posix()
             for pattern in package_data for p in (REPO / "yt8m").glob(pattern)}
  assert "data/segment_label_ids.csv" in shipped
  assert pathlib.Path(yt8m.SEGMENT_LABEL_IDS).read_text().startswith("Index\n")


def test_python_m_yt8m_lists_and_dispatches(capsys):
  yt8m_main.main(["yt8m"])
  listing = capsys.readouterr().out
  for name in yt8m_main.COMMANDS:
    assert f"  yt8m-{name} " in listing
  with pytest.raises(SystemExit, match="unknown command 'nope'"):
    yt8m_main.main(["yt8m", "nope"])


# What TensorFlow 2.21 writes to stderr at import (tensorflow-cpu, this machine), and lines
# that must stay.
BANNERS = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796161489.643446    4853 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors\n",
    "I0000 00:00:1796161489.761977    4853 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.\n",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.\n",
    "W0000 00:00:1796161489.9    4853 cuda_executor.cc:1] Could not find cuda drivers\n",
]
KEPT = ["E0000 00:00:1796161489.9    4853 cuda_executor.cc:1] failed call to cuInit\n",
        "train.py: error: --train_data_pattern is required\n",
        "Traceback (most recent call last):\n"]


def test_banners_are_recognised_and_nothing_else():
  assert all(_quiet.is_banner(line) for line in BANNERS)
  assert not any(_quiet.is_banner(line) for line in KEPT)


@pytest.mark.parametrize("argv,value", [
    (["x"], None), (["x", "-v", "1"], 1), (["x", "-v1"], 1), (["x", "--verbosity=2"], 2),
    (["x", "--verbosity", "0"], 0), (["x", "-v=-1"], -1), (["x", "--", "-v", "1"], None),
    (["x", "--verbosity=many"], None)])
def test_verbosity_is_read_before_flags_are_parsed(argv, value):
  assert _quiet.verbosity(argv) == value


def test_library_log_records_are_dropped_below_errors():
  keep = _quiet._DropLibraryRecords().filter

  def record(path, level=logging.INFO):
    return logging.LogRecord("absl", level, path, 1, "message", (), None)

  site = "/venv/lib/python3.11/site-packages"
  assert not keep(record(f"{site}/tensorflow/python/saved_model/fingerprinting_utils.py"))
  assert not keep(record(f"{site}/keras/src/export/saved_model.py", logging.WARNING))
  assert keep(record(f"{site}/tensorflow/python/framework/ops.py", logging.ERROR))
  assert keep(record(f"{site}/yt8m/eval_lib.py")) and keep(record("/repo/yt8m/train_lib.py"))
