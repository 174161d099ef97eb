r"""Exports a trained run as a SavedModel (see yt8m/export.py for the signatures).

  python export_model.py --train_dir=/tmp/yt8m_model --export_dir=/tmp/yt8m_export
"""

import sys

from absl import app, flags

from yt8m import eval_lib, export, flag_checks, run_config
from yt8m.cli import command

flags.DEFINE_string("train_dir", "", "Training run to export (its latest checkpoint).")
flags.DEFINE_string("checkpoint_file", "", "A specific checkpoint (default: the latest).")
flags.DEFINE_string("export_dir", "", "SavedModel directory to create (must not exist).")
flags.DEFINE_integer("top_k", 20, "Classes returned per video by the serving signature.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  import tensorflow as tf
  try:
    flag_checks.at_least(FLAGS, ("top_k",))
    if not FLAGS.train_dir or not FLAGS.export_dir:
      raise ValueError("--train_dir and --export_dir are required")
    if tf.io.gfile.exists(FLAGS.export_dir):
      raise ValueError(f"--export_dir {FLAGS.export_dir} exists; choose a new directory")
    run, model, checkpoint = eval_lib.load_model(FLAGS.train_dir, FLAGS.checkpoint_file or None)
    export.export_saved_model(model, run, FLAGS.export_dir, FLAGS.top_k)
    print(f"exported {checkpoint} to {FLAGS.export_dir}")
  except (run_config.RunConfigError, eval_lib.EvalError, ValueError) as e:
    sys.exit(f"export_model.py: error: {e}")


def run() -> None:
  """yt8m-export; python export_model.py from a checkout; python -m yt8m export."""
  command.run(main, __doc__, lambda argv: [
      command.format_group("export flags", command.module_flags(__name__))])


if __name__ == "__main__":
  run()
