"""Which k frames of a video a student sees.

Every strategy is a function of (num_frames, k[, seed]) that returns the selected frame
indices of ONE video, ascending (time order), as an int32 vector of length min(k, n) where
n = num_frames. A video shorter than k frames yields all of its n frames, never an empty or
padded selection. The reader applies this before decoding, so decode cost scales with k.

Definitions (n = true number of frames after truncation to max_frames, m = min(k, n)):

  uniform            frames floor(i * n / m), i = 0..m-1: evenly spaced over the TRUE length,
                     starting at frame 0. For n = 300 and k dividing 300 this is the paper's
                     "every j-th frame" grid 0, j, 2j, ...
  uniform_padded     the authors' fixed grid 0, j, 2j, ... with j = max_frames // k over the
                     300-frame padded tensor; grid points at or beyond n are dropped, so a short
                     video gets only ceil(n / j) frames (kept for faithful comparison).
  uniform, jittered  (training only, --uniform_jitter) one frame drawn uniformly from each of
                     uniform's m stretches [floor(i * n / m), floor((i + 1) * n / m)), afresh on
                     every visit (TSN's segment sampling): the augmentation that random-k gets
                     from its fresh draws, keeping uniform's even coverage; evaluation keeps the
                     grid.
  random             m distinct frames drawn uniformly without replacement, sorted. Training
                     draws afresh on every call (every epoch); evaluation uses a seed derived
                     from the video id, so a video always gets the same frames.
  first              frames 0..m-1.
  middle             m consecutive frames centred in the video: start (n - m) // 2.
  last               frames n-m..n-1.
  first_middle_last  three consecutive runs: ceil(m/3) frames at the start, ceil((m - that)/2)
                     centred in the video, the rest at the end (k = 10 -> 4 + 3 + 3).

`learned` (SELECTIONS, not STRATEGIES) is chosen by the model itself from every frame
(yt8m/models/selector.py): the reader then hands over all frames.
"""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("uniform", "uniform_padded", "random", "first", "middle", "last",
              "first_middle_last")
LEARNED = "learned"
SELECTIONS = STRATEGIES + (LEARNED,)  # what --frame_selection accepts


def check_strategy(strategy: str, allowed: tuple[str, ...] = STRATEGIES) -> None:
  if strategy not in allowed:
    raise ValueError(f"unknown frame selection {strategy!r}; choose one of {', '.join(allowed)}")


