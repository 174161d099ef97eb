"""yt8m: YouTube-8M video classification in TensorFlow 2 / Keras 3, with few-frame students."""

import os

# Keras picks its backend at import time; yt8m is TensorFlow-only (tf.data, tf.distribute).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
