r"""Evaluates YouTube-8M models with the challenge metrics (Hit@1, PERR, GAP@k, mAP).

Evaluate the checkpoints of a training run (the latest once, or each new one as it appears):

  python eval.py --train_dir=/tmp/yt8m_model --eval_data_pattern='DIR/validate*.tfrecord' \
      [--run_once] [--top_k=20] [--metrics_json=OUT.json]

Score a Kaggle submission file against labelled TFRecords (video- or frame-level):

  python eval.py --submission_file=PRED.csv --eval_data_pattern='DIR/validate*.tfrecord' \
      [--metrics_json=OUT.json] [--num_classes=3862]

A 2019 `Class,Segments` file is scored against segment-rated files with the 2019 metric
(mAP at 100,000 segments per class; yt8m/segment_scoring.py defines it).

The model, its features and hyper-parameters come from --train_dir/model_flags.json; model
or feature flags given here must agree with it (they are accepted so that starter command
lines keep working).
"""

import sys

from absl import app, flags, logging

from yt8m import eval_lib, flag_checks, outputs, readers, run_config, segment_scoring, submission
from yt8m.cli import command, common_flags

flags.DEFINE_string("train_dir", "/tmp/yt8m_model/", "The directory to load the model files "
                    "from. The tensorboard metrics files are also saved to this directory.")
flags.DEFINE_string("eval_data_pattern", "", "File glob defining the evaluation dataset in "
                    "tensorflow.SequenceExample format.")
flags.DEFINE_bool("segment_labels", False, "If set, then --eval_data_pattern must be "
                  "frame-level features (but with segment_labels).")
flags.DEFINE_integer("batch_size", 1024, "How many examples to process per batch.")
flags.DEFINE_integer("num_readers", 8, "Accepted for the starter's command lines; "
                     "unused: evaluation reads its files once, in order, with parallel "
                     "parsing.")
flags.DEFINE_bool("run_once", False, "Whether to run eval only once.")
flags.DEFINE_integer("top_k", 20, "How many predictions to output per video.")
flags.DEFINE_float("eval_interval_secs", 30, "Seconds between looks for a new checkpoint.")
flags.DEFINE_float("eval_timeout_secs", 3600, "Stop after this many seconds without a new "
                   "checkpoint (negative: never).")
flags.DEFINE_string("metrics_json", "", "Also write the metrics (of the last checkpoint "
                    "evaluated) to this JSON file.")
# Scoring a submission file.
flags.DEFINE_string("submission_file", "", "A Kaggle CSV (VideoId,LabelConfidencePairs, or "
                    "the 2019 Class,Segments) to score against --eval_data_pattern instead of "
                    "a checkpoint.")
flags.DEFINE_integer("num_classes", readers.NUM_CLASSES_2018,
                     "Vocabulary size: 3862 (2018+ data) or 4716 (2017 data).")
flags.DEFINE_bool("skip_bad_rows", False, "Skip malformed or duplicate submission rows "
                  "(counted and reported) instead of stopping.")
flags.DEFINE_bool("allow_id_mismatch", False, "Score even if some videos of the data have no "
                  "row (they predict nothing) or some rows have no video (ignored); counted.")
# Accepted for starter command lines; must agree with model_flags.json.
flags.DEFINE_bool("frame_features", False, "Checked against the training run.")
flags.DEFINE_string("model", "LogisticModel", "Checked against the training run.")
flags.DEFINE_string("feature_names", "mean_rgb", "Checked against the training run.")
flags.DEFINE_string("feature_sizes", "1024", "Checked against the training run.")
flags.DEFINE_string("label_loss", "CrossEntropyLoss", "Checked against the training run.")
FLAGS = flags.FLAGS


def format_metrics(m: dict) -> str:
  line = (f"Hit@1: {m['hit_at_one']:.4f} | PERR: {m['perr']:.4f} | GAP: {m['gap']:.4f} | "
          f"mAP: {m['map']:.4f}")
  if "loss" in m:
    line += f" | loss: {m['loss']:.4f}"
  return (line + f" | videos: {m['num_videos']} | "
          f"classes with positives: {m['num_classes_with_positives']}")


