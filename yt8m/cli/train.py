r"""Trains a YouTube-8M model: the starter's train.py command line on TF2 / Keras 3.

  python train.py --frame_features --model=FrameLevelLogisticModel \
      --feature_names='rgb,audio' --feature_sizes='1024,128' \
      --train_data_pattern='DIR/train*.tfrecord' --train_dir=/tmp/yt8m_model --start_new_model

Every flag of the starter's train.py keeps its name, default and meaning. --batch_size is per
replica (the starter's per-tower batch): the global batch is batch_size x replicas. Runs on
the CPU, all local GPUs (MirroredStrategy, at most --num_gpu), a cluster named by TF_CONFIG
(MultiWorkerMirroredStrategy) or a TPU (--tpu). Resuming is the default: the latest
checkpoint in --train_dir is restored into the model built by the current code and flags.
"""

import dataclasses
import sys

import tensorflow as tf
from absl import app, flags, logging

from yt8m import distill, frame_selection, readers, run_config, train_lib
from yt8m.cli import command, common_flags
from yt8m.models import selector

# Dataset flags.
flags.DEFINE_string("train_dir", "/tmp/yt8m_model/", "The directory to save the model files in.")
flags.DEFINE_string("train_data_pattern", "", "File glob for the training dataset. If the "
                    "files refer to Frame Level features (i.e. tensorflow.SequenceExample), "
                    "then set --frame_features accordingly.")
flags.DEFINE_string("feature_names", "mean_rgb", "Name of the feature to use for training.")
flags.DEFINE_string("feature_sizes", "1024", "Length of the feature vectors.")
# Model flags.
flags.DEFINE_bool("frame_features", False, "If set, then --train_data_pattern must be "
                  "frame-level features. Otherwise, --train_data_pattern must be aggregated "
                  "video-level features. The model must also be set appropriately (i.e. to "
                  "read 3D batches VS 4D batches.")
flags.DEFINE_bool("segment_labels", False, "If set, then --train_data_pattern must be "
                  "frame-level features (but with segment_labels). Not supported for training "
                  "yet.")
flags.DEFINE_string("model", "LogisticModel", "Which architecture to use for the model. "
                    "Models are defined in yt8m/models.")
flags.DEFINE_bool("start_new_model", False, "If set, this will not resume from a checkpoint "
                  "and will instead create a new model instance (removing only the files "
                  "earlier runs wrote to --train_dir).")
# Training flags.
flags.DEFINE_integer("num_gpu", 1, "The maximum number of GPU devices to use for training. "
                     "Flag only applies if GPUs are installed")
flags.DEFINE_integer("batch_size", 1024, "How many examples to process per batch for "
                     "training (per replica).")
flags.DEFINE_string("label_loss", "CrossEntropyLoss", "Which loss function to use for "
                    "training the model.")
flags.DEFINE_float("regularization_penalty", 1.0, "How much weight to give to the "
                   "regularization loss (the label loss has a weight of 1).")
flags.DEFINE_float("base_learning_rate", 0.01, "Which learning rate to start with.")
flags.DEFINE_float("learning_rate_decay", 0.95, "Learning rate decay factor to be applied "
                   "every learning_rate_decay_examples.")
flags.DEFINE_float("learning_rate_decay_examples", 4000000, "Multiply current learning rate "
                   "by learning_rate_decay every learning_rate_decay_examples.")
flags.DEFINE_integer("num_epochs", 5, "How many passes to make over the dataset before "
                     "halting training.")
flags.DEFINE_integer("max_steps", None, "The maximum number of iterations of the training "
                     "loop.")
flags.DEFINE_integer("export_model_steps", 1000, "The period, in number of steps, with which "
                     "the model is checkpointed (and at the end of training).")
