"""Trains a small MoE under a given strategy and saves its final weights (for
tests/test_distributed.py, which runs this in fresh processes: logical devices and
TF_CONFIG must be set before TensorFlow starts).

  python tests/distributed_worker.py MODE DATA_GLOB TRAIN_DIR OUT.npz
  MODE: one | mirrored (2 logical CPUs) | worker (TF_CONFIG names the cluster)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf

mode, pattern, train_dir, out_path = sys.argv[1:5]
if mode == "mirrored":
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402 (after the logical devices are set)
import numpy as np  # noqa: E402

from yt8m import readers, run_config, train_lib  # noqa: E402

keras.utils.set_random_seed(7)
strategy = {
    "one": lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
    "mirrored": lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
    "worker": tf.distribute.MultiWorkerMirroredStrategy,
}[mode]()
run = run_config.RunConfig(model="MoeModel", feature_names=("mean_rgb", "mean_audio"),
                           feature_sizes=(1024, 128), frame_features=False, num_classes=3862)
# The same global batch (16) of the same records on one device and on two replicas; a small
# clipping norm so that clipping really acts on the summed gradient.
config = train_lib.TrainConfig(
    train_dir=train_dir, batch_size=16 // strategy.num_replicas_in_sync, num_epochs=1,
    max_steps=6, base_learning_rate=0.05, shuffle_buffer=1, num_readers=1, seed=3,
    metrics_every=3, clip_gradient_norm=0.05)
result = train_lib.train(run, readers.list_files(pattern), config, strategy)
weights = {f"w{i}": v.numpy() for i, v in enumerate(result["model"].trainable_variables)}
np.savez(out_path, step=result["step"], label_loss=result["label_loss"], **weights)
