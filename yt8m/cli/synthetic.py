"""yt8m-synthetic (also `python -m yt8m.synthetic`): see yt8m/synthetic.py."""

from yt8m import synthetic
from yt8m.cli import app


def run() -> None:
  synthetic.FLAGS = synthetic.define_flags()
  app.run(synthetic.main, synthetic.__doc__,
          lambda argv: [app.format_group("synthetic flags", app.module_flags("yt8m.synthetic"))])
