"""Trains a YouTube-8M model: the command line is yt8m/cli/train.py (installed as yt8m-train).

Kept so that the starter's command lines run from a checkout: python train.py --flags.
"""

from yt8m.cli import train

if __name__ == "__main__":
  train.run()