def select_frames(num_frames: tf.Tensor,
                  k: int,
                  strategy: str,
                  max_frames: int = 300,
                  seed: tf.Tensor | None = None,
                  jitter: bool = False) -> tf.Tensor:
  """Indices of the frames one video's student sees.

  Args:
    num_frames: scalar int, the video's true number of frames (>= 1, <= max_frames).
    k: the student's frame budget (>= 1).
    strategy: one of STRATEGIES.
    max_frames: length of the padded grid, used by `uniform_padded` only.
    seed: for `random` and a jittered `uniform`: a shape-[2] int64 stateless seed
      (deterministic selection), or None to draw from the global random state (fresh on every
      call).
    jitter: `uniform` only: one frame drawn in each stretch instead of its first frame.

  Returns:
    int32 vector of ascending frame indices, length min(k, num_frames) (fewer for
    `uniform_padded` on short videos).
  """
  check_strategy(strategy)
  if k < 1:
    raise ValueError(f"student_frames must be >= 1, got {k}")
  if jitter and strategy != "uniform":
    raise ValueError(f"jitter applies to the uniform selection, not {strategy!r}")
  n = tf.cast(num_frames, tf.int32)
  m = tf.minimum(n, k)
  steps = tf.range(m, dtype=tf.int32)
  if strategy == "uniform":
    # int64 keeps i * n exact; floor division gives the evenly spaced grid.
    n64, m64 = tf.cast(n, tf.int64), tf.cast(m, tf.int64)
    starts = tf.cast(steps, tf.int64) * n64 // m64
    if not jitter:
      return tf.cast(starts, tf.int32)
    widths = (tf.cast(steps, tf.int64) + 1) * n64 // m64 - starts  # >= 1 because m <= n
    draws = (tf.random.uniform(tf.shape(steps)) if seed is None else
             tf.random.stateless_uniform(tf.shape(steps), seed=seed))
    offsets = tf.minimum(tf.cast(draws * tf.cast(widths, tf.float32), tf.int64), widths - 1)
    return tf.cast(starts + offsets, tf.int32)
  if strategy == "uniform_padded":
    stride = max(max_frames // k, 1)
    grid = tf.range(k, dtype=tf.int32) * stride
    return tf.boolean_mask(grid, grid < n)
  if strategy == "random":
    shape = tf.reshape(n, [1])
    if seed is None:
      scores = tf.random.uniform(shape)
    else:
      scores = tf.random.stateless_uniform(shape, seed=seed)
    return tf.sort(tf.math.top_k(scores, k=m, sorted=False).indices)
  if strategy == "first":
    return steps
  if strategy == "middle":
    return (n - m) // 2 + steps
  if strategy == "last":
    return n - m + steps
  # first_middle_last: three runs that never overlap because n >= m.
  n_first = (m + 2) // 3
  n_middle = (m - n_first + 1) // 2
  n_last = m - n_first - n_middle
  middle_start = tf.clip_by_value((n - n_middle) // 2, n_first, n - n_last - n_middle)
  return tf.concat([
      tf.range(n_first, dtype=tf.int32),
      middle_start + tf.range(n_middle, dtype=tf.int32),
      n - n_last + tf.range(n_last, dtype=tf.int32),
  ], axis=0)


def select_frames_batch(num_frames: tf.Tensor, k: int, strategy: str,
                        max_frames: int = 300) -> tf.Tensor:
  """`select_frames` for a [B] batch of deterministic selections at once (no per-video ops).

  Returns [B, k] int32: row b is select_frames(num_frames[b], k, strategy, max_frames) padded
  with -1. `random` needs a seed per video: use select_frames row by row.
  """
  check_strategy(strategy)
  if strategy == "random":
    raise ValueError("select_frames_batch takes deterministic strategies; random needs a "
                     "seed per video (select_frames)")
  if k < 1:
    raise ValueError(f"student_frames must be >= 1, got {k}")
  n = tf.cast(num_frames, tf.int32)[:, None]
  m = tf.minimum(n, k)
  steps = tf.range(k, dtype=tf.int32)[None, :]
  if strategy == "uniform":
    picked = tf.cast(tf.cast(steps, tf.int64) * tf.cast(n, tf.int64) //
                     tf.cast(tf.maximum(m, 1), tf.int64), tf.int32)
  elif strategy == "uniform_padded":
    picked = steps * max(max_frames // k, 1)
    m = tf.reduce_sum(tf.cast(picked < n, tf.int32), 1, keepdims=True)  # an ascending grid
  elif strategy == "first":
    picked = steps
  elif strategy == "middle":
    picked = (n - m) // 2 + steps
  elif strategy == "last":
    picked = n - m + steps
  else:  # first_middle_last, as select_frames
    n_first = (m + 2) // 3
    n_middle = (m - n_first + 1) // 2
    n_last = m - n_first - n_middle
    middle_start = tf.clip_by_value((n - n_middle) // 2, n_first, n - n_last - n_middle)
    picked = tf.where(steps < n_first, steps,
                      tf.where(steps < n_first + n_middle, middle_start + steps - n_first,
                               n - m + steps))
  return tf.where(steps < m, picked, -1)


def gather_selected(features: tf.Tensor, num_frames: tf.Tensor, k: int, strategy: str,
                    max_frames: int = 300, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
  """Applies a strategy to already dense frames (e.g. a serving input).

  Args:
    features: [B, T, D] frames, zero padded after each row's num_frames.
    num_frames: [B] real frames per row.

  Returns:
    ([B, k, D] selected frames, zero padded; [B] selected counts). `random` uses a fixed
    stateless seed per video length, so serving is deterministic.
  """
  length = tf.minimum(tf.cast(num_frames, tf.int32), max_frames)

  def one(args):
    frames, n = args
    seed_pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(n, tf.int64)])
    idx = select_frames(tf.maximum(n, 1), k, strategy, max_frames, seed_pair)
    picked = tf.gather(frames, idx)
    return tf.pad(picked, [[0, k - tf.size(idx)], [0, 0]]), tf.size(idx)

  picked, counts = tf.map_fn(
      one, (features, length),
      fn_output_signature=(tf.TensorSpec([k, None], features.dtype),
                           tf.TensorSpec([], tf.int32)))
  return picked, counts
