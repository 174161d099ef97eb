"""yt8m-synthetic (also `python -m yt8m.synthetic`): see yt8m/synthetic.py."""

from yt8m import synthetic
from yt8m.cli import command


def run() -> None:
  synthetic.FLAGS = synthetic._define_flags()  # the module's own command line
  command.run(synthetic.main, synthetic.__doc__, lambda argv: [
      command.format_group("synthetic flags", command.module_flags("yt8m.synthetic"))])
