"""`python -m yt8m`: lists the yt8m commands; `python -m yt8m COMMAND [flags]` runs one.

The commands are the console scripts of pyproject.toml (tests/test_packaging.py checks that
the two lists agree); each takes --help.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

# name: (module with run(), what it does). Console script = "yt8m-" + name.
COMMANDS = {
    "train": ("yt8m.cli.train", "train a model (the starter's train.py)"),
    "eval": ("yt8m.cli.eval", "evaluate checkpoints, or score a Kaggle CSV (eval.py)"),
    "inference": ("yt8m.cli.inference", "write a Kaggle CSV / model bundle (inference.py)"),
    "export": ("yt8m.cli.export", "export a SavedModel (export_model.py)"),
    "synthetic": ("yt8m.cli.synthetic", "write synthetic frame-level shards in the real format"),
    "study": ("yt8m.study", "run the study (its --help says what it does)"),  # yt8m.study:main
}


def available(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:
    return False


def listing() -> str:
  width = max(len(name) for name in COMMANDS) + len("yt8m-")
  lines = ["yt8m commands (each takes --help; also `python -m yt8m COMMAND [flags]`):", ""]
  for name, (module, summary) in COMMANDS.items():
    missing = "" if available(module) else f"  [not in this version: no {module}]"
    lines.append(f"  {'yt8m-' + name:<{width}}  {summary}{missing}")
  lines += ["", "From a checkout, the starter's scripts work too: python train.py / eval.py / "
            "inference.py / export_model.py."]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv if argv is None else argv
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(listing())
    return
  name = argv[1].removeprefix("yt8m-")
  if name not in COMMANDS:
    sys.exit(f"python -m yt8m: error: unknown command {argv[1]!r}\n\n{listing()}")
  module = COMMANDS[name][0]
  if not available(module):
    sys.exit(f"yt8m-{name}: error: not in this version of yt8m (no module {module})")
  sys.argv = [f"yt8m-{name}", *argv[2:]]
  from yt8m import _quiet
  _quiet.setup(sys.argv)  # before the command imports TensorFlow (yt8m.study is no CLI module)
  command = importlib.import_module(module)
  (command.main if name == "study" else command.run)()


def study() -> None:
  """The yt8m-study console script: runs yt8m.study, or says it is not in this version."""
  main(["yt8m", "study", *sys.argv[1:]])


if __name__ == "__main__":
  main()
