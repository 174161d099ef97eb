"""tf.distribute on CPU: 2 logical devices vs 1, and 2 worker processes on 127.0.0.1."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SAMPLE

WORKER = str(REPO / "tests" / "distributed_worker.py")


def run_worker(mode, pattern, train_dir, out, env=None):
  return subprocess.Popen([sys.executable, WORKER, mode, pattern, str(train_dir), str(out)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc):
  output, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, output[-3000:]


def weights(path):
  data = np.load(path)
  return data, [data[k] for k in sorted(data.files) if k.startswith("w")]


@pytest.mark.slow
def test_two_logical_cpus_train_like_one_device(tmp_path):
  pattern = str(SAMPLE / "video_level_2018" / "validate0000.tfrecord")
  for mode in ("one", "mirrored"):
    finish(run_worker(mode, pattern, tmp_path / mode, tmp_path / f"{mode}.npz"))
  one, one_w = weights(tmp_path / "one.npz")
  two, two_w = weights(tmp_path / "mirrored.npz")
  assert one["step"] == two["step"] == 6
  np.testing.assert_allclose(two["label_loss"], one["label_loss"], rtol=1e-5)
  for a, b in zip(one_w, two_w, strict=True):
    np.testing.assert_allclose(b, a, atol=1e-5)


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_two_workers_on_localhost_end_identical(tmp_path):
  pattern = str(SAMPLE / "video_level_2018" / "validate000[01].tfrecord")
  cluster = [f"127.0.0.1:{p}" for p in free_ports(2)]
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG='{"cluster": {"worker": %s}, "task": {"type": "worker", '
               '"index": %d}}' % (str(cluster).replace("'", '"'), index))
    procs.append(run_worker("worker", pattern, tmp_path / f"w{index}", tmp_path / f"w{index}.npz",
                            env))
  for proc in procs:
    finish(proc)
  first, first_w = weights(tmp_path / "w0.npz")
  second, second_w = weights(tmp_path / "w1.npz")
  assert first["step"] == second["step"] == 6
  for a, b in zip(first_w, second_w, strict=True):
    np.testing.assert_array_equal(a, b)
  # Only the chief writes the run directory; the other worker's scratch is gone.
  assert (tmp_path / "w0" / "model_flags.json").exists()
  assert not (tmp_path / "w1").exists()
