"""Frame-level reader throughput against the raw read of the same files, in one process.

  python -m benchmarks.bench_reader [--num_videos=2000] [--k=30] [--rounds=5]
  python -m benchmarks.bench_reader --stages   # where one batch's time goes
  python -m benchmarks.bench_reader --startup  # building a dataset, and its first batch
  python -m benchmarks.bench_reader --handoff  # training with uint8 frames handed over or not

Writes --num_videos synthetic frame-level videos (yt8m.synthetic, built-in mode, in a
temporary directory), then reads them with each variant in round-robin rounds after a
warm-up pass and reports the median videos/s, process CPU ms per video, and the ratio to the
raw read measured in the same round (median over the rounds, with the lowest and highest):

  raw            tf.data.TFRecordDataset over the files, every record read and CRC-checked,
                 nothing parsed (the physical limit of any reader here)
  starter        the starter's / TF Model Garden's frame-level reader: per record
                 tf.io.parse_single_sequence_example, decode_raw, dequantize, pad to 300
  full           yt8m's reader, every frame decoded (a teacher's input, [B, 300, 1152]):
                 batches parsed at once (yt8m/frame_batches.py, the default)
  select_decode  yt8m's student reader: k frames picked from the undecoded byte strings, then
                 decoded
  full_uint8     every frame as the training, evaluation and inference loops read it: left
                 uint8 for the step to dequantize on its device (ReaderConfig.quantized_frames;
                 readers.STEP_DEQUANTIZES; a student's k frames are dequantized in the reader,
                 so select_decode is how the loops read them)
  full_per_record, select_per_record
                 the same two readers parsing record by record (yt8m.readers._parse_frame_level,
                 the path before frame_batches; still the 2019 segment path)
  decode_select  all frames decoded, then k gathered (the naive student reader, for contrast)
"""

import statistics
import tempfile
import time

import tensorflow as tf
from absl import app, flags

from benchmarks import timing
from yt8m import frame_batches, frame_selection, readers, synthetic