def score_submission(files) -> dict:
  logging.info("Scoring %s against %d file(s).", FLAGS.submission_file, len(files))
  if segment_scoring.is_segment_csv(FLAGS.submission_file):
    sub = segment_scoring.read_segment_csv(FLAGS.submission_file, FLAGS.num_classes,
                                           FLAGS.skip_bad_rows)
    ratings = segment_scoring.read_ratings(files, FLAGS.num_classes, FLAGS.batch_size)
    result, warnings = segment_scoring.score(sub, ratings)
  else:
    sub = submission.read_csv(FLAGS.submission_file, FLAGS.num_classes, FLAGS.skip_bad_rows)
    warning = submission.confidence_warning(FLAGS.submission_file, sub)
    if warning:
      logging.warning("%s", warning)
    result, warnings = submission.score(sub, files, FLAGS.num_classes, FLAGS.top_k,
                                        FLAGS.batch_size, FLAGS.allow_id_mismatch)
  for message in sub.warnings + warnings:
    logging.warning("%s", message)
  if sub.warnings:
    logging.warning("skipped %d bad submission row(s)", len(sub.warnings))
  return result


def check_against_run(run: run_config.RunConfig) -> None:
  """Flags given on the command line must not contradict the saved run."""
  saved = run.to_json()
  given = {name: FLAGS[name].value for name in
           ("frame_features", "model", "feature_names", "feature_sizes", "label_loss",
            "num_classes") if FLAGS[name].present}
  problems = [f"--{k}={v} (the run has {saved[k]!r})" for k, v in given.items()
              if str(v).replace(" ", "") != str(saved[k])]
  hparams = saved["model_hparams"]
  problems += [f"--{k}={v} (the run has {hparams[k]!r})"
               for k, v in common_flags.explicitly_set_model_flags().items()
               if k in hparams and hparams[k] != v]
  if problems:
    raise run_config.RunConfigError(
        f"flags contradict {run_config.path(FLAGS.train_dir)}: {'; '.join(problems)}")


def evaluate_checkpoints(files) -> dict:
  check_against_run(run_config.load(FLAGS.train_dir))
  timeout = None if FLAGS.eval_timeout_secs < 0 else FLAGS.eval_timeout_secs
  results = eval_lib.evaluation_loop(FLAGS.train_dir, files, FLAGS.batch_size, FLAGS.top_k,
                                     FLAGS.run_once, FLAGS.eval_interval_secs, timeout,
                                     FLAGS.segment_labels)
  if not results:
    raise eval_lib.EvalError(f"no checkpoint appeared in {FLAGS.train_dir}")
  return results[-1]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    outputs.exit_on_sigterm()
    flag_checks.at_least(FLAGS, ("top_k", "batch_size"))
    if FLAGS.metrics_json:
      outputs.check_output(FLAGS.metrics_json, outputs.is_metrics_json)
    files = flag_checks.data_files("eval_data_pattern", FLAGS.eval_data_pattern)
    result = score_submission(files) if FLAGS.submission_file else evaluate_checkpoints(files)
    if FLAGS.metrics_json:
      if "segment_map" in result:
        outputs.write_json(FLAGS.metrics_json, result, signature=outputs.is_metrics_json)
      else:
        outputs.write_metrics_json(FLAGS.metrics_json, result)
  except (readers.DataError, submission.SubmissionError, run_config.RunConfigError,
          eval_lib.EvalError, FileExistsError, ValueError) as e:
    sys.exit(f"eval.py: error: {e}")
  if "segment_map" in result:
    print(segment_scoring.format_metrics(result))
  elif "teacher" in result:
    print("teacher: " + format_metrics(result["teacher"]))
    print("student: " + format_metrics(result))
  else:
    print(format_metrics(result))


def run() -> None:
  """yt8m-eval; python eval.py from a checkout; python -m yt8m eval."""
  command.run(main, __doc__, lambda argv: [
      command.format_group("eval flags", command.module_flags(__name__)),
      *command.model_flag_groups(argv, common_flags.MODEL_FLAG_NAMES)])


if __name__ == "__main__":
  run()
