"""Writes Kaggle predictions with a trained model: the command line is yt8m/cli/inference.py (installed as yt8m-inference).

Kept so that the starter's command lines run from a checkout: python inference.py --flags.
"""

from yt8m.cli import inference

if __name__ == "__main__":
  inference.run()