flags.DEFINE_integer("num_videos", 2000, "Videos to write and read.")
flags.DEFINE_integer("k", 30, "Student frames.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("rounds", 5, "Timed passes per variant.")
flags.DEFINE_integer("parallel_batches", None,
                     "Batches parsed in parallel by the batch reader (default: its own setting, "
                     "frame_batches.PARALLEL_BATCHES).")
flags.DEFINE_bool("startup", False,
                  "Instead: time building each reader's dataset and reading its first batch, "
                  "median of --rounds (start-up of every eval, inference and training run).")
flags.DEFINE_bool("handoff", False,
                  "Instead: train FrameLevelLogisticModel for 150 steps of --batch_size on 1,000 "
                  "videos, and run inference (TFRecord -> top-20 rows) over them, every frame "
                  "and k, with readers.STEP_DEQUANTIZES on and off in turn; median videos/s of "
                  "--rounds (set-up included, the same in both).")
flags.DEFINE_bool("stages", False,
                  "Instead: time the stages of parsing one batch in memory (no tf.data), "
                  "median of --rounds * 3 calls.")
FLAGS = flags.FLAGS

MAX_FRAMES = 300


def raw_read(files, batch_size):
  """Every record read (with its CRC check) and handed over, nothing parsed."""
  return tf.data.TFRecordDataset(files).map(tf.strings.length).batch(batch_size)


def starter_reader(files, batch_size, num_classes=readers.NUM_CLASSES_2018):
  """The starter's YT8MFrameFeatureReader (get_video_matrix), as TF Model Garden's yt8m
  decoder also does it: parse every record, decode every frame, dequantize, pad to 300."""

  def parse(record):
    context, sequences = tf.io.parse_single_sequence_example(
        record,
        context_features={"id": tf.io.FixedLenFeature([], tf.string),
                          "labels": tf.io.VarLenFeature(tf.int64)},
        sequence_features={name: tf.io.FixedLenSequenceFeature([], tf.string)
                           for name in ("rgb", "audio")})
    parts = []
    for name, size in (("rgb", 1024), ("audio", 128)):
      frames = tf.reshape(tf.cast(tf.io.decode_raw(sequences[name], tf.uint8), tf.float32),
                          [-1, size])
      frames = frames[:MAX_FRAMES] * readers.DEQUANTIZE_SCALE + readers.DEQUANTIZE_BIAS
      parts.append(tf.pad(frames, [[0, MAX_FRAMES - tf.shape(frames)[0]], [0, 0]]))
    num_frames = tf.minimum(tf.size(sequences["rgb"]), MAX_FRAMES)
    labels = tf.sparse.to_indicator(context["labels"], num_classes)
    return {"video_ids": context["id"], "features": tf.concat(parts, 1),
            "num_frames": num_frames, "labels": labels}

  return tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(
      batch_size).prefetch(tf.data.AUTOTUNE)


def decode_then_select(files, k, batch_size):
  """The naive student reader: decode the whole video, then keep k frames."""
  full = readers.build_dataset(files, readers.ReaderConfig(), batch_size)

  def pick(batch):
    def one(args):
      features, n = args
      idx = frame_selection.select_frames(n, k, "uniform")
      return tf.pad(tf.gather(features, idx), [[0, k - tf.size(idx)], [0, 0]])
    return tf.map_fn(one, (batch["features"], batch["num_frames"]),
                     fn_output_signature=tf.TensorSpec([k, 1152], tf.float32))

  return full.map(pick, num_parallel_calls=tf.data.AUTOTUNE)




def one_pass(ds):
  wall, cpu = time.perf_counter(), time.process_time()
  count = 0
  for batch in ds:
    count += int(tf.shape(batch["video_ids"] if isinstance(batch, dict) else batch)[0])
  return count, time.perf_counter() - wall, time.process_time() - cpu


def stages(files, student):
  """ms per batch of the parse, the decode and the dequantization, in memory, one call at a
  time (each op may use both cores)."""
  serialized = tf.stack(list(tf.data.TFRecordDataset(files).take(FLAGS.batch_size)))
  paths = tf.fill(tf.shape(serialized), "memory")
  indices = tf.range(tf.size(serialized, out_type=tf.int64))
  sequence = {name: tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
              for name in ("rgb", "audio")}
  context = {"id": tf.io.FixedLenFeature([], tf.string, default_value="")}

  def parse():
    return tf.io.parse_sequence_example(serialized, context_features=context,
                                        sequence_features=sequence)[1]

  def parse_decode():
    lists = parse()
    return [tf.io.decode_raw(lists[name], tf.uint8, fixed_length=size)
            for name, size in (("rgb", 1024), ("audio", 128))]

  quantized = tf.random.uniform([FLAGS.batch_size, MAX_FRAMES, 1152], 0, 256, tf.int32)
  quantized = tf.cast(quantized, tf.uint8)
  steps = {
      "C++ parse of the batch": parse,
      "parse + uint8 decode": parse_decode,
      f"dequantize [{FLAGS.batch_size}, {MAX_FRAMES}, 1152]": lambda: readers.dequantize(quantized),
      "yt8m every frame": lambda: frame_batches.parse_batch(
          paths, indices, serialized, readers.ReaderConfig(), False, 0)["features"],
      f"yt8m k={FLAGS.k}": lambda: frame_batches.parse_batch(
          paths, indices, serialized, student, False, 0)["features"],
      "yt8m every frame, left uint8": lambda: frame_batches.parse_batch(
          paths, indices, serialized, readers.ReaderConfig(quantized_frames=True), False,
          0)["features"],
      "yt8m every frame, record by record": lambda: readers._parse_records(
          paths, indices, serialized, readers.ReaderConfig(), False, 0)["features"],
      f"yt8m k={FLAGS.k}, record by record": lambda: readers._parse_records(
          paths, indices, serialized, student, False, 0)["features"],
  }
  print(f"one batch of {FLAGS.batch_size} records in memory, median of {FLAGS.rounds * 3} calls")
  for name, step in steps.items():
    step = tf.function(step)
    step()  # trace
    times = []
    for _ in range(FLAGS.rounds * 3):
      start = time.perf_counter()
      step()
      times.append(time.perf_counter() - start)
    print(f"  {name:40s} {1000 * statistics.median(times):6.1f} ms")


def startup(files, student):
  configs = {"every frame": readers.ReaderConfig(), f"k={FLAGS.k}": student}
  print(f"building a reader's dataset and reading its first batch ({FLAGS.rounds} times; "
        "AutoGraph caches what it converted, so the first time is what a command pays)")
  for name, config in configs.items():
    build, iterator, first = [], [], []
    for _ in range(FLAGS.rounds):
      start = time.perf_counter()
      ds = readers.build_dataset(files, config, FLAGS.batch_size)
      built = time.perf_counter()
      batches = iter(ds)  # instantiates the dataset's functions: paid by every pass
      created = time.perf_counter()
      next(batches)
      build.append(built - start)
      iterator.append(created - built)
      first.append(time.perf_counter() - created)
    print(f"  {name:12s} first in the process: build {build[0]:.3f} s, iterator "
          f"{iterator[0]:.3f} s, first batch {first[0]:.3f} s; again: build "
          f"{statistics.median(build[1:]):.3f} s, iterator {statistics.median(iterator[1:]):.3f}"
          f" s, first batch {statistics.median(first[1:]):.3f} s")


def handoff(files):
  """The loops with the frames handed to the step as uint8 (dequantized there) or float32."""
  from yt8m import building, inference_lib, run_config, train_lib  # only for this mode

  steps, rates = 150, {}
  for k in (None, FLAGS.k):
    run = run_config.RunConfig(model="FrameLevelLogisticModel", feature_names=("rgb", "audio"),
                               feature_sizes=(1024, 128), frame_features=True, num_classes=100,
                               student_frames=k)
    model = building.build_model(run)  # untrained: the speed does not depend on the weights
    for round_index, on in timing.alternating_rounds((False, True), FLAGS.rounds):
      readers.STEP_DEQUANTIZES = on
      with tempfile.TemporaryDirectory() as train_dir:
        config = train_lib.TrainConfig(train_dir=train_dir, batch_size=FLAGS.batch_size,
                                       num_epochs=100, max_steps=steps, seed=1,
                                       checkpoint_steps=10**6, metrics_every=10**6)
        start = time.perf_counter()
        train_lib.train(run, files, config, tf.distribute.OneDeviceStrategy("/cpu:0"))
        trained = time.perf_counter()
      count = sum(1 for _ in inference_lib.predict_top_k(model, run, files))
      if round_index >= 0:
        rates.setdefault(("training", k, on), []).append(
            steps * FLAGS.batch_size / (trained - start))
        rates.setdefault(("inference", k, on), []).append(
            count / (time.perf_counter() - trained))
  print(f"FrameLevelLogisticModel: {steps} training steps of {FLAGS.batch_size}; inference over "
        f"the {count} videos; median of {FLAGS.rounds}")
  for (what, k, on), values in sorted(rates.items(), key=lambda item: item[0][0]):
    print(f"  {what:9s} {'every frame' if k is None else f'k={k}':12s} "
          f"{'uint8 to the step' if on else 'float32 from the reader':24s} "
          f"{statistics.median(values):7.0f} videos/s")


def main(_):
  student = readers.ReaderConfig(student_frames=FLAGS.k)
  if FLAGS.handoff:
    with tempfile.TemporaryDirectory() as tmp:
      handoff(synthetic.generate(tmp, num_videos=1000, seed=0, num_shards=4, top_classes=100))
    return
  if FLAGS.startup:
    with tempfile.TemporaryDirectory() as tmp:
      startup(synthetic.generate(tmp, num_videos=4 * FLAGS.batch_size, seed=0, num_shards=2),
              student)
    return
  if FLAGS.stages:
    with tempfile.TemporaryDirectory() as tmp:
      stages(synthetic.generate(tmp, num_videos=FLAGS.batch_size, seed=0, num_shards=1),
             student)
    return
  if FLAGS.parallel_batches is not None:
    frame_batches.PARALLEL_BATCHES = FLAGS.parallel_batches
  with tempfile.TemporaryDirectory() as tmp:
    files = synthetic.generate(tmp, num_videos=FLAGS.num_videos, seed=0, num_shards=4)
    variants = {
        "raw": raw_read(files, FLAGS.batch_size),
        "starter": starter_reader(files, FLAGS.batch_size),
        "full": readers.build_dataset(files, readers.ReaderConfig(), FLAGS.batch_size),
        "select_decode": readers.build_dataset(files, student, FLAGS.batch_size),
        "full_uint8": readers.build_dataset(
            files, readers.ReaderConfig(quantized_frames=True), FLAGS.batch_size),
        "full_per_record": readers.build_dataset(files, readers.ReaderConfig(),
                                                 FLAGS.batch_size, by_batch=False),
        "select_per_record": readers.build_dataset(files, student, FLAGS.batch_size,
                                                   by_batch=False),
        "decode_select": decode_then_select(files, FLAGS.k, FLAGS.batch_size),
    }
    for ds in variants.values():
      one_pass(ds)  # warm-up: page cache, tracing
    rates = {name: [] for name in variants}
    cpu_ms = {name: [] for name in variants}
    for _ in range(FLAGS.rounds):
      for name, ds in variants.items():
        count, wall, cpu = one_pass(ds)
        rates[name].append(count / wall)
        cpu_ms[name].append(1000 * cpu / count)
  print(f"{FLAGS.num_videos} synthetic frame-level videos, k={FLAGS.k}, batch "
        f"{FLAGS.batch_size}, median of {FLAGS.rounds} rounds; share of raw: the median of "
        "each round's ratio to that round's raw read [lowest-highest round]")
  starter = statistics.median(rates["starter"])
  for name in variants:
    rate = statistics.median(rates[name])
    # Rates here move by tens of percent between rounds; a ratio within one round moves less.
    shares = [r / raw for r, raw in zip(rates[name], rates["raw"], strict=True)]
    print(f"  {name:17s} {rate:8.0f} videos/s  {statistics.median(cpu_ms[name]):6.2f} CPU ms/video"
          f"  {statistics.median(shares):5.2f} of raw [{min(shares):.2f}-{max(shares):.2f}]"
          f"  x{rate / starter:.2f} vs starter")


if __name__ == "__main__":
  app.run(main)