# Other flags.
flags.DEFINE_integer("num_readers", 8, "How many threads to use for reading input files.")
flags.DEFINE_string("optimizer", "AdamOptimizer", "What optimizer class to use.")
flags.DEFINE_float("clip_gradient_norm", 1.0, "Norm to clip gradients to (per tensor).")
flags.DEFINE_bool("log_device_placement", False, "Whether to write the device on which every "
                  "op will run into the logs on startup.")
# Flags the starter did not have.
flags.DEFINE_integer("num_classes", readers.NUM_CLASSES_2018,
                     "Vocabulary size: 3862 (2018+ data) or 4716 (2017 data).")
flags.DEFINE_integer("keep_checkpoints", 5, "How many recent checkpoints to keep.")
flags.DEFINE_integer("log_every_steps", 1, "Log a training line every N steps (and on every "
                     "metrics step).")
flags.DEFINE_integer("steps_per_execution", 1, "At most this many training steps per "
                     "compiled call between the steps that log, measure or checkpoint (the "
                     "host waits for the device only at those). On CPU it speeds up "
                     "feed-forward models (LogisticModel 1.5-3.3x) and slows recurrent ones "
                     "(H-RNN 0.3x): benchmarks/bench_train_loop.py, README.")
flags.DEFINE_bool("jit_compile", False, "Compile the model's forward and backward pass with "
                  "XLA (for accelerators; not every model's ops compile).")
flags.DEFINE_bool("allow_mixed_datasets", False, "Train on 2017 (video_id) and 2018+ (id) "
                  "files together, whose label ids index different vocabularies (refused "
                  "otherwise); eval and inference of the run then allow it too.")
flags.DEFINE_integer("shuffle_buffer", None, "Example shuffle buffer (default 4 batches).")
flags.DEFINE_integer("seed", None, "Seed for weights and data order (default: random).")
flags.DEFINE_string("tpu", "", "TPU address for TPUStrategy.")
flags.DEFINE_enum("mixed_precision", "", list(train_lib.MIXED_PRECISION_POLICIES), "Keras "
                  "mixed precision policy; mixed_float16 trains with a dynamic loss scale.")
# Few-frame students and distillation (docs/DISTILLATION.md).
flags.DEFINE_integer("student_frames", None, "The model sees only this many frames of each "
                     "video (k), chosen by --frame_selection before decoding. Without a "
                     "teacher this is the paper's 'model with k frames' baseline.")
flags.DEFINE_enum("frame_selection", "uniform", list(frame_selection.SELECTIONS),
                  "Which k frames a student sees (docs/DISTILLATION.md). learned: a small "
                  "scorer looks at every frame and picks one per stretch of the video, "
                  "trained with the student (docs/LEARNED_SELECTION.md).")
flags.DEFINE_bool("uniform_jitter", False, "Training a uniform student: each of its k frames "
                  "is drawn at random within its stretch of the video, afresh every epoch "
                  "(TSN-style segment sampling); evaluation keeps the evenly spaced grid. Also "
                  "jitters a learned selection's --selector_candidates grid.")
flags.DEFINE_integer("selector_hidden", 16, "--frame_selection=learned: hidden width of the "
                     "frame scorer.")
flags.DEFINE_float("selector_temperature", 1.0, "--frame_selection=learned: temperature of "
                   "the training-time draw within each stretch.")
flags.DEFINE_enum("selector_estimator", "straight_through", list(selector.ESTIMATORS),
                  "--frame_selection=learned: how the scorer gets its gradient (Gumbel-softmax "
                  "straight-through, or REINFORCE on the student's loss).")
flags.DEFINE_integer("selector_candidates", 0, "--frame_selection=learned: c > 0 reads only a "
                     "uniform grid of c * k candidate frames and the scorer picks among them "
                     "(reading and scoring cost c * k frames, not every frame); 0: every frame.")
flags.DEFINE_string("selector_features", "", "--frame_selection=learned: the frame features "
                    "the scorer reads, e.g. audio (128 of a frame's 1,152 bytes; inference then "
                    "dequantizes only those columns of every frame and the picked frames); "
                    "empty: all of them.")
