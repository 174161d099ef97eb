"""Building a run's models and restoring checkpoints into them: used by train, eval,
inference and export alike (so none of them needs the training loop)."""

from __future__ import annotations

import keras
import tensorflow as tf

from yt8m import frame_selection, models, outputs
from yt8m import run_config as run_config_lib
from yt8m.models import selector

CHECKPOINT_NAME = "model.ckpt"  # files model.ckpt-<step>.{index,data-*}, as the starter's


class CheckpointError(RuntimeError):
  """No checkpoint, or one that does not fit the model; the message names the path."""


class CheckpointGone(CheckpointError):
  """The checkpoint was deleted (by its trainer, keeping only its newest) before it was read."""


def build_model(run: run_config_lib.RunConfig) -> keras.Model:
  """The run's model with its weights created (Keras 3 builds on the first call), so that a
  checkpoint restore finds every variable. Call inside strategy.scope()."""
  model = models.build_model(run.model, run.num_classes, run.model_hparams)
  if run.frame_selection == frame_selection.LEARNED:
    model = selector.LearnedFrameSelection(
        model, run.student_frames, run.selector_hparams, run.feature_sizes,
        selector.scored_features(run.selector_hparams.selector_features, run.feature_names))
  dummy_outputs(model, run)
  check_checkpointable(model)
  return model


def dummy_outputs(model: keras.Model, run: run_config_lib.RunConfig) -> dict:
  """The model's outputs for one all-zero video of the run's input shape."""
  reader = run.reader_config()
  if reader.frame_features:
    shape = (1, reader.num_output_frames, reader.feature_dim)
  else:
    shape = (1, reader.feature_dim)
  return model(tf.zeros(shape), tf.ones([1], tf.int32), training=False)


def check_checkpointable(model: keras.Model) -> None:
  """Every weight must be reachable by tf.train.Checkpoint: Keras 3 tracks layers held in
  Python containers itself, but a checkpoint would silently skip them (and a restore could
  not notice)."""
  reachable = {id(t) for t in tf.train.TrackableView(model).descendants()}
  missing = [v.path for v in model.trainable_variables if id(v) not in reachable]
  if missing:
    raise TypeError(f"{type(model).__name__}: weights a checkpoint would not save: "
                    f"{', '.join(missing)} (hold sub-layers as attributes, not in a list)")


def restore(path: str, partial: bool = True, **objects) -> None:
  """Restores the named objects (model=..., teacher=...) from the checkpoint at `path` and
  fails with one line if any of their weights is not there, or the checkpoint vanished or is
  damaged. partial: the checkpoint may hold more (an optimizer's slots, a parallel teacher)
  than is asked for."""
  try:
    status = tf.train.Checkpoint(**objects).restore(path)
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:
    raise CheckpointError(f"checkpoint {path} does not fit the model: "
                          f"{str(e).splitlines()[0]}") from None
  except (tf.errors.OpError, OSError, IndexError) as e:  # a truncated file: IndexError
    if not tf.io.gfile.exists(path + ".index"):
      raise CheckpointGone(f"checkpoint {path} was deleted before it could be read") from None
    raise CheckpointError(f"checkpoint {path} is damaged or incomplete "
                          f"({outputs.error_detail(e)}); use another checkpoint or retrain"
                          ) from None
  if partial:
    status.expect_partial()


def init_target(model: keras.Model, path: str) -> keras.Model:
  """What --init_from=path restores into: the whole model, or, for a learned selection
  started from a run without one (e.g. its teacher), the selection's student (the scorer
  starts fresh)."""
  student = getattr(model, "student", None)
  if student is None:
    return model
  try:
    names = [name for name, _ in tf.train.list_variables(path)]
  except (tf.errors.OpError, ValueError):
    return model  # restore() names the unreadable checkpoint
  return model if any(n.startswith("model/student/") for n in names) else student


def latest_checkpoint(train_dir: str) -> str | None:
  return tf.train.latest_checkpoint(train_dir)


def load_model(train_dir: str, checkpoint_path: str | None = None,
               run: run_config_lib.RunConfig | None = None
               ) -> tuple[run_config_lib.RunConfig, keras.Model, str]:
  """Rebuilds the run's model from model_flags.json and restores a checkpoint (the latest
  by default) into it. Fails loudly if any model weight is not in the checkpoint."""
  run = run or run_config_lib.load(train_dir)
  path = checkpoint_path or latest_checkpoint(train_dir)
  if not path:
    raise CheckpointError(f"no checkpoint in {train_dir}; has train.py saved one yet?")
  model = build_model(run)
  restore(path, model=model)
  return run, model, path


def load_parallel_teacher(run: run_config_lib.RunConfig, checkpoint_path: str) -> keras.Model:
  """The teacher trained alongside a parallel-distilled student (same checkpoint)."""
  teacher = build_model(run.teacher)
  restore(checkpoint_path, teacher=teacher)
  return teacher
