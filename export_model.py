"""Exports a trained run as a SavedModel: the command line is yt8m/cli/export.py (installed as yt8m-export).

Kept so that the starter's command lines run from a checkout: python export_model.py --flags.
"""

from yt8m.cli import export

if __name__ == "__main__":
  export.run()