flags.DEFINE_integer("selector_shortlist", 0, "--frame_selection=learned with "
                     "--selector_features: c > 0 adds a second stage; the first scorer keeps "
                     "the c best frames of each stretch and a scorer of every feature reads "
                     "only those k * c frames and picks one per stretch; 0: one stage.")
flags.DEFINE_string("teacher_dir", "", "Serial distillation: a trained teacher's --train_dir; "
                    "the teacher is frozen and only the student trains.")
flags.DEFINE_enum("distillation", "", ["", "serial", "parallel"], "parallel: teacher (all "
                  "frames, same --model and flags) and student train together; the teacher "
                  "learns from its own label loss only. serial: needs --teacher_dir (the "
                  "default when it is given).")
# The loss weights: one flag per distill.LossWeights field.
for _field in dataclasses.fields(distill.LossWeights):
  if "choices" in _field.metadata:
    flags.DEFINE_enum(_field.name, _field.default, list(_field.metadata["choices"]),
                      _field.metadata["help"])
  else:
    flags.DEFINE_float(_field.name, _field.default, _field.metadata["help"])
flags.DEFINE_integer("student_hrnn_block_frames", 0, "HierarchicalLstmModel students: frames "
                     "per block of the student (0: --hrnn_block_frames). The authors' student "
                     "had 5 blocks: k/5.")
flags.DEFINE_bool("share_teacher_head", False, "The student classifies with the teacher's "
                  "output layer (the paper's shared output layer; needed when the student "
                  "learns from L_rep alone): copied from a serial teacher, mirrored every step "
                  "from a parallel one, never trained by the student's losses.")
flags.DEFINE_bool("cache_teacher_outputs", True, "Serial distillation: compute the frozen "
                  "teacher's outputs once per training video (exact: the teacher runs in "
                  "inference mode) instead of at every step.")
flags.DEFINE_string("init_from", "", "A new run starts from the model weights of this "
                    "checkpoint or train_dir (e.g. fine-tuning a distilled student on L_CE).")
FLAGS = flags.FLAGS


def with_distillation(run: run_config.RunConfig) -> run_config.RunConfig:
  # A parallel teacher is the same model on every frame, with the teacher's block length.
  teacher = dataclasses.replace(run, student_frames=None, frame_selection="uniform",
                                selector_hparams=None)
  if FLAGS.student_hrnn_block_frames:
    if not hasattr(run.model_hparams, "hrnn_block_frames") or not run.student_frames:
      raise ValueError("--student_hrnn_block_frames is for HierarchicalLstmModel students "
                       "(--student_frames)")
    run = dataclasses.replace(run, model_hparams=dataclasses.replace(
        run.model_hparams, hrnn_block_frames=FLAGS.student_hrnn_block_frames))
  mode = FLAGS.distillation or ("serial" if FLAGS.teacher_dir else "")
  if not mode:
    if FLAGS.teacher_dir:
      raise ValueError("--teacher_dir needs --student_frames (serial distillation)")
    return run
  weights = distill.LossWeights(**{f.name: FLAGS[f.name].value
                                   for f in dataclasses.fields(distill.LossWeights)})
  return run_config.with_teacher(run, mode, weights, FLAGS.teacher_dir,
                                 parallel_teacher=teacher, share_head=FLAGS.share_teacher_head)


def selector_hparams() -> dict:
  if FLAGS.frame_selection != frame_selection.LEARNED:
    return {}
  if not FLAGS.student_frames:
    raise ValueError("--frame_selection=learned needs --student_frames (the k frames to pick)")
  return {"selector_hidden": FLAGS.selector_hidden,
          "selector_temperature": FLAGS.selector_temperature,
          "selector_estimator": FLAGS.selector_estimator,
          "selector_candidates": FLAGS.selector_candidates,
          "selector_features": FLAGS.selector_features,
          "selector_shortlist": FLAGS.selector_shortlist}


