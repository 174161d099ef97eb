"""Evaluates YouTube-8M predictions with the challenge metrics (Hit@1, PERR, GAP@k, mAP).

Score a Kaggle submission file against labelled TFRecords (video- or frame-level):

  python eval.py --submission_file=PRED.csv --eval_data_pattern='DIR/validate*.tfrecord' \
      [--metrics_json=OUT.json] [--num_classes=3862] [--top_k=20]

Checkpoint evaluation (--train_dir) arrives with the training loop; until then this binary
scores submission files only.
"""

import sys

from absl import app, flags, logging

from yt8m import outputs, readers, submission

flags.DEFINE_string("eval_data_pattern", "", "File glob (comma-separated globs allowed) of "
                    "the labelled TFRecords to evaluate on.")
flags.DEFINE_string("submission_file", "", "A Kaggle CSV (VideoId,LabelConfidencePairs) to "
                    "score against --eval_data_pattern.")
flags.DEFINE_string("metrics_json", "", "Also write the metrics to this JSON file.")
flags.DEFINE_integer("num_classes", readers.NUM_CLASSES_2018,
                     "Vocabulary size: 3862 (2018+ data) or 4716 (2017 data).")
flags.DEFINE_integer("top_k", 20, "Predictions per video used by GAP and mAP.")
flags.DEFINE_integer("batch_size", 1024, "Videos per batch.")
flags.DEFINE_bool("skip_bad_rows", False, "Skip malformed or duplicate submission rows "
                  "(counted and reported) instead of stopping.")
flags.DEFINE_bool("allow_id_mismatch", False, "Score even if some videos of the data have no "
                  "row (they predict nothing) or some rows have no video (ignored); counted.")
FLAGS = flags.FLAGS


def format_metrics(m: dict) -> str:
  return (f"Hit@1: {m['hit_at_one']:.4f} | PERR: {m['perr']:.4f} | GAP: {m['gap']:.4f} | "
          f"mAP: {m['map']:.4f} | videos: {m['num_videos']} | "
          f"classes with positives: {m['num_classes_with_positives']}")


def score_submission() -> dict:
  if not FLAGS.eval_data_pattern:
    raise app.UsageError("--eval_data_pattern is required")
  files = readers.list_files(FLAGS.eval_data_pattern)
  logging.info("Scoring %s against %d file(s).", FLAGS.submission_file, len(files))
  sub = submission.read_csv(FLAGS.submission_file, FLAGS.num_classes, FLAGS.skip_bad_rows)
  result, warnings = submission.score(sub, files, FLAGS.num_classes, FLAGS.top_k,
                                      FLAGS.batch_size, FLAGS.allow_id_mismatch)
  for message in sub.warnings + warnings:
    logging.warning("%s", message)
  if sub.warnings:
    logging.warning("skipped %d bad submission row(s)", len(sub.warnings))
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.submission_file:
    raise app.UsageError("--submission_file is required (checkpoint evaluation with "
                         "--train_dir is not available yet)")
  try:
    result = score_submission()
    if FLAGS.metrics_json:
      outputs.write_metrics_json(FLAGS.metrics_json, result)
  except (readers.DataError, submission.SubmissionError, FileExistsError, ValueError) as e:
    sys.exit(f"eval.py: error: {e}")
  print(format_metrics(result))


if __name__ == "__main__":
  app.run(main)
