"""Frame-level reader throughput: full videos (teacher) vs k selected frames (student).

  python -m benchmarks.bench_reader [--num_videos=2000] [--k=30] [--rounds=5]

Writes --num_videos synthetic frame-level videos (yt8m.synthetic, built-in mode, in a
temporary directory), then reads them with each variant in round-robin rounds after a
warm-up pass and reports the median videos/s and process CPU ms per video:

  full           every frame decoded (the teacher's input, [B, 300, 1152])
  select_decode  k frames picked from the undecoded byte strings, then decoded (yt8m's student)
  decode_select  all frames decoded, then k gathered (the naive student reader, for contrast)
"""

import statistics
import tempfile
import time

import tensorflow as tf
from absl import app, flags

from yt8m import frame_selection, readers, synthetic

flags.DEFINE_integer("num_videos", 2000, "Videos to write and read.")
flags.DEFINE_integer("k", 30, "Student frames.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("rounds", 5, "Timed passes per variant.")
FLAGS = flags.FLAGS


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


def main(_):
  with tempfile.TemporaryDirectory() as tmp:
    files = synthetic.generate(tmp, num_videos=FLAGS.num_videos, seed=0, num_shards=4)
    variants = {
        "full": readers.build_dataset(files, readers.ReaderConfig(), FLAGS.batch_size),
        "select_decode": readers.build_dataset(
            files, readers.ReaderConfig(student_frames=FLAGS.k), FLAGS.batch_size),
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
        f"{FLAGS.batch_size}, median of {FLAGS.rounds} rounds")
  base = statistics.median(rates["full"])
  for name in variants:
    rate = statistics.median(rates[name])
    print(f"  {name:14s} {rate:8.0f} videos/s  {statistics.median(cpu_ms[name]):6.2f} CPU ms/video"
          f"  x{rate / base:.2f} vs full")


if __name__ == "__main__":
  app.run(main)
