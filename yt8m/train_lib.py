"""The training loop: tf.distribute, a compiled step, checkpoints, TensorBoard. No model.fit.

Order of business (big_vision's): strategy -> run config -> data -> model, optimizer and
checkpoint under strategy.scope() -> restore -> compiled step -> loop (log, summaries,
checkpoints).

Batch sizes follow the starter: --batch_size is per replica (its "towers"), so the global
batch is batch_size x replicas, and the learning rate decays every
learning_rate_decay_examples examples of that global batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api

from yt8m import distill, frame_selection, losses, metrics, models, readers
from yt8m import run_config as run_config_lib
from yt8m.models import selector

CHECKPOINT_NAME = "model.ckpt"  # files model.ckpt-<step>.{index,data-*}, as the starter's


class TrainError(RuntimeError):
  """A problem with the run's setup (directory, flags, cluster); the message says which."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  train_dir: str
  batch_size: int = 1024  # per replica
  num_epochs: int = 5
  max_steps: int | None = None
  base_learning_rate: float = 0.01
  learning_rate_decay: float = 0.95
  learning_rate_decay_examples: float = 4_000_000
  optimizer: str = "AdamOptimizer"
  clip_gradient_norm: float = 1.0
  regularization_penalty: float = 1.0
  checkpoint_steps: int = 1000
  keep_checkpoints: int = 5
  num_readers: int = 8
  shuffle_buffer: int | None = None
  log_every: int = 1
  metrics_every: int = 10
  seed: int | None = None
  mixed_precision: str = ""  # "" or "mixed_bfloat16"
  start_new_model: bool = False
  init_from: str = ""  # a new run starts from this checkpoint's model weights (fine-tuning)
  cache_teacher: bool = True  # serial: compute the frozen teacher's outputs once per video
  hparams: dict = dataclasses.field(default_factory=dict)  # logged to TensorBoard


# ------------------------------------------------------------------------------- strategy