def jitter() -> bool:
  reason = FLAGS.uniform_jitter and run_config.why_no_jitter(
      FLAGS.student_frames, FLAGS.frame_selection, FLAGS.selector_candidates)
  if reason:
    raise ValueError(f"--uniform_jitter {reason}")
  return FLAGS.uniform_jitter


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  tf.debugging.set_log_device_placement(FLAGS.log_device_placement)
  if FLAGS.seed is not None:
    import keras
    keras.utils.set_random_seed(FLAGS.seed)
  logging.info("Tensorflow version: %s.", tf.__version__)
  try:
    if FLAGS.segment_labels:
      raise ValueError("--segment_labels training is not supported (segment labels are for "
                       "eval.py and inference.py)")
    names, sizes = readers.parse_feature_flags(FLAGS.feature_names, FLAGS.feature_sizes)
    run = run_config.RunConfig(
        model=FLAGS.model, feature_names=names, feature_sizes=sizes,
        frame_features=FLAGS.frame_features, label_loss=FLAGS.label_loss,
        num_classes=FLAGS.num_classes, student_frames=FLAGS.student_frames,
        frame_selection=FLAGS.frame_selection, uniform_jitter=jitter(),
        model_hparams=common_flags.model_hparams(FLAGS.model, sizes),
        selector_hparams=selector_hparams(),
        allow_mixed_id_keys=FLAGS.allow_mixed_datasets)
    run.reader_config()  # checks names/sizes and the frame settings
    run = with_distillation(run)
    init_from = FLAGS.init_from
    if init_from and tf.io.gfile.isdir(init_from):
      init_from = tf.train.latest_checkpoint(init_from) or ""
      if not init_from:
        raise ValueError(f"--init_from {FLAGS.init_from} has no checkpoint")
    if not FLAGS.train_data_pattern:
      raise ValueError("--train_data_pattern is required")
    files = readers.list_files(FLAGS.train_data_pattern)
    config = train_lib.TrainConfig(
        train_dir=FLAGS.train_dir, batch_size=FLAGS.batch_size, num_epochs=FLAGS.num_epochs,
        max_steps=FLAGS.max_steps, base_learning_rate=FLAGS.base_learning_rate,
        learning_rate_decay=FLAGS.learning_rate_decay,
        learning_rate_decay_examples=FLAGS.learning_rate_decay_examples,
        optimizer=FLAGS.optimizer, clip_gradient_norm=FLAGS.clip_gradient_norm,
        regularization_penalty=FLAGS.regularization_penalty,
        checkpoint_steps=FLAGS.export_model_steps, keep_checkpoints=FLAGS.keep_checkpoints,
        num_readers=FLAGS.num_readers, shuffle_buffer=FLAGS.shuffle_buffer,
        log_every=FLAGS.log_every_steps, steps_per_execution=FLAGS.steps_per_execution,
        jit_compile=FLAGS.jit_compile,
        seed=FLAGS.seed,
        mixed_precision=FLAGS.mixed_precision, start_new_model=FLAGS.start_new_model,
        init_from=init_from, cache_teacher=FLAGS.cache_teacher_outputs,
        hparams={f.name: f.value for f in command.module_flags(__name__)}
        | dataclasses.asdict(run.model_hparams))
    strategy = train_lib.make_strategy(FLAGS.tpu, FLAGS.num_gpu)
    train_lib.train(run, files, config, strategy)
  except (ValueError, readers.DataError, run_config.RunConfigError, train_lib.TrainError,
          FloatingPointError) as e:
    sys.exit(f"train.py: error: {e}")


def run() -> None:
  """yt8m-train; python train.py from a checkout; python -m yt8m train."""
  command.run(main, __doc__, lambda argv: [
      command.format_group("train flags", command.module_flags(__name__)),
      *command.model_flag_groups(argv, common_flags.MODEL_FLAG_NAMES)])


if __name__ == "__main__":
  run()
