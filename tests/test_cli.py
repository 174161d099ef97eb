"""--help of the commands: usage as written, the command's flags and the model flags, grouped."""

from absl import flags

from yt8m.cli import command, common_flags

USAGE = r"""Does a thing.

  python thing.py --a=1 \
      --b=2
"""


def test_help_is_asked_for_before_flags_are_parsed():
  assert command.wants_help(["x", "--help"]) and command.wants_help(["x", "-h", "--a=1"])
  assert command.wants_help(["x", "--helpshort"])
  assert not command.wants_help(["x", "--helpfull"])  # absl's complete list
  assert not command.wants_help(["x", "--", "--help"])


def test_usage_keeps_its_lines_and_the_groups_follow():
  text = command.help_text(USAGE, ["group one:\n  --x=1"])
  assert text.startswith("Does a thing.\n\n  python thing.py --a=1 \\\n      --b=2\n\ngroup one:")
  assert "\nlogging:\n  --verbosity=0, -v 0\n" in text and text.endswith("included.\n")


def test_flags_are_formatted_one_per_entry():
  values = flags.FlagValues()
  flags.DEFINE_integer("steps", 5, "How many steps " * 12, flag_values=values)
  flags.DEFINE_bool("fast", False, "Go fast.", flag_values=values)
  flags.DEFINE_string("name", None, "A name.", flag_values=values)
  text = command.format_group("demo flags", [values["steps"], values["fast"], values["name"]])
  lines = text.splitlines()
  assert lines[:4] == ["demo flags:", "  --[no]fast (default: false)", "      Go fast.",
                       "  --name (no default)"]
  assert lines[5] == "  --steps=5" and all(len(line) <= command.WIDTH for line in lines)


def test_model_flags_of_one_model_or_of_all():
  (moe,) = command.model_flag_groups(["x", "--model=MoeModel"], common_flags.MODEL_FLAG_NAMES)
  assert moe.splitlines()[0] == "model flags of MoeModel:"
  assert "--moe_num_mixtures=2" in moe and "--lstm_cells" not in moe
  (everything,) = command.model_flag_groups(["x"], common_flags.MODEL_FLAG_NAMES)
  assert everything.startswith("model flags (of every model: LogisticModel, MoeModel,")
  for name in common_flags.MODEL_FLAG_NAMES:
    assert f"--{name}=" in everything or f"--[no]{name} " in everything
  assert "--lstm_cells=1024\n      Number of LSTM cells. [used by LstmModel, " in everything
  (logistic,) = command.model_flag_groups(["x", "--model", "LogisticModel"],
                                          common_flags.MODEL_FLAG_NAMES)
  assert logistic == "model flags of LogisticModel: none (it has no hyper-parameter flags)"
