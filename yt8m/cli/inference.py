r"""Writes Kaggle predictions for YouTube-8M videos with a trained model.

  python inference.py --train_dir=/tmp/yt8m_model --input_data_pattern='DIR/test*.tfrecord' \
      --output_file=predictions.csv [--top_k=20] [--output_model_tgz=model.tgz]
  python inference.py --input_model_tgz=model.tgz --input_data_pattern=... --output_file=...

The CSV has the header VideoId,LabelConfidencePairs and one row per input video, in input
order, with the --top_k labels by descending confidence ("%i %g" pairs). It is written to a
temporary file and renamed, so an interrupted run leaves no partial --output_file.
"""

import sys

from absl import app, flags, logging

import yt8m
from yt8m import eval_lib, flag_checks, inference_lib, outputs, readers, run_config, submission
from yt8m.cli import command

flags.DEFINE_string("train_dir", "", "The directory to load the model files from. We assume "
                    "that you have already run eval.py onto this, such that "
                    "model_flags.json exists.")
flags.DEFINE_string("input_data_pattern", "", "File glob defining the evaluation dataset in "
                    "tensorflow.SequenceExample format.")
flags.DEFINE_string("input_model_tgz", "", "If given, must be path to a .tgz file that was "
                    "written by this binary using flag --output_model_tgz.")
flags.DEFINE_string("untar_model_dir", "", "If --input_model_tgz is given, the .tgz file is "
                    "untarred into a new subdirectory of this directory (kept); by default "
                    "into a private temporary directory, removed at exit.")
flags.DEFINE_bool("segment_labels", False, "If set, then --input_data_pattern must be "
                  "frame-level features (but with segment_labels).")
flags.DEFINE_integer("segment_max_pred", 100000, "Limit total number of segment outputs per "
                     "entity.")
flags.DEFINE_string("segment_label_ids_file", yt8m.SEGMENT_LABEL_IDS,
                    "The file that contains the segment label ids (default: the 2019 list "
                    "installed with yt8m; no network).")
flags.DEFINE_string("output_file", "", "The file to save the predictions to.")
flags.DEFINE_string("output_model_tgz", "", "If given, should be a filename with a .tgz "
                    "extension, the model graph and checkpoint will be bundled in this gzip "
                    "tar. This file can be uploaded to Kaggle for the top 10 participants.")
flags.DEFINE_integer("top_k", 20, "How many predictions to output per video.")
flags.DEFINE_integer("batch_size", 512, "How many examples to process per batch.")
flags.DEFINE_integer("num_readers", 1, "Accepted for the starter's command lines; "
                     "unused: evaluation reads its files once, in order, with parallel "
                     "parsing.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    outputs.exit_on_sigterm()
    flag_checks.at_least(FLAGS, ("top_k", "batch_size"))
    inference_lib.check_outputs(FLAGS.output_file, FLAGS.output_model_tgz, FLAGS.segment_labels)
    if FLAGS.input_model_tgz and FLAGS.train_dir:
      raise ValueError("give either --train_dir or --input_model_tgz, not both")
    train_dir = FLAGS.train_dir
    if FLAGS.input_model_tgz:
      train_dir = inference_lib.extract_model_tgz(FLAGS.input_model_tgz, FLAGS.untar_model_dir)
    if not train_dir:
      raise ValueError("--train_dir (or --input_model_tgz) is required")
    if not FLAGS.output_file and not FLAGS.output_model_tgz:
      raise ValueError("--output_file is required")
    run, model, checkpoint = eval_lib.load_model(train_dir)
    logging.info("restoring variables from %s", checkpoint)
    if FLAGS.output_model_tgz:
      names = inference_lib.write_model_tgz(train_dir, checkpoint, FLAGS.output_model_tgz)
      logging.info("Wrote %s (%s).", FLAGS.output_model_tgz, ", ".join(names))
    if FLAGS.output_file:
      files = flag_checks.data_files("input_data_pattern", FLAGS.input_data_pattern)
      if FLAGS.segment_labels:
        whitelist = inference_lib.read_class_whitelist(FLAGS.segment_label_ids_file)
        rows = inference_lib.predict_segments(model, run, files, whitelist, FLAGS.batch_size,
                                              FLAGS.top_k, FLAGS.segment_max_pred)
        count = submission.write_segment_csv(FLAGS.output_file, rows)
      else:
        rows = inference_lib.predict_top_k(model, run, files, FLAGS.batch_size, FLAGS.top_k)
        count = submission.write_csv(FLAGS.output_file, rows)
      logging.info("Done with inference. The output file was written to %s (%d rows).",
                   FLAGS.output_file, count)
  except (readers.DataError, run_config.RunConfigError, eval_lib.EvalError, FileExistsError,
          FileNotFoundError, ValueError) as e:
    sys.exit(f"inference.py: error: {e}")


def run() -> None:
  """yt8m-inference; python inference.py from a checkout; python -m yt8m inference."""
  command.run(main, __doc__, lambda argv: [
      command.format_group("inference flags", command.module_flags(__name__))])


if __name__ == "__main__":
  run()
