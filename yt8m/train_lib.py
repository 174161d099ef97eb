"""The training loop: tf.distribute, a compiled multi-step function, checkpoints, TensorBoard.
No model.fit, and nothing about teachers: what differs between training modes lives in an
objective (yt8m/objectives.py).

Order of business (big_vision's): strategy -> train dir (lock, manifest) -> objective,
optimizer and checkpoint under strategy.scope() -> restore (weights and input position) ->
one input iterator for the whole run -> compiled steps -> loop (log, summaries, checkpoints).

Batch sizes follow the starter: --batch_size is per replica (its "towers"), so the global
batch is batch_size x replicas, and the learning rate decays every
learning_rate_decay_examples examples of that global batch.

Resuming is exact: the input is one deterministic stream of num_epochs passes (file and
record order drawn from a data seed kept in the checkpoint), every batch but the run's last
is full, so the input position is the step: a resumed run skips step x batch records (read,
not parsed) and continues with the batch the killed run would have trained on next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import tempfile
import time
from typing import Sequence

import keras
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api

from yt8m import building, metrics, objectives, progress, readers, summaries
from yt8m import run_config as run_config_lib
from yt8m import train_dir as train_dir_lib


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
  # Steps per compiled call between log/metrics/checkpoint steps (no host sync in between).
  # 1 by measurement on CPU (benchmarks/bench_train_loop.py): the in-graph loop speeds up
  # LogisticModel 1.5-3.3x but slows the H-RNN teacher to 0.3x.
  steps_per_execution: int = 1
  jit_compile: bool = False  # XLA for the forward and backward pass (where the model allows)
  seed: int | None = None
  mixed_precision: str = ""  # one of MIXED_PRECISION_POLICIES
  start_new_model: bool = False
  init_from: str = ""  # a new run starts from this checkpoint's model weights (fine-tuning)
  cache_teacher: bool = True  # serial: compute the frozen teacher's outputs once per video
  hparams: dict = dataclasses.field(default_factory=dict)  # logged to TensorBoard

  def __post_init__(self):
    flag_names = {"batch_size": "--batch_size", "num_epochs": "--num_epochs",
                  "checkpoint_steps": "--export_model_steps", "log_every": "--log_every_steps",
                  "keep_checkpoints": "--keep_checkpoints", "metrics_every": "metrics_every",
                  "steps_per_execution": "--steps_per_execution"}
    for field, flag in flag_names.items():
      if getattr(self, field) < 1:
        raise TrainError(f"{flag} must be at least 1, got {getattr(self, field)}")
    if self.max_steps is not None and self.max_steps < 1:
      raise TrainError(f"--max_steps must be at least 1 (or unset), got {self.max_steps}")
    if not self.base_learning_rate > 0:
      raise TrainError(f"--base_learning_rate must be positive, got {self.base_learning_rate}")
    if self.optimizer not in _OPTIMIZERS:
      raise TrainError(f"unknown --optimizer {self.optimizer!r}; choose one of "
                       f"{', '.join(_OPTIMIZERS)}")
    if self.mixed_precision not in MIXED_PRECISION_POLICIES:
      raise TrainError(f"unknown --mixed_precision {self.mixed_precision!r}; choose one of "
                       f"{', '.join(map(repr, MIXED_PRECISION_POLICIES))}")


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


# float16 needs its loss scaled (its gradients underflow otherwise); bfloat16 has float32's
# range and does not.
MIXED_PRECISION_POLICIES = ("", "mixed_bfloat16", "mixed_float16")


def make_optimizer(name: str, learning_rate, clip_gradient_norm: float = 0.0,
                   loss_scale: bool = False) -> keras.optimizers.Optimizer:
  """The named optimizer, clipping each gradient tensor to clip_gradient_norm (if > 0) as the
  starter did, on the replicas' summed gradient. With loss_scale, wrapped in a dynamic
  LossScaleOptimizer: the step scales the loss (optimizer.scale_loss), the wrapper unscales
  the gradients before the inner optimizer clips them, and skips a step whose gradients
  overflowed, lowering the scale."""
  if name not in _OPTIMIZERS:
    raise ValueError(f"unknown --optimizer {name!r}; choose one of {', '.join(_OPTIMIZERS)}")
  cls, kwargs = _OPTIMIZERS[name]
  presummed = type(cls.__name__, (_PresummedGradients, cls), {})
  if clip_gradient_norm > 0:  # Keras' clipnorm is tf.clip_by_norm per tensor
    kwargs = {**kwargs, "clipnorm": clip_gradient_norm}
  optimizer = presummed(learning_rate=learning_rate, **kwargs)
  return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else optimizer




# ----------------------------------------------------------------------------------- data

# Record counting reads every byte (no parsing): done only when the files are this small.
_COUNT_RECORDS_MAX_BYTES = 4 << 30


def count_records(files: Sequence[str]) -> int | None:
  """The number of videos in the files (for the ETA), or None when counting would cost too
  much (files over _COUNT_RECORDS_MAX_BYTES in total, or not local)."""
  try:
    size = sum(tf.io.gfile.stat(f).length for f in files)
  except tf.errors.OpError:
    return None
  if size > _COUNT_RECORDS_MAX_BYTES:
    return None
  return int(tf.data.TFRecordDataset(list(files)).reduce(
      tf.constant(0, tf.int64), lambda count, _: count + 1).numpy())


def _training_dataset(strategy: tf.distribute.Strategy, files: Sequence[str],
                      objective: objectives.Supervised, config: TrainConfig,
                      global_batch: int, num_epochs: int | None, seed: int, skip_steps: int):
  """The run's whole input as one distributed dataset: num_epochs passes (None: forever),
  starting after the first skip_steps batches."""
  # The starter trained on the final smaller batch too; TPUs need static shapes.
  drop_remainder = isinstance(strategy, tf.distribute.TPUStrategy)
  reader = objective.reader_config()

  def dataset_fn(ctx: tf.distribute.InputContext):
    shard_files = list(files)
    shard = None
    if ctx.num_input_pipelines > 1:
      if len(files) >= ctx.num_input_pipelines:
        shard_files = shard_files[ctx.input_pipeline_id::ctx.num_input_pipelines]
      else:
        shard = (ctx.num_input_pipelines, ctx.input_pipeline_id)
    per_replica = ctx.get_per_replica_batch_size(global_batch)
    # This pipeline feeds replicas / pipelines replicas a batch each per step.
    per_step = per_replica * (strategy.num_replicas_in_sync // ctx.num_input_pipelines)
    ds = readers.build_dataset(
        shard_files, reader, per_replica, training=True, num_epochs=num_epochs,
        shuffle_buffer=config.shuffle_buffer, num_readers=config.num_readers,
        drop_remainder=drop_remainder, seed=seed, shard=shard,
        skip_records=skip_steps * per_step)
    return ds.map(objective.step_inputs)

  return strategy.distribute_datasets_from_function(dataset_fn)


# ----------------------------------------------------------------------------------- loop


def _restore_training(objects: dict, extras: dict, path: str) -> None:
  """Restores weights and optimizer (each must be in the checkpoint), then the input and
  random-generator state (checkpoints of earlier versions hold none: the data order and the
  models' draws then restart)."""
  try:
    building.restore(path, **objects)
  except building.CheckpointError as e:
    raise TrainError(str(e)) from None
  saved = tf.train.load_checkpoint(path).get_variable_to_shape_map()
  for name, value in extras.items():
    if any(key == name or key.startswith(name + "/") for key in saved):
      tf.train.Checkpoint(**{name: value}).restore(path).expect_partial()
    elif not (isinstance(value, list) and not value):
      logging.warning("%s holds no %s (written by an earlier version): it restarts.", path,
                      name)


def _prepare_dir(train_dir: str) -> None:
  try:
    tf.io.gfile.makedirs(train_dir)
    probe = os.path.join(train_dir, f".yt8m-write-test-{os.getpid()}")
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("ok")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    message = getattr(e, "message", str(e)).splitlines()[0]
    raise TrainError(f"--train_dir {train_dir} is not writable: {message}") from None


def train(run: run_config_lib.RunConfig, train_files: Sequence[str], config: TrainConfig,
          strategy: tf.distribute.Strategy | None = None) -> dict:
  """Trains (or resumes) the run in config.train_dir. Returns the final step, the last
  losses and the trained model."""
  strategy = strategy or make_strategy()
  chief = is_chief(strategy)
  if chief:
    _prepare_dir(config.train_dir)
  try:
    with train_dir_lib.locked(config.train_dir) if chief else contextlib.nullcontext():
      return _train(run, train_files, config, strategy, chief)
  except train_dir_lib.TrainDirError as e:
    raise TrainError(str(e)) from None


def _train(run: run_config_lib.RunConfig, train_files: Sequence[str], config: TrainConfig,
           strategy: tf.distribute.Strategy, chief: bool) -> dict:
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
  events_before = train_dir_lib.listing(config.train_dir)
  if chief:
    train_dir_lib.remove_stale_temporaries(config.train_dir)
    if config.start_new_model:
      train_dir_lib.start_new(config.train_dir)
    trained_with = train_dir_lib.read_manifest(config.train_dir).get("optimizer")
    if trained_with and trained_with != config.optimizer:
      raise TrainError(f"--optimizer={config.optimizer}, but the run in {config.train_dir} "
                       f"was trained with {trained_with} (its state cannot carry over): "
                       f"resume with --optimizer={trained_with}, or pass --start_new_model")
    run_config_lib.save_or_check(config.train_dir, run)
    train_dir_lib.record(config.train_dir, [run_config_lib.MODEL_FLAGS_FILE],
                         optimizer=config.optimizer)

  objective = objectives.make_objective(run, config.regularization_penalty, replicas,
                                        config.cache_teacher)
  schedule = StarterDecay(config.base_learning_rate, config.learning_rate_decay,
                          config.learning_rate_decay_examples, global_batch)
  with strategy.scope():
    objective.build()
    variables = objective.trainable_variables
    optimizer = make_optimizer(config.optimizer, schedule, config.clip_gradient_norm,
                               loss_scale=config.mixed_precision == "mixed_float16")
    optimizer.build(variables)
    seed = config.seed if config.seed is not None else random.randrange(2**31)
    data_seed = tf.Variable(seed, dtype=tf.int64, trainable=False, name="data_seed")
  objects = dict(optimizer=optimizer, **objective.checkpoint_objects())
  # The models' random generators (dropout, frame sampling, the selector's draw): a
  # checkpoint does not reach them through the models, so they are saved beside.
  rng_states = [v for name, net in objects.items() if name != "optimizer"
                for v in net.variables if v.path.endswith("seed_generator_state")]
  checkpoint = tf.train.Checkpoint(data_seed=data_seed, rng=rng_states, **objects)
  manager = tf.train.CheckpointManager(checkpoint, work_dir, max_to_keep=config.keep_checkpoints,
                                       checkpoint_name=building.CHECKPOINT_NAME)
  objective.prepare(train_files)
  resume_from = train_dir_lib.checkpoint_to_resume(config.train_dir)
  if resume_from:
    logging.info("Restoring from %s (the current code and flags are used).", resume_from)
    _restore_training(objects, {"data_seed": data_seed, "rng": rng_states}, resume_from)
  elif config.init_from:
    logging.info("Starting from the model weights of %s.", config.init_from)
    building.restore(config.init_from, model=building.init_target(objective.model,
                                                                  config.init_from))
  objective.after_restore()
  step = int(optimizer.iterations.numpy())
  if config.max_steps and step >= config.max_steps:
    logging.info("Step %d already reaches --max_steps=%d; nothing to do.", step,
                 config.max_steps)
    return {"step": step, "model": objective.model}

  num_epochs = None if multi_worker else config.num_epochs
  dataset = _training_dataset(strategy, train_files, objective, config, global_batch,
                              num_epochs, int(data_seed.numpy()), skip_steps=step)
  iterator = iter(dataset)
  total_steps = config.max_steps
  num_videos = None if multi_worker else count_records(train_files)
  if num_videos is not None:
    data_steps = math.ceil(num_epochs * num_videos / global_batch)
    total_steps = min(total_steps, data_steps) if total_steps else data_steps
  log_names = ("label_loss", "reg_loss", "total_loss") + objective.log_names()

  def loss_and_gradients(batch):
    with tf.GradientTape() as tape:
      total, logs, predictions = objective.loss(batch)
      scaled = optimizer.scale_loss(total)  # the loss itself unless --mixed_precision=float16
    return tape.gradient(scaled, variables), logs, predictions

  if config.jit_compile:  # XLA for the model's forward and backward pass
    loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

  def replica_step(batch):
    batch = readers.dequantized(batch, run.feature_sizes)  # here, on the replica's device
    grads, logs, predictions = loss_and_gradients(batch)
    grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    optimizer.apply(grads, variables)
    return ({k: logs[k] for k in log_names}, predictions, batch["labels"],
            tf.shape(batch["labels"])[0])

  def distributed_step(batch):
    logs, predictions, labels, size = strategy.run(replica_step, args=(batch,))
    objective.after_update()
    logs = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in logs.items()}
    size = strategy.reduce(tf.distribute.ReduceOp.SUM, size, axis=None)
    finite = tf.math.is_finite(logs["label_loss"]) & tf.math.is_finite(logs["reg_loss"])
    return logs, predictions, labels, size, finite

  @tf.function
  def one_step(batch):
    logs, _, _, size, finite = distributed_step(batch)
    return logs, size, finite

  @tf.function
  def step_with_outputs(batch):
    logs, predictions, labels, size, finite = distributed_step(batch)
    return (logs, size, finite, strategy.gather(predictions, axis=0),
            strategy.gather(labels, axis=0))

  @tf.function
  def run_steps(iterator, num_steps):
    """Up to num_steps steps in one call; stops early at the end of the data. Returns the
    steps done, the finite steps before the first non-finite loss, the examples, and the
    last step's logs."""
    done = tf.constant(0)
    finite_steps = tf.constant(0)
    all_finite = tf.constant(True)
    examples = tf.constant(0)
    logs = {k: tf.constant(0.0) for k in log_names}
    for _ in tf.range(num_steps):
      optional = iterator.get_next_as_optional()
      if not optional.has_value():
        break
      logs, _, _, size, finite = distributed_step(optional.get_value())
      all_finite = all_finite & finite
      finite_steps += tf.cast(all_finite, tf.int32)
      examples += size
      done += 1
    return done, finite_steps, examples, logs

  @tf.function
  def weights_finite():
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables])

  summary_writers = []

  def writer():
    """Created at the first summary, so that a run with nothing to do writes nothing."""
    if not summary_writers:
      summary_writers.append(tf.summary.create_file_writer(config.train_dir) if chief
                             else tf.summary.create_noop_writer())
      if chief and config.hparams:
        with summary_writers[0].as_default():
          hparams_api.hparams({k: v for k, v in config.hparams.items()
                               if isinstance(v, (bool, int, float, str))})
    return summary_writers[0]

  def save(at_step: int) -> str | None:
    if not bool(weights_finite()):
      logging.warning("Not saving step %d: its weights are not finite.", at_step)
      return None
    try:
      path = manager.save(checkpoint_number=at_step)
    except (tf.errors.OpError, OSError) as e:
      train_dir_lib.remove_stale_temporaries(work_dir)
      message = getattr(e, "message", str(e)).splitlines()[0]
      raise TrainError(f"saving checkpoint {at_step} in {work_dir} failed: {message}") from None
    if chief:
      written = [n for n in tf.io.gfile.listdir(work_dir)
                 if n.startswith(f"{building.CHECKPOINT_NAME}-{at_step}.")]
      writer().flush()
      events = train_dir_lib.new_event_files(config.train_dir, events_before)
      train_dir_lib.record(config.train_dir, written + events + ["checkpoint"])
    return path

  def stop_on_non_finite(loss: float, at_step: int, unconfirmed: str | None) -> None:
    # A checkpoint saved just before the first bad step may hold weights that only look
    # finite (e.g. 1e30): its next loss was not, so it is not kept as the last good one.
    if unconfirmed and manager.checkpoints and manager.checkpoints[-1] == unconfirmed:
      kept = [p for p in manager.checkpoints if p != unconfirmed]
      for name in tf.io.gfile.glob(unconfirmed + ".*"):
        tf.io.gfile.remove(name)
      if kept:
        tf.compat.v1.train.update_checkpoint_state(work_dir, kept[-1],
                                                   all_model_checkpoint_paths=kept)
      else:
        tf.io.gfile.remove(os.path.join(work_dir, "checkpoint"))
      logging.warning("Removed %s: the step after it diverged.", unconfirmed)
      good = kept[-1] if kept else None
    else:
      good = manager.latest_checkpoint
    raise FloatingPointError(
        f"the loss became {loss} at step {at_step}; lower --base_learning_rate or check the "
        f"data. Nothing was saved after it; the last good checkpoint is "
        f"{good or 'none (the run saved none)'}")

  logging.info("Entering training loop at step %d%s.", step,
               f" of {total_steps}" if total_steps else "")
  result = {"step": step, "model": objective.model}
  first_step, last_saved, unconfirmed = step, step, None
  start_time = time.perf_counter()
  with readers.data_errors(train_files, reader=objective.reader_config()):
    while not (config.max_steps and step >= config.max_steps):
      # Run to the next step that logs, measures, checkpoints or ends, in one call.
      bounds = [step + config.steps_per_execution]
      bounds += [(step // every + 1) * every
                 for every in (config.log_every, config.metrics_every, config.checkpoint_steps)]
      if config.max_steps:
        bounds.append(config.max_steps)
      target = min(bounds)
      with_metrics = target % config.metrics_every == 0
      chunk_start = time.perf_counter()
      done, finite_steps, examples = 0, 0, 0
      predictions = labels = None
      plain_steps = target - step - with_metrics
      if plain_steps == 1:  # no loop in the graph: much faster to trace for recurrent models
        batch = next(iterator, None)
        if batch is not None:
          logs, size, finite = one_step(batch)
          done, finite_steps, examples = 1, int(bool(finite)), int(size)
      elif plain_steps > 1:
        done, finite_steps, examples, logs = (
            int(x) if i < 3 else x for i, x in enumerate(run_steps(
                iterator, tf.constant(plain_steps))))
      if with_metrics and done == target - step - 1:
        batch = next(iterator, None)
        if batch is not None:
          logs, size, finite, predictions, labels = step_with_outputs(batch)
          finite_steps += int(done == finite_steps and bool(finite))
          done += 1
          examples += int(size)
      if done == 0:
        break  # the data is used up
      label_loss, reg_loss = float(logs["label_loss"]), float(logs["reg_loss"])
      if finite_steps < done:
        stop_on_non_finite(label_loss if not math.isfinite(label_loss) else reg_loss,
                           step + finite_steps + 1,
                           unconfirmed if finite_steps == 0 else None)
      step += done
      unconfirmed = None
      seconds = time.perf_counter() - chunk_start
      examples_per_second = examples / seconds
      terms = {k: float(v) for k, v in logs.items()
               if k not in ("label_loss", "reg_loss", "total_loss")}
      line = (f"training step {step} | Loss: {label_loss:.2f} "
              f"Examples/sec: {examples_per_second:.2f}")
      if terms:
        line += " | " + " ".join(f"{k}: {v:.3f}" for k, v in terms.items())
      is_log_step = step % config.log_every == 0 or predictions is not None
      if is_log_step:
        with writer().as_default(step=step):
          tf.summary.scalar("learning_rate", schedule(step - 1))
          tf.summary.scalar("label_loss", label_loss)
          if config.regularization_penalty != 0:
            tf.summary.scalar("reg_loss", reg_loss)
          for name, value in terms.items():
            tf.summary.scalar(name, value)
          if predictions is not None:
            batch_metrics = metrics.EvaluationMetrics(run.num_classes)
            batch_metrics.accumulate(predictions.numpy(), labels.numpy())
            m = batch_metrics.get()
            line += (f" | Hit@1: {m['hit_at_one']:.2f} PERR: {m['perr']:.2f} "
                     f"GAP: {m['gap']:.2f}")
            tf.summary.scalar("model/Training_Hit@1", m["hit_at_one"])
            tf.summary.scalar("model/Training_Perr", m["perr"])
            tf.summary.scalar("model/Training_GAP", m["gap"])
            tf.summary.scalar("global_step/Examples/Second", examples_per_second)
            if chief:
              summaries.write_histograms(objective.model, step)
      if chief and is_log_step:
        position = f"step {step}"
        if total_steps:
          elapsed = time.perf_counter() - start_time
          eta = elapsed / (step - first_step) * max(total_steps - step, 0)
          position = (f"{100 * step / total_steps:.0f}% of {total_steps} steps, "
                      f"ETA {progress.format_seconds(eta)}")
        if num_videos:
          position += f" | epoch {min(step * global_batch // num_videos + 1, num_epochs)}" \
                      f"/{num_epochs}"
        logging.info("%s | %s", line, position)
      if step % config.checkpoint_steps == 0:
        unconfirmed = save(step)
        last_saved = step
      result = {"step": step, "label_loss": label_loss, "reg_loss": reg_loss,
                "model": objective.model}
  if step != last_saved:
    save(step)
  for summary_writer in summary_writers:
    summary_writer.flush()
  if chief:
    train_dir_lib.record(config.train_dir,
                         train_dir_lib.new_event_files(config.train_dir, events_before))
    logging.info("Done training at step %d; checkpoint %s.", step, manager.latest_checkpoint)
  else:
    tf.io.gfile.rmtree(work_dir)
  return result
