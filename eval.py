"""Evaluates YouTube-8M models or scores a Kaggle CSV: the command line is yt8m/cli/eval.py (installed as yt8m-eval).

Kept so that the starter's command lines run from a checkout: python eval.py --flags.
"""

from yt8m.cli import eval

if __name__ == "__main__":
  eval.run()