def make_strategy(tpu: str = "", num_gpu: int | None = None,
                  devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
  """TPUStrategy with --tpu; MultiWorkerMirroredStrategy when TF_CONFIG names a cluster;
  MirroredStrategy over the local GPUs (at most num_gpu) or the given devices; else one CPU."""
  if tpu:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster")
  if cluster:
    if "ps" in cluster or "master" in cluster:
      raise TrainError("TF_CONFIG: parameter servers and the 'master' task type of the TF1 "
                       "starter are not supported; list the machines as 'chief'/'worker' "
                       "(synchronous MultiWorkerMirroredStrategy)")
    return tf.distribute.MultiWorkerMirroredStrategy()
  if devices:
    return tf.distribute.MirroredStrategy(list(devices))
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    gpus = gpus[:num_gpu] if num_gpu else gpus
    logging.info("Using the following GPUs to train: %s", [g.name for g in gpus])
    return tf.distribute.MirroredStrategy([g.name for g in gpus])
  logging.info("No GPUs found. Training on CPU.")
  return tf.distribute.OneDeviceStrategy("/cpu:0")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  return resolver.task_type == "chief" or (
      resolver.task_type == "worker" and resolver.task_id == 0 and
      "chief" not in resolver.cluster_spec().as_dict())


# ------------------------------------------------------------------------ train directory

# Everything train.py and eval.py write; --start_new_model removes only these.
_OWN_FILES = re.compile(r"^(checkpoint|model_flags\.json|events\.out\.tfevents\..*|" +
                        re.escape(CHECKPOINT_NAME) + r"-\d+\.(index|data-\d+-of-\d+))$")


def prepare_train_dir(train_dir: str, start_new_model: bool) -> None:
  """Creates train_dir, checks it is writable, and for a new model removes what earlier
  yt8m runs wrote there (checkpoints, events, model_flags.json): never any other file."""
  try:
    tf.io.gfile.makedirs(train_dir)
    probe = os.path.join(train_dir, f".yt8m-write-test-{os.getpid()}")
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("ok")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    raise TrainError(f"--train_dir {train_dir} is not writable: {e}") from None
  if not start_new_model:
    return
  removed = 0
  for folder in (train_dir, os.path.join(train_dir, "eval")):
    if not tf.io.gfile.isdir(folder):
      continue
    for name in tf.io.gfile.listdir(folder):
      if _OWN_FILES.match(name):
        tf.io.gfile.remove(os.path.join(folder, name))
        removed += 1
  logging.info("--start_new_model: removed %d file(s) of an earlier run from %s", removed,
               train_dir)


# ----------------------------------------------------------------------------- optimizer


class StarterDecay(keras.optimizers.schedules.LearningRateSchedule):
  """base_lr * decay ** floor(examples_seen / decay_examples), examples_seen = step * batch."""

  def __init__(self, base_learning_rate, decay, decay_examples, global_batch_size):
    self.base_learning_rate = base_learning_rate
    self.decay = decay
    self.decay_examples = decay_examples
    self.global_batch_size = global_batch_size

  def __call__(self, step):
    examples = tf.cast(step, tf.float64) * self.global_batch_size
    exponent = tf.floor(examples / self.decay_examples)
    return tf.cast(self.base_learning_rate * tf.pow(tf.cast(self.decay, tf.float64), exponent),
                   tf.float32)

  def get_config(self):
    return dict(base_learning_rate=self.base_learning_rate, decay=self.decay,
                decay_examples=self.decay_examples, global_batch_size=self.global_batch_size)


class _PresummedGradients:
  """The train step sums the replicas' gradients itself (so that clipping sees the whole
  batch's gradient, as the starter's); this stops Keras from summing them a second time."""

  def _all_reduce_sum_gradients(self, grads_and_vars):
    return list(grads_and_vars)


# The starter's tf.train class names, and Keras names, to Keras optimizers. TF1's Adam used
# epsilon 1e-8 (Keras defaults to 1e-7).
_OPTIMIZERS = {
    "AdamOptimizer": (keras.optimizers.Adam, {"epsilon": 1e-8}),
    "GradientDescentOptimizer": (keras.optimizers.SGD, {}),
    "AdagradOptimizer": (keras.optimizers.Adagrad, {}),
    "AdadeltaOptimizer": (keras.optimizers.Adadelta, {}),
    "RMSPropOptimizer": (keras.optimizers.RMSprop, {}),
    "FtrlOptimizer": (keras.optimizers.Ftrl, {}),
    "Adam": (keras.optimizers.Adam, {}),
    "AdamW": (keras.optimizers.AdamW, {}),
    "SGD": (keras.optimizers.SGD, {}),
    "RMSprop": (keras.optimizers.RMSprop, {}),
    "Adagrad": (keras.optimizers.Adagrad, {}),
    "Lion": (keras.optimizers.Lion, {}),
}


def make_optimizer(name: str, learning_rate) -> keras.optimizers.Optimizer:
  if name not in _OPTIMIZERS:
    raise ValueError(f"unknown --optimizer {name!r}; choose one of {', '.join(_OPTIMIZERS)}")
  cls, kwargs = _OPTIMIZERS[name]
  presummed = type(cls.__name__, (_PresummedGradients, cls), {})
  return presummed(learning_rate=learning_rate, **kwargs)


# ---------------------------------------------------------------------------------- model


def build_model(run: run_config_lib.RunConfig) -> keras.Model:
  """The run's model with its weights created (Keras 3 builds on the first call), so that a
  checkpoint restore finds every variable (deps.md P3, P6). Call inside strategy.scope()."""
  model = models.build_model(run.model, run.num_classes, **run.model_hparams)
  if run.frame_selection == frame_selection.LEARNED:
    model = selector.LearnedFrameSelection(model, run.student_frames, **run.selector_hparams)
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


def check_same_head(teacher: keras.Model, student: keras.Model) -> None:
  """--share_teacher_head needs the same classifier on the same representation size."""
  heads = [getattr(m, "classifier", None) for m in (teacher, student)]
  if any(h is None for h in heads) or [w.shape for w in heads[0].weights] != [
      w.shape for w in heads[1].weights]:
    raise ValueError("--share_teacher_head needs teacher and student of one family and size "
                     "(the same classifier on the same representation)")


def check_checkpointable(model: keras.Model) -> None:
  """Every weight must be reachable by tf.train.Checkpoint: Keras 3 tracks layers held in
  Python containers itself, but a checkpoint would silently skip them (and a restore could
  not notice)."""
  reachable = {id(t) for t in tf.train.TrackableView(model).descendants()}
  missing = [v.path for v in model.trainable_variables if id(v) not in reachable]
  if missing:
    raise TypeError(f"{type(model).__name__}: weights a checkpoint would not save: "
                    f"{', '.join(missing)} (hold sub-layers as attributes, not in a list)")


def restore(checkpoint: tf.train.Checkpoint, path: str) -> None:
  """Restores into built objects and fails loudly if anything in them was not restored."""
  checkpoint.restore(path).assert_existing_objects_matched()


# ----------------------------------------------------------------------------------- data


_STEP_KEYS = ("features", "num_frames", "labels")
_TEACHER_KEYS = ("teacher_features", "teacher_num_frames", "frame_indices")


class TeacherCache:
  """A frozen teacher's outputs for every training video, computed once (serial runs).

  The teacher runs in inference mode, so its outputs for a video never change: one pass
  replaces a teacher forward over all frames at every step, and the student's reader decodes
  only its k frames. Looked up by video id in the input pipeline.
  """
  KEYS = ("representation", "predictions", "intermediates", "intermediate_mask")

  def __init__(self, teacher: keras.Model, teacher_run: run_config_lib.RunConfig,
               files: Sequence[str], batch_size: int = 256):
    predict = tf.function(lambda f, n: teacher(f, n, training=False))
    ids, columns = [], {}
    for batch in readers.iterate_numpy(files, teacher_run.reader_config(), batch_size):
      out = predict(batch["features"], batch["num_frames"])
      ids.extend(batch["video_ids"].tolist())
      for key in self.KEYS:
        if key in out:
          columns.setdefault(key, []).append(tf.cast(out[key], tf.float32).numpy())
    if len(set(ids)) != len(ids):
      raise ValueError("the training data repeats video ids; the teacher cache needs unique "
                       "ids (pass --nocache_teacher_outputs)")
    self.num_videos = len(ids)
    self.index = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids),
                                                                        dtype=tf.int64)), -1)
    # Host-side variables: the input pipeline captures them by reference (no huge constants).
    with tf.device("/cpu:0"):
      self.values = {key: tf.Variable(np.concatenate(parts), trainable=False)
                     for key, parts in columns.items()}

  def lookup(self, video_ids: tf.Tensor) -> dict:
    rows = self.index.lookup(video_ids)
    return {f"teacher_{key}": tf.gather(value, rows) for key, value in self.values.items()}


