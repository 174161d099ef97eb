"""Running a command: absl's app.run, with our own --help.

absl's --help shows only the flags of the `__main__` module (none for a console script, whose
`__main__` is pip's wrapper), hides the model flags under --helpfull among TensorFlow's, and
prints the usage of `__main__`'s docstring. Ours shows the command's usage as written, its
flags, and the model flags (of the --model given, or of every model, with the models that
use each), grouped; --helpfull stays absl's complete list.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Callable, Sequence

from absl import app, flags

FLAGS = flags.FLAGS
HELP_FLAGS = ("-h", "-?", "--help", "-help", "--helpshort", "-helpshort")
WIDTH = 96


def wants_help(argv: Sequence[str]) -> bool:
  args = list(argv[1:])
  args = args[:args.index("--")] if "--" in args else args
  return any(a in HELP_FLAGS or a.startswith(("--help=", "-help=")) for a in args)


def _given(argv: Sequence[str], name: str) -> str | None:
  """The value of --name on a command line, before parsing."""
  value = None
  for i, arg in enumerate(argv):
    for prefix in (f"--{name}", f"-{name}"):
      if arg == prefix and i + 1 < len(argv):
        value = argv[i + 1]
      elif arg.startswith(prefix + "="):
        value = arg[len(prefix) + 1:]
  return value


def format_flag(flag: flags.Flag, note: str = "") -> str:
  """`  --name=DEFAULT` (or `--[no]name (default: false)`), then the help text, indented."""
  if flag.flag_type() == "bool":
    head = f"--[no]{flag.name} (default: {str(flag.default).lower()})"
  elif flag.default is None:
    head = f"--{flag.name} (no default)"
  else:
    head = f"--{flag.name}={flag.default if flag.default != '' else chr(39) * 2}"
  text = " ".join((flag.help or "").split())
  if note:
    text += f" [{note}]"
  body = textwrap.fill(text, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)
  return f"  {head}\n{body}" if text else f"  {head}"


def format_group(title: str, flag_list: Sequence[flags.Flag],
                 notes: dict[str, str] | None = None) -> str:
  notes = notes or {}
  lines = [textwrap.fill(f"{title}:", WIDTH, subsequent_indent="  ")]
  lines += [format_flag(f, notes.get(f.name, "")) for f in sorted(flag_list, key=lambda f: f.name)]
  return "\n".join(lines)


def module_flags(module_name: str) -> list[flags.Flag]:
  """The flags a module defined (absl files a script run as __main__ under its path)."""
  key = sys.argv[0] if module_name == "__main__" else module_name
  return list(FLAGS.flags_by_module_dict().get(key, []))


def model_flag_groups(argv: Sequence[str], model_flag_names: Sequence[str]) -> list[str]:
  """The model flags: those of --model if it is given (and known), else all, each with the
  models that take it."""
  from yt8m import models

  used_by = {name: [m for m in models.MODELS if name in models.hparam_names(m)]
             for name in model_flag_names}
  chosen = _given(argv, "model")
  if chosen in models.MODELS:
    names = [n for n in model_flag_names if chosen in used_by[n]]
    if not names:
      return [f"model flags of {chosen}: none (it has no hyper-parameter flags)"]
    return [format_group(f"model flags of {chosen}", [FLAGS[n] for n in names])]
  notes = {n: "used by " + ", ".join(used_by[n]) if used_by[n] else "used by no model"
           for n in model_flag_names}
  title = (f"model flags (of every model: {', '.join(models.MODELS)}; --model=NAME --help "
           "shows one model's)")
  return [format_group(title, [FLAGS[n] for n in model_flag_names], notes)]


def help_text(doc: str, groups: Sequence[str]) -> str:
  usage = textwrap.dedent(doc).strip("\n")
  tail = textwrap.fill("Flags are given as --name=value (booleans as --name / --noname). "
                       "--helpfull lists every flag, absl's and TensorFlow's included.", WIDTH)
  return "\n\n".join([usage, *groups, LOGGING_HELP, tail]) + "\n"


LOGGING_HELP = """\
logging:
  --verbosity=0, -v 0
      0: our progress and log lines; 1: also debug lines, and TensorFlow's start-up lines and
      warnings (hidden by default); -1: warnings and errors only."""


def run(main: Callable[[list[str]], None], doc: str,
        groups: Callable[[Sequence[str]], Sequence[str]]) -> None:
  """Runs `main` under absl's app.run; --help prints `doc` and `groups(argv)` (formatted flag
  groups) and exits 0."""
  if wants_help(sys.argv):
    sys.stdout.write(help_text(doc, groups(sys.argv)))
    sys.exit(0)
  app.run(main)
