"""yt8m: YouTube-8M video classification in TensorFlow 2 / Keras 3, with few-frame students."""

import os

# Keras picks its backend at import time; yt8m is TensorFlow-only (tf.data, tf.distribute).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Data files installed with the package (yt8m/data/README.md), found from any directory.
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SEGMENT_LABEL_IDS = os.path.join(DATA_DIR, "segment_label_ids.csv")