def _training_dataset(strategy, files, reader, config: TrainConfig, global_batch: int,
                      repeat: bool, teacher_cache: TeacherCache | None = None):
  # The starter trained on the final smaller batch too; TPUs need static shapes.
  drop_remainder = isinstance(strategy, tf.distribute.TPUStrategy)

  def dataset_fn(ctx: tf.distribute.InputContext):
    shard_files = list(files)
    shard = None
    if ctx.num_input_pipelines > 1:
      if len(files) >= ctx.num_input_pipelines:
        shard_files = shard_files[ctx.input_pipeline_id::ctx.num_input_pipelines]
      else:
        shard = (ctx.num_input_pipelines, ctx.input_pipeline_id)
    ds = readers.build_dataset(
        shard_files, reader, ctx.get_per_replica_batch_size(global_batch), training=True,
        num_epochs=None if repeat else 1, shuffle_buffer=config.shuffle_buffer,
        num_readers=config.num_readers, drop_remainder=drop_remainder, seed=config.seed,
        shard=shard)
    # Strings cannot go to accelerators; the step needs only these.
    keys = _STEP_KEYS + (_TEACHER_KEYS if reader.teacher_frames else ())
    if teacher_cache is not None:
      return ds.map(lambda b: {**{k: b[k] for k in keys + ("frame_indices",)},
                               **teacher_cache.lookup(b["video_ids"])})
    return ds.map(lambda b: {k: b[k] for k in keys})

  return strategy.distribute_datasets_from_function(dataset_fn)


# ----------------------------------------------------------------------------------- loop


def train(run: run_config_lib.RunConfig, train_files: Sequence[str], config: TrainConfig,
          strategy: tf.distribute.Strategy | None = None) -> dict:
  """Trains (or resumes) the run in config.train_dir. Returns the final step, the last
  losses and the trained model."""
  strategy = strategy or make_strategy()
  chief = is_chief(strategy)
  multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
  if multi_worker and not config.max_steps:
    raise TrainError("multi-worker training needs --max_steps (workers must run the same "
                     "number of steps; their shards need not hold the same number of videos)")
  if config.mixed_precision:
    keras.mixed_precision.set_global_policy(config.mixed_precision)
  replicas = strategy.num_replicas_in_sync
  global_batch = config.batch_size * replicas
  logging.info("Using batch size of %d for training (%d per replica x %d).", global_batch,
               config.batch_size, replicas)
  logging.info("Number of training files: %d.", len(train_files))

  # Non-chief workers write their (required) checkpoints to a private scratch directory.
  work_dir = config.train_dir if chief else tempfile.mkdtemp(prefix="yt8m-worker-")
  if chief:
    prepare_train_dir(config.train_dir, config.start_new_model)
    run_config_lib.save_or_check(config.train_dir, run)

  teacher_run = run.teacher
  parallel = bool(teacher_run) and run.distillation["mode"] == "parallel"
  weights = distill.LossWeights(**{k: run.distillation[k] for k in (
      "ce_weight", "rep_weight", "pred_weight", "intermediate_weight", "pred_loss")}
                                ) if teacher_run else distill.LossWeights()
  cached = bool(teacher_run) and not parallel and config.cache_teacher
  reader = run.reader_config()
  if teacher_run and not cached and reader.selects_in_reader:
    reader = dataclasses.replace(reader, teacher_frames=True)
  loss_fn = losses.build_loss(run.label_loss)
  schedule = StarterDecay(config.base_learning_rate, config.learning_rate_decay,
                          config.learning_rate_decay_examples, global_batch)
  share_head = bool(teacher_run) and run.distillation.get("share_head", False)
  with strategy.scope():
    model = build_model(run)
    teacher = build_model(teacher_run) if teacher_run else None
    if teacher is not None and not parallel:
      teacher.trainable = False  # serial: frozen; student losses reach it through stop_gradient
    if teacher is not None and weights.rep_weight:
      sizes = [dummy_outputs(m, r)["representation"].shape[-1]
               for m, r in ((teacher, teacher_run), (model, run))]
      if sizes[0] != sizes[1]:
        raise ValueError(f"--rep_weight: the teacher's representation has {sizes[0]} values, "
                         f"the student's {sizes[1]}; L_rep needs one family and size")
    if share_head:
      check_same_head(teacher, model)
      model.classifier.trainable = False  # it mirrors the teacher's (see mirror_head below)
    # Parallel: one optimizer over both; the teacher's gradient comes from its own label loss
    # only, because the student's terms see the teacher through tf.stop_gradient.
    variables = model.trainable_variables + (teacher.trainable_variables if parallel else [])
    optimizer = make_optimizer(config.optimizer, schedule)
    optimizer.build(variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    objects = dict(model=model, optimizer=optimizer, epoch=epoch)
    if parallel:
      objects["teacher"] = teacher
    checkpoint = tf.train.Checkpoint(**objects)
  manager = tf.train.CheckpointManager(checkpoint, work_dir, max_to_keep=config.keep_checkpoints,
                                       checkpoint_name=CHECKPOINT_NAME)
  if teacher is not None and not parallel:
    teacher_checkpoint = run.distillation["teacher_checkpoint"]
    logging.info("Teacher (frozen): %s", teacher_checkpoint)
    tf.train.Checkpoint(model=teacher).restore(
        teacher_checkpoint).assert_existing_objects_matched().expect_partial()
  teacher_cache = None
  if cached:
    start = time.perf_counter()
    teacher_cache = TeacherCache(teacher, teacher_run, train_files)
    logging.info("Cached the frozen teacher's outputs for %d videos in %.1f s.",
                 teacher_cache.num_videos, time.perf_counter() - start)
  dataset = _training_dataset(strategy, train_files, reader, config, global_batch,
                              repeat=multi_worker, teacher_cache=teacher_cache)
  # The paper's shared output layer: the student classifies with the teacher's head (copied
  # once from a frozen teacher; after every step from a parallel one).
  head_pairs = list(zip(model.classifier.weights, teacher.classifier.weights)
                    ) if share_head else []

  def mirror_head():
    for student_weight, teacher_weight in head_pairs:
      student_weight.assign(teacher_weight)

  if manager.latest_checkpoint:
    logging.info("Restoring from %s (the current code and flags are used).",
                 manager.latest_checkpoint)
    restore(checkpoint, manager.latest_checkpoint)
  elif config.init_from:
    logging.info("Starting from the model weights of %s.", config.init_from)
    tf.train.Checkpoint(model=model).restore(
        config.init_from).assert_existing_objects_matched().expect_partial()
  mirror_head()
  step = int(optimizer.iterations.numpy())
  if config.max_steps and step >= config.max_steps:
    logging.info("Step %d already reaches --max_steps=%d; nothing to do.", step,
                 config.max_steps)
    return {"step": step, "model": model}

  def label_and_reg(net, out, labels):
    predictions = tf.cast(out["predictions"], tf.float32)
    # Mean over the global batch as it is (a final batch may be smaller): each replica's
    # share, so that summing over replicas gives the mean.
    per_example = loss_fn(predictions=predictions, labels=labels)
    label_loss = tf.nn.compute_average_loss(per_example)
    reg_loss = tf.add_n(net.losses) if net.losses else tf.constant(0.0)
    # Every replica holds the same weights: each adds its share of the penalty so that the
    # summed gradient carries it exactly once.
    return predictions, per_example, label_loss, tf.cast(reg_loss, tf.float32) / replicas

  def replica_step(batch):
    with tf.GradientTape() as tape:
      out = model(batch["features"], batch["num_frames"], training=True)
      predictions, label_per_example, label_loss, reg_share = label_and_reg(
          model, out, batch["labels"])
      total = weights.ce_weight * label_loss + config.regularization_penalty * reg_share
      logs = {"label_loss": label_loss, "reg_loss": reg_share}
      student_per_example = weights.ce_weight * label_per_example  # (for REINFORCE)
      if teacher is not None:
        if cached:
          teacher_out = {k: batch[f"teacher_{k}"] for k in TeacherCache.KEYS
                         if f"teacher_{k}" in batch}
        elif "teacher_features" in batch:
          teacher_out = teacher(batch["teacher_features"], batch["teacher_num_frames"],
                                training=parallel)
        else:  # a learned selection reads every frame anyway
          teacher_out = teacher(batch["features"], batch["num_frames"], training=parallel)
        # A learned selection reports the frames it picked; otherwise the reader's.
        frame_indices = out.get("frame_indices", batch.get("frame_indices"))
        terms = distill.student_terms(teacher_out, out, frame_indices, weights,
                                      getattr(model, "hrnn_block_frames", None),
                                      getattr(teacher, "hrnn_block_frames", None))
        for name, per_example in terms.items():
          weight = getattr(weights, name.replace("_loss", "_weight"))
          logs[name] = tf.nn.compute_average_loss(per_example)
          total += weight * logs[name]
          student_per_example += weight * per_example
        if parallel:
          _, _, teacher_label, teacher_reg = label_and_reg(teacher, teacher_out,
                                                           batch["labels"])
          total += teacher_label + config.regularization_penalty * teacher_reg
          logs["teacher/label_loss"] = teacher_label
      if "selection_log_prob" in out:
        # REINFORCE for the frame selector: picks whose student loss beats the batch mean
        # become more likely (the mean is the variance-reducing baseline).
        advantage = tf.stop_gradient(student_per_example -
                                     tf.reduce_mean(student_per_example))
        logs["selector_loss"] = tf.nn.compute_average_loss(
            advantage * out["selection_log_prob"])
        total += logs["selector_loss"]
      logs["total_loss"] = total
    grads = tape.gradient(total, variables)
    grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    if config.clip_gradient_norm > 0:  # per tensor, as the starter
      grads = [tf.clip_by_norm(g, config.clip_gradient_norm) for g in grads]
    optimizer.apply(grads, variables)
    return {**logs, "predictions": predictions, "labels": batch["labels"],
            "batch_size": tf.shape(batch["labels"])[0]}

  def make_step(with_outputs):

    @tf.function
    def step_fn(batch):
      out = strategy.run(replica_step, args=(batch,))
      if parallel:
        mirror_head()  # after the update, in cross-replica context: every replica's copy
      result = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in out.items() if k not in ("predictions", "labels")}
      if with_outputs:
        result["predictions"] = strategy.gather(out["predictions"], axis=0)
        result["labels"] = strategy.gather(out["labels"], axis=0)
      return result

    return step_fn

  train_step, train_step_with_outputs = make_step(False), make_step(True)
  writer = (tf.summary.create_file_writer(config.train_dir) if chief
            else tf.summary.create_noop_writer())
  if chief and config.hparams:
    with writer.as_default():
      hparams_api.hparams({k: v for k, v in config.hparams.items()
                           if isinstance(v, (bool, int, float, str))})

  logging.info("Entering training loop at step %d.", step)
  num_epochs = config.num_epochs if not multi_worker else 1
  result = {"step": step, "model": model}
  last_saved = step
  done = False
  while int(epoch.numpy()) < num_epochs and not done:
    for batch in dataset:
      with_metrics = (step + 1) % config.metrics_every == 0
      start = time.perf_counter()
      out = (train_step_with_outputs if with_metrics else train_step)(batch)
      label_loss = float(out["label_loss"])
      reg_loss = float(out["reg_loss"])
      seconds = time.perf_counter() - start
      step += 1
      if not math.isfinite(label_loss) or not math.isfinite(reg_loss):
        raise FloatingPointError(f"the loss became {label_loss} (regularization {reg_loss}) at "
                                 f"step {step}; lower --base_learning_rate or check the data")
      examples_per_second = float(out["batch_size"]) / seconds
      line = (f"training step {step} | Loss: {label_loss:.2f} "
              f"Examples/sec: {examples_per_second:.2f}")
      terms = {k: float(v) for k, v in out.items()
               if k.endswith("_loss") and k not in ("label_loss", "reg_loss")}
      if teacher is not None or "selector_loss" in terms:
        line += " | " + " ".join(f"{k}: {v:.3f}" for k, v in terms.items())
      with writer.as_default(step=step):
        tf.summary.scalar("learning_rate", schedule(step - 1))
        tf.summary.scalar("label_loss", label_loss)
        if config.regularization_penalty != 0:
          tf.summary.scalar("reg_loss", reg_loss)
        for name, value in terms.items():
          tf.summary.scalar(name, value)
        if with_metrics:
          batch_metrics = metrics.EvaluationMetrics(run.num_classes)
          batch_metrics.accumulate(out["predictions"].numpy(), out["labels"].numpy())
          m = batch_metrics.get()
          line += f" | Hit@1: {m['hit_at_one']:.2f} PERR: {m['perr']:.2f} GAP: {m['gap']:.2f}"
          tf.summary.scalar("model/Training_Hit@1", m["hit_at_one"])
          tf.summary.scalar("model/Training_Perr", m["perr"])
          tf.summary.scalar("model/Training_GAP", m["gap"])
          tf.summary.scalar("global_step/Examples/Second", examples_per_second)
      if chief and (step % config.log_every == 0 or with_metrics):
        progress = (f"{100 * step / config.max_steps:.0f}% of {config.max_steps} steps"
                    if config.max_steps else f"epoch {int(epoch.numpy()) + 1}/{num_epochs}")
        logging.info("%s | %s", line, progress)
      if step % config.checkpoint_steps == 0:
        manager.save(checkpoint_number=step)
        last_saved = step
      result = {"step": step, "label_loss": label_loss, "reg_loss": reg_loss, "model": model}
      if config.max_steps and step >= config.max_steps:
        done = True
        break
    else:
      epoch.assign_add(1)
  if step != last_saved:
    manager.save(checkpoint_number=step)
  writer.flush()
  if chief:
    logging.info("Done training at step %d; checkpoint %s.", step, manager.latest_checkpoint)
  else:
    tf.io.gfile.rmtree(work_dir)
  return result
