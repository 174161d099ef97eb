"""Synthetic frame-level YouTube-8M shards in the real format, for few-frame students.

Real frame-level YouTube-8M data is not available offline, only real *video-level* data. This
module writes frame-level `tf.train.SequenceExample` shards in the exact real layout (context
`id`/`labels`, feature lists `rgb` 1024 x uint8 and `audio` 128 x uint8 per frame), generated
by a model in which a video is a sequence of shots, each label is visible in only some shots,
and intros/outros are usually background. So a model that sees k of the frames loses
information, and which k frames it sees matters. docs/SYNTHETIC.md describes the model.

Library entry point: `generate(...)`. Command line:

  python -m yt8m.synthetic --output_dir=DIR --num_videos=N --seed=S
    [--from_video_level=GLOB] [--num_shards=K] [--top_classes=N] [--split=train]
    [--world_seed=0] [--num_classes=3862]
    [--segment_ratings [--segment_label_ids_file=yt8m/data/segment_label_ids.csv]]
    [--structure=shots|bursts]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import zlib

import numpy as np

if __name__ == "__main__":  # python -m yt8m.synthetic: quiet before TensorFlow's import
  import yt8m.cli  # noqa: F401

import tensorflow as tf

from yt8m import outputs, readers

# ----------------------------------------------------------------------------------------------
# Format constants (real YouTube-8M frame-level layout).
RGB_DIM = 1024
AUDIO_DIM = 128
FEATURE_DIM = RGB_DIM + AUDIO_DIM
QUANT_MIN, QUANT_MAX = readers.MIN_QUANTIZED_VALUE, readers.MAX_QUANTIZED_VALUE
VISIBLE_KEY = "synthetic_visible_labels"
SEGMENT_KEYS = ("segment_labels", "segment_start_times", "segment_scores")  # 2019 context
GENERATOR_VERSION = 1

# ----------------------------------------------------------------------------------------------
# Model constants. Values "from the sample" were measured on the real 2018 video-level validate
# data: per-dim means/variances on the project sample (1,202 videos; the 11,790-video shared set
# agrees to 2 digits), ridge residuals and direction norms on the 11,790-video set.

# Anchored mode: ridge penalty of D = (Y'Y + lam I)^-1 Y'(X - mu); 3 keeps single-example labels
# from copying their one video's residual in full. Rank of the residual PCA.
RIDGE_LAMBDA = 3.0
RESIDUAL_RANK = 64

# Noise model (variances as fractions of the video-level residual covariance Sigma_R).
VIDEO_OFFSET_VAR = 0.9  # per-video "scene" offset ~ N(0, 0.9 Sigma_R)
SHOT_OFFSET_VAR = 1.0  # per-shot offset ~ N(0, 1.0 Sigma_R), fresh for every shot
AR_RHO = 0.85  # frame noise e_t = rho e_{t-1} + sqrt(1 - rho^2) eps_t, restarted at each cut
# Real frame features are PCA-whitened before quantization, so a frame's per-dimension variance
# is about 1: the frame noise fills what video-level + shot variance leave, with a floor.
FRAME_VAR_TARGET = 1.0
FRAME_NOISE_VAR_FLOOR = 0.2

# Label rendering.
VISIBILITY_RANGE = (0.1, 0.8)  # per-label P(visible in a content shot), log-uniform per world
SHOT_GAIN_RANGE = (0.75, 1.25)  # per (shot, label) strength jitter
AMPLITUDE_CAP = 6.0  # per-frame amplitude = min(1 / visible fraction, cap)

# Temporal layout.
LENGTH_MIXTURE = ((0.12, 10, 119), (0.80, 120, 300), (0.08, 301, 360))  # (prob, lo, hi) frames
SHOT_LEN_MEDIAN, SHOT_LEN_SIGMA, SHOT_LEN_MIN, SHOT_LEN_MAX = 9.0, 0.55, 3, 30
MIN_LEN_FOR_INTRO_OUTRO = 40
INTRO_PROB, INTRO_FRACTION = 0.60, (0.04, 0.12)
OUTRO_PROB, OUTRO_FRACTION = 0.80, (0.05, 0.20)
MIN_INTRO_OUTRO_FRAMES = 4

# --structure=bursts: each label shows only in 1-3 short bursts at random places in the content,
# everything else is background, and a label's look drifts along the video. Harder for a frame
# picker (few frames carry a label, and where varies per video) and for a recurrent teacher
# (long uninformative stretches between the bursts). Its own length mix, all within 300 frames.
STRUCTURES = ("shots", "bursts")
BURSTS_LENGTH_MIXTURE = ((0.30, 20, 119), (0.70, 120, 300))
BURSTS_PER_LABEL = (1, 3)  # uniform integer, inclusive
BURST_FRAMES = (3, 8)  # frames per burst, uniform integer, inclusive
DRIFT_RADIANS = np.pi / 3  # a label's look turns this far from its start to the video's end

# Built-in (procedural) world.
BUILTIN_NUM_TOPICS = 64
BUILTIN_ZIPF_OFFSET = 2.0  # p(label c) ~ 1 / (c + 2): label 0 in ~20% of videos, as in the sample
BUILTIN_EXTRA_LABELS_MEAN = 2.07  # labels per video = 1 + min(Poisson(2.07), 14): mean 3.07
BUILTIN_MAX_LABELS = 15
BUILTIN_TOPIC_SHARE = 0.7  # P(a label is drawn from the video's topic rather than globally)
BUILTIN_TOPIC_DIRECTION_WEIGHT = 0.3  # share of a direction's variance shared with its topic
BUILTIN_DIRECTION_NORM = (3.5, 0.3)  # |D_c| ~ lognormal(median 3.5, sigma 0.3); sample: 3-4
BUILTIN_MU_STD = (0.016, 0.027)  # per-dim std of mu, (rgb, audio), from the sample
BUILTIN_VIDEO_VAR = (0.211, 0.468)  # per-dim variance of mean_rgb / mean_audio, from the sample
BUILTIN_RESIDUAL_VAR = (0.159, 0.339)  # per-dim ridge-residual variance (rgb, audio)
BUILTIN_RESIDUAL_EIG = (0.9, 0.2)  # residual PCA eigenvalue i (0-based) = 0.9 (i + 1)^-0.2

# 2019 segment ratings (--segment_ratings): per (video, rated label), at most this many
# 5-frame segments showing the label in every frame (score 1) and showing it in none (0).
# The real 2019 validation set has 5.0 rated segments per video, mostly for one class.
SEGMENT_POSITIVES, SEGMENT_NEGATIVES = 3, 2
SEGMENT_REDRAWS = 1000  # a video with nothing to rate is drawn again, at most this often

_WORLD_TAG = 0x57_4F_52_4C  # separates the world's random stream from the videos'
_VIDEO_TAG = 0x56_49_44_45
_SEGMENT_TAG = 0x53_45_47_53
_DRIFT_TAG = 0x44_52_49_46


# ----------------------------------------------------------------------------------------------
# The world.


@dataclasses.dataclass(eq=False)  # compare worlds with fingerprint(), not == on arrays
class World:
  """Everything shared by all videos generated with one world_seed (and the same inputs)."""

  mode: str  # "builtin" or "anchored"
  world_seed: int
  num_classes: int
  mu: np.ndarray  # (1152,) float32, mean feature
  directions: np.ndarray  # (C, 1152) float32, label directions D
  residual_basis: np.ndarray  # (r, 1152) float32, rows sqrt(eigenvalue) * component
  residual_diag_std: np.ndarray  # (1152,) float32, std not covered by the low-rank part
  frame_noise_std: np.ndarray  # (1152,) float32, std of the AR(1) frame noise
  visibility: np.ndarray  # (C,) float64, P(label visible in a content shot)
  # Anchored mode: real label sets (sorted int64 arrays) and where they came from.
  anchor_label_sets: list[np.ndarray] | None = None
  source_files: list[str] = dataclasses.field(default_factory=list)
  num_anchor_unlabelled: int = 0
  # Built-in mode: label-set sampler.
  label_probs: np.ndarray | None = None  # (C,) global Zipf probabilities
  label_topic: np.ndarray | None = None  # (C,) topic of each label
  topic_probs: np.ndarray | None = None  # (K,) topic probabilities (= topic's label mass)
  # Derived lookup tables, filled lazily (not part of the world's identity).
  _cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  def fingerprint(self) -> str:
    """SHA-256 over all arrays of the world; equal fingerprints mean the same world."""
    h = hashlib.sha256()
    h.update(f"{self.mode}|{self.num_classes}|{self.world_seed}".encode())
    for arr in (self.mu, self.directions, self.residual_basis, self.residual_diag_std,
          self.frame_noise_std, self.visibility, self.label_probs, self.label_topic,
          self.topic_probs):
      if arr is not None:
        h.update(np.ascontiguousarray(arr).tobytes())
    for s in self.anchor_label_sets or []:
      h.update(s.tobytes() + b"|")
    return h.hexdigest()


def _world_rng(world_seed: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([_WORLD_TAG, world_seed]))


def _split_key(split: str) -> int:
  """Stable (process-independent) integer for a split name, so splits draw different videos."""
  return zlib.crc32(split.encode("utf-8"))


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """Independent stream per video: video i does not depend on how many videos come before."""
  return np.random.default_rng(np.random.SeedSequence([_VIDEO_TAG, seed, _split_key(split), index]))


def segment_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The ratings' own stream: rating a video does not change how it is drawn."""
  return np.random.default_rng(
      np.random.SeedSequence([_SEGMENT_TAG, seed, _split_key(split), index]))


def _per_dim(rgb_value: float, audio_value: float) -> np.ndarray:
  return np.concatenate([np.full(RGB_DIM, rgb_value), np.full(AUDIO_DIM, audio_value)])


def _draw_visibility(rng: np.random.Generator, num_classes: int) -> np.ndarray:
  lo, hi = VISIBILITY_RANGE
  return np.exp(rng.uniform(np.log(lo), np.log(hi), num_classes))


def _frame_noise_std(video_var: np.ndarray, residual_var: np.ndarray) -> np.ndarray:
  noise_var = FRAME_VAR_TARGET - video_var - SHOT_OFFSET_VAR * residual_var
  return np.sqrt(np.maximum(noise_var, FRAME_NOISE_VAR_FLOOR)).astype(np.float32)


def build_builtin_world(world_seed: int, num_classes: int = 3862) -> World:
  """Fully procedural world: Zipf label frequencies, topic co-occurrence, random directions."""
  rng = _world_rng(world_seed)
  c = num_classes
  probs = 1.0 / (np.arange(c) + BUILTIN_ZIPF_OFFSET)
  probs /= probs.sum()
  k = min(BUILTIN_NUM_TOPICS, c)
  topic = rng.integers(0, k, c)
  topic_probs = np.bincount(topic, weights=probs, minlength=k)
  topic_probs /= topic_probs.sum()

  # Directions: anisotropic like the real ones (audio dims carry more per-dim variance),
  # partly shared within a topic so co-occurring labels also look alike.
  dim_scale = np.sqrt(_per_dim(*BUILTIN_RESIDUAL_VAR))
  topic_dirs = rng.standard_normal((k, FEATURE_DIM)) * dim_scale
  own_dirs = rng.standard_normal((c, FEATURE_DIM)) * dim_scale
  w = BUILTIN_TOPIC_DIRECTION_WEIGHT
  dirs = np.sqrt(w) * topic_dirs[topic] + np.sqrt(1.0 - w) * own_dirs
  norms = np.exp(rng.normal(np.log(BUILTIN_DIRECTION_NORM[0]), BUILTIN_DIRECTION_NORM[1], c))
  dirs *= (norms / np.linalg.norm(dirs, axis=1))[:, None]

  mu = rng.standard_normal(FEATURE_DIM) * _per_dim(*BUILTIN_MU_STD)

  # Residual: random orthonormal low-rank part with a slowly decaying spectrum + diagonal.
  q, _ = np.linalg.qr(rng.standard_normal((FEATURE_DIM, RESIDUAL_RANK)))
  eig = BUILTIN_RESIDUAL_EIG[0] * np.arange(1, RESIDUAL_RANK + 1) ** -BUILTIN_RESIDUAL_EIG[1]
  basis = (q * np.sqrt(eig)).T
  residual_var = _per_dim(*BUILTIN_RESIDUAL_VAR)
  diag_var = np.maximum(residual_var - (basis**2).sum(0), 1e-4)

  return World(
    mode="builtin", world_seed=world_seed, num_classes=c,
    mu=mu.astype(np.float32), directions=dirs.astype(np.float32),
    residual_basis=basis.astype(np.float32),
    residual_diag_std=np.sqrt(diag_var).astype(np.float32),
    frame_noise_std=_frame_noise_std(_per_dim(*BUILTIN_VIDEO_VAR), residual_var),
    visibility=_draw_visibility(rng, c),
    label_probs=probs, label_topic=topic, topic_probs=topic_probs,
  )


def read_video_level(pattern: str, num_classes: int) -> tuple[np.ndarray, list[np.ndarray], list[str], int]:
  """Reads real video-level TFRecords matching `pattern` with yt8m.readers (files in sorted
  order; bad records raise readers.DataError naming file, record and video).

  Returns (X (N, 1152) float64 = [mean_rgb | mean_audio], sorted label arrays, files,
  number of skipped unlabelled videos). Videos without labels are skipped.
  """
  try:
    files = readers.list_files(pattern)
  except readers.DataError as e:
    raise ValueError(f"--from_video_level: {e}") from None
  config = readers.ReaderConfig(feature_names=("mean_rgb", "mean_audio"),
                  feature_sizes=(RGB_DIM, AUDIO_DIM), frame_features=False,
                  num_classes=num_classes, require_labels=False)
  feats, sets, unlabelled = [], [], 0
  for batch in readers.iterate_numpy(files, config, batch_size=1024):
    labelled = batch["labels"].any(axis=1)
    unlabelled += int((~labelled).sum())
    feats.append(batch["features"][labelled].astype(np.float64))
    sets.extend(np.flatnonzero(row).astype(np.int64) for row in batch["labels"][labelled])
  if not sets:
    raise ValueError(f"--from_video_level={pattern!r}: no labelled videos to anchor on "
             f"({unlabelled} unlabelled)")
  return np.concatenate(feats), sets, files, unlabelled


def build_anchored_world(pattern: str, world_seed: int, num_classes: int = 3862) -> World:
  """World estimated from real video-level data; world_seed only sets label visibilities."""
  x, sets, files, unlabelled = read_video_level(pattern, num_classes)
  n = len(x)
  mu = x.mean(0)
  xc = x - mu
  present = np.unique(np.concatenate(sets))
  col = np.full(num_classes, -1)
  col[present] = np.arange(present.size)
  y = np.zeros((n, present.size))
  for i, s in enumerate(sets):
    y[i, col[s]] = 1.0
  gram = y.T @ y + RIDGE_LAMBDA * np.eye(present.size)
  d_present = np.linalg.solve(gram, y.T @ xc)
  dirs = np.zeros((num_classes, FEATURE_DIM))
  dirs[present] = d_present  # labels absent from the anchors are never drawn: zero direction

  resid = xc - y @ d_present
  cov = resid.T @ resid / n
  eig, vec = np.linalg.eigh(cov)
  order = np.argsort(eig)[::-1][:RESIDUAL_RANK]
  eig, vec = np.maximum(eig[order], 0.0), vec[:, order]
  vec *= np.where(vec[np.abs(vec).argmax(0), np.arange(vec.shape[1])] < 0, -1.0, 1.0)  # sign fix
  basis = (vec * np.sqrt(eig)).T
  residual_var = np.diag(cov)
  diag_var = np.maximum(residual_var - (basis**2).sum(0), 1e-4)

  return World(
    mode="anchored", world_seed=world_seed, num_classes=num_classes,
    mu=mu.astype(np.float32), directions=dirs.astype(np.float32),
    residual_basis=basis.astype(np.float32),
    residual_diag_std=np.sqrt(diag_var).astype(np.float32),
    frame_noise_std=_frame_noise_std(x.var(0), residual_var),
    visibility=_draw_visibility(_world_rng(world_seed), num_classes),
    anchor_label_sets=sets, source_files=files, num_anchor_unlabelled=unlabelled,
  )


def build_world(world_seed: int = 0, num_classes: int = 3862, from_video_level: str | None = None) -> World:
  """The world for these inputs: anchored on real data if `from_video_level` is given."""
  if from_video_level:
    return build_anchored_world(from_video_level, world_seed, num_classes)
  return build_builtin_world(world_seed, num_classes)


# ----------------------------------------------------------------------------------------------
# Videos.


@dataclasses.dataclass
class Video:
  """One synthetic video, before serialization."""

  video_id: str
  labels: np.ndarray  # (L,) sorted unique int64
  features: np.ndarray  # (T, 1152) float32, before quantization
  shot_starts: np.ndarray  # (S,) first frame of each shot
  shot_visible: np.ndarray  # (S, L) bool, label j visible in shot s
  shot_kind: np.ndarray  # (S,) 0 content, 1 intro, 2 outro

  @property
  def num_frames(self) -> int:
    return int(self.features.shape[0])

  def frame_shot(self) -> np.ndarray:
    """(T,) index of the shot each frame belongs to."""
    sizes = np.diff(np.append(self.shot_starts, self.num_frames))
    return np.repeat(np.arange(len(sizes)), sizes)


def draw_length(rng: np.random.Generator, mixture: tuple = LENGTH_MIXTURE) -> int:
  """Frame count from a (prob, lo, hi) mixture (default: short / regular / over-300 videos)."""
  probs = np.array([m[0] for m in mixture])
  _, lo, hi = mixture[rng.choice(len(probs), p=probs / probs.sum())]
  return int(rng.integers(lo, hi + 1))


def _split_into_shots(rng: np.random.Generator, n: int) -> np.ndarray:
  """Shot lengths summing to n: clipped lognormal; a too-short tail merges into its neighbour."""
  lens = np.exp(rng.normal(np.log(SHOT_LEN_MEDIAN), SHOT_LEN_SIGMA, n // SHOT_LEN_MIN + 1))
  lens = np.clip(np.rint(lens), SHOT_LEN_MIN, SHOT_LEN_MAX).astype(np.int64)
  ends = np.cumsum(lens)
  k = int(np.searchsorted(ends, n)) + 1  # shots needed to cover n frames
  lens = lens[:k]
  lens[-1] = n - (ends[k - 2] if k > 1 else 0)
  if k > 1 and lens[-1] < SHOT_LEN_MIN:
    lens[-2] += lens[-1]
    lens = lens[:-1]
  return lens


def draw_shots(rng: np.random.Generator, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
  """(shot lengths, shot kinds) for a video: optional background intro, content, outro."""
  intro = outro = 0
  if num_frames >= MIN_LEN_FOR_INTRO_OUTRO:
    u = rng.random(4)
    if u[0] < INTRO_PROB:
      frac = INTRO_FRACTION[0] + u[1] * (INTRO_FRACTION[1] - INTRO_FRACTION[0])
      intro = max(MIN_INTRO_OUTRO_FRAMES, round(frac * num_frames))
    if u[2] < OUTRO_PROB:
      frac = OUTRO_FRACTION[0] + u[3] * (OUTRO_FRACTION[1] - OUTRO_FRACTION[0])
      outro = max(MIN_INTRO_OUTRO_FRAMES, round(frac * num_frames))
  parts, kinds = [], []
  for kind, n in ((1, intro), (0, num_frames - intro - outro), (2, outro)):
    if n > 0:
      lens = _split_into_shots(rng, n)
      parts.append(lens)
      kinds.append(np.full(len(lens), kind))
  return np.concatenate(parts), np.concatenate(kinds)


def _builtin_tables(world: World) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
  """CDFs for the built-in label sampler: (topic cdf, global cdf, labels per topic, their cdfs)."""
  if "tables" not in world._cache:
    members = [np.flatnonzero(world.label_topic == k) for k in range(len(world.topic_probs))]
    world._cache["tables"] = (np.cumsum(world.topic_probs), np.cumsum(world.label_probs),
                  members, [np.cumsum(world.label_probs[m]) for m in members])
  return world._cache["tables"]


def _sample_cdf(cdf: np.ndarray, u: float) -> int:
  return min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(cdf) - 1)


def anchor_pool(world: World, top_classes: int | None) -> list[np.ndarray]:
  """Real label sets restricted to labels < top_classes, empty sets dropped."""
  key = ("pool", top_classes)
  if key not in world._cache:
    sets = world.anchor_label_sets
    if top_classes is not None:
      sets = [s[s < top_classes] for s in sets if s[0] < top_classes]
    if not sets:
      raise ValueError(f"--top_classes={top_classes}: no real video in --from_video_level "
               f"has a label < {top_classes}")
    world._cache[key] = sets
  return world._cache[key]


def draw_label_set(world: World, rng: np.random.Generator, top_classes: int | None = None) -> np.ndarray:
  """A video's sorted label set: a real one (anchored) or from the topic model (built-in)."""
  if world.anchor_label_sets is not None:
    pool = anchor_pool(world, top_classes)
    return pool[int(rng.integers(len(pool)))]
  keep = world.num_classes if top_classes is None else top_classes
  topic_cdf, global_cdf, members, member_cdfs = _builtin_tables(world)
  for _ in range(100_000):  # rejection for top_classes (~19% acceptance even at top_classes=1)
    topic = _sample_cdf(topic_cdf, rng.random())
    n = 1 + min(int(rng.poisson(BUILTIN_EXTRA_LABELS_MEAN)), BUILTIN_MAX_LABELS - 1)
    chosen: set[int] = set()
    for _ in range(50 * n):  # bounded: a small topic may not hold n distinct labels
      if len(chosen) == n:
        break
      if rng.random() < BUILTIN_TOPIC_SHARE:
        chosen.add(int(members[topic][_sample_cdf(member_cdfs[topic], rng.random())]))
      else:
        chosen.add(_sample_cdf(global_cdf, rng.random()))
    labels = np.array(sorted(c for c in chosen if c < keep), dtype=np.int64)
    if labels.size:
      return labels
  raise ValueError(f"--top_classes={top_classes}: could not draw a label set with a label < {keep}")


def drift_directions(world: World) -> np.ndarray:
  """(C, 1152) each label's second look, orthogonal to D_c with the same norm (bursts only).

  Drawn from the world seed with per-dimension scale of the directions' spread, so a drifting
  label stays in the same feature subspace as real labels; not part of the fingerprint because
  it is a function of the world.
  """
  if "drift" not in world._cache:
    rng = np.random.default_rng([_DRIFT_TAG, world.world_seed])
    d = world.directions.astype(np.float64)
    scale = d.std(0) + 1e-6
    e = rng.standard_normal(d.shape) * scale
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    unit = d / np.maximum(norms, 1e-12)
    e -= (e * unit).sum(1, keepdims=True) * unit  # orthogonal to D_c
    e *= norms / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    world._cache["drift"] = e.astype(np.float32)
  return world._cache["drift"]


def _burst_layout(rng: np.random.Generator, num_frames: int, n_labels: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(shot lengths, kinds, visible (S, L)) for --structure=bursts.

  The usual background intro/outro and content shots, then each label's bursts placed
  uniformly in the content; every burst boundary is a cut (the burst is its own shot, with its
  own scene offset and noise restart), and overlapping bursts show their labels together.
  """
  base_lens, base_kinds = draw_shots(rng, num_frames)
  frame_kind = np.repeat(base_kinds, base_lens)
  content = np.flatnonzero(frame_kind == 0)
  lo, hi = int(content[0]), int(content[-1]) + 1
  vis = np.zeros((num_frames, n_labels), bool)
  for j in range(n_labels):
    for _ in range(int(rng.integers(BURSTS_PER_LABEL[0], BURSTS_PER_LABEL[1] + 1))):
      n = min(int(rng.integers(BURST_FRAMES[0], BURST_FRAMES[1] + 1)), hi - lo)
      start = int(rng.integers(lo, hi - n + 1))
      vis[start:start + n, j] = True
  base_shot = np.repeat(np.arange(len(base_lens)), base_lens)
  change = np.ones(num_frames, bool)
  change[1:] = (base_shot[1:] != base_shot[:-1]) | (vis[1:] != vis[:-1]).any(1)
  starts = np.flatnonzero(change)
  lens = np.diff(np.append(starts, num_frames))
  return lens, frame_kind[starts], vis[starts]


def _shot_visibility(rng: np.random.Generator, visibility: np.ndarray, kinds: np.ndarray
                     ) -> np.ndarray:
  """(S, L) bool for --structure=shots: label j shows in content shot s with probability
  visibility[j]; a label shown nowhere is put in one random content shot."""
  content = kinds == 0
  visible = (rng.random((len(kinds), len(visibility))) < visibility) & content[:, None]
  content_idx = np.flatnonzero(content)
  for j in np.flatnonzero(~visible.any(0)):
    visible[content_idx[rng.integers(len(content_idx))], j] = True
  return visible


def make_video(world: World, rng: np.random.Generator, video_id: str,
         top_classes: int | None = None, structure: str = "shots") -> Video:
  """Draws one video: label set, length, shots, visibility and the (T, 1152) float features.

  structure: "shots" (labels visible in whole shots, by per-label visibility) or "bursts"
  (1-3 short bursts per label, background elsewhere, the look drifting along the video).
  """
  labels = draw_label_set(world, rng, top_classes)
  n_labels = len(labels)
  if structure == "bursts":
    t = draw_length(rng, BURSTS_LENGTH_MIXTURE)
    shot_lens, kinds, visible = _burst_layout(rng, t, n_labels)
  else:
    t = draw_length(rng)
    shot_lens, kinds = draw_shots(rng, t)
    visible = _shot_visibility(rng, world.visibility[labels], kinds)
  s = len(shot_lens)
  starts = np.concatenate([[0], np.cumsum(shot_lens)[:-1]])

  # Amplitude so that the frame-mean label contribution is D (1 / visible fraction, capped).
  gain = rng.uniform(*SHOT_GAIN_RANGE, (s, n_labels)) * visible
  frac = (gain * shot_lens[:, None]).sum(0) / t
  gain *= np.minimum(1.0 / frac, AMPLITUDE_CAP)

  # Per-shot content (labels + shot offset), per-video offset, AR(1) frame noise.
  z = rng.standard_normal((s + 1, world.residual_basis.shape[0])).astype(np.float32)
  eps = rng.standard_normal((s + 1, FEATURE_DIM), dtype=np.float32)
  offsets = z @ world.residual_basis + eps * world.residual_diag_std
  label_part = gain.astype(np.float32) @ world.directions[labels]
  if structure == "bursts":  # the look turns from D toward its second look along the video
    angle = DRIFT_RADIANS * (starts + shot_lens / 2.0) / t
    label_part = (np.cos(angle)[:, None].astype(np.float32) * label_part
                  + np.sin(angle)[:, None].astype(np.float32)
                  * (gain.astype(np.float32) @ drift_directions(world)[labels]))
  shot_mean = (label_part
         + np.float32(np.sqrt(SHOT_OFFSET_VAR)) * offsets[1:]
         + np.float32(np.sqrt(VIDEO_OFFSET_VAR)) * offsets[0] + world.mu)
  # Innovations are uniform with unit variance (5x cheaper to draw than normals); the AR(1) sum
  # makes each frame's noise nearly Gaussian (excess kurtosis -0.19). A shot's first frame is
  # drawn from the stationary N(0, 1) directly.
  noise = rng.random((t, FEATURE_DIM), dtype=np.float32)
  noise -= np.float32(0.5)
  noise *= np.float32(np.sqrt(12.0))
  noise[starts] = rng.standard_normal((s, FEATURE_DIM), dtype=np.float32)
  a, b = np.float32(AR_RHO), np.float32(np.sqrt(1.0 - AR_RHO**2))
  for pos in range(1, int(shot_lens.max())):  # all shots at once, by position within the shot
    rows = starts[shot_lens > pos] + pos
    noise[rows] = a * noise[rows - 1] + b * noise[rows]  # unit variance; fresh at each cut
  features = np.repeat(shot_mean, shot_lens, axis=0) + noise * world.frame_noise_std
  return Video(video_id=video_id, labels=labels, features=features, shot_starts=starts,
         shot_visible=visible, shot_kind=kinds)


def rate_segments(video: Video, rng: np.random.Generator, classes: np.ndarray | None = None,
                  max_frames: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """2019-style ratings of a video: (segment_labels, segment_start_times, segment_scores).

  Segments start at 0, 5, 10, ... and lie inside the first max_frames frames (what a reader
  keeps). For each label of the video (only those in `classes`, if given), up to
  SEGMENT_POSITIVES segments where the label is visible in all 5 frames are rated 1 and up to
  SEGMENT_NEGATIVES where it is visible in none are rated 0; segments where it is visible in
  some frames only are not rated. Ordered by label, then start time.
  """
  size = readers.SEGMENT_SIZE
  count = min(video.num_frames, max_frames) // size
  shown = video.shot_visible[video.frame_shot()[:count * size]].reshape(
      count, size, video.labels.size)
  everywhere, nowhere = shown.all(axis=1), ~shown.any(axis=1)  # (segments, labels)
  labels, starts, scores = [], [], []
  for j, label in enumerate(video.labels.tolist()):
    if classes is not None and label not in classes:
      continue
    for where, cap, value in ((everywhere, SEGMENT_POSITIVES, 1.0),
                              (nowhere, SEGMENT_NEGATIVES, 0.0)):
      candidates = np.flatnonzero(where[:, j])
      picked = candidates[rng.permutation(candidates.size)[:cap]]
      labels += [label] * picked.size
      starts += (picked * size).tolist()
      scores += [value] * picked.size
  order = np.lexsort((starts, labels))
  return (np.array(labels, np.int64)[order], np.array(starts, np.int64)[order],
          np.array(scores, np.float32)[order])


def quantize(x: np.ndarray) -> np.ndarray:
  """The real extractor's 8-bit quantization: round((clip(x, -2, 2) + 2) * 255 / 4)."""
  scale = np.float32(255.0 / (QUANT_MAX - QUANT_MIN))
  q = (np.asarray(x, np.float32) - np.float32(QUANT_MIN)) * scale  # == (clip(x) + 2) * 255/4
  np.clip(q, 0.0, 255.0, out=q)
  return np.rint(q, out=q).astype(np.uint8)


def serialize_video(video: Video, segments: tuple[np.ndarray, ...] | None = None) -> bytes:
  """Real frame-level SequenceExample + the `synthetic_visible_labels` ground-truth list;
  with `segments` (from rate_segments) also the 2019 context lists SEGMENT_KEYS."""
  q = quantize(video.features)
  rgb, audio = q[:, :RGB_DIM], q[:, RGB_DIM:]
  ex = tf.train.SequenceExample()
  ex.context.feature["id"].bytes_list.value.append(video.video_id.encode("utf-8"))
  ex.context.feature["labels"].int64_list.value.extend(video.labels.tolist())
  if segments is not None:
    labels, starts, scores = segments
    ex.context.feature["segment_labels"].int64_list.value.extend(labels.tolist())
    ex.context.feature["segment_start_times"].int64_list.value.extend(starts.tolist())
    ex.context.feature["segment_scores"].float_list.value.extend(scores.tolist())
  lists = ex.feature_lists.feature_list
  f_rgb, f_audio, f_vis = lists["rgb"].feature, lists["audio"].feature, lists[VISIBLE_KEY].feature
  shot_labels = [video.labels[row].tolist() for row in video.shot_visible]
  for i, shot in enumerate(video.frame_shot().tolist()):
    f_rgb.add().bytes_list.value.append(rgb[i].tobytes())
    f_audio.add().bytes_list.value.append(audio[i].tobytes())
    f_vis.add().int64_list.value.extend(shot_labels[shot])
  return ex.SerializeToString(deterministic=True)  # sorted map keys: byte-identical reruns


def _rated_video(world: World, rng: np.random.Generator, name: str, top_classes: int | None,
                 ratings_rng: np.random.Generator, classes: np.ndarray | None,
                 structure: str = "shots"):
  """(video, its ratings, redraws): the video is drawn again until it has something to rate."""
  video = make_video(world, rng, name, top_classes, structure=structure)
  for redraws in range(SEGMENT_REDRAWS):
    segments = rate_segments(video, ratings_rng, classes)
    if segments[0].size:
      return video, segments, redraws
    video = make_video(world, rng, name, top_classes, structure=structure)
  raise ValueError(f"no rateable video in {SEGMENT_REDRAWS} draws; do --top_classes and "
                   "--segment_label_ids_file share any class?")


# ----------------------------------------------------------------------------------------------
# Files.


def video_id(split: str, seed: int, world_seed: int, index: int) -> str:
  """Unique across splits, seeds and worlds."""
  return f"syn-{split}-w{world_seed}-s{seed}-{index:08d}"


def shard_paths(output_dir: str, split: str, num_shards: int) -> list[str]:
  return [os.path.join(output_dir, f"{split}{i:04d}.tfrecord") for i in range(num_shards)]


def manifest_path(output_dir: str, split: str) -> str:
  return os.path.join(output_dir, f"{split}_manifest.json")


# The generator never replaces a file (outputs.atomic_path with no signature).
OutputExistsError = outputs.OutputExistsError


def _validate(output_dir: str, num_videos: int, seed: int, num_shards: int, top_classes: int | None,
        split: str, world_seed: int, num_classes: int, segment_ratings: bool,
        segment_label_ids_file: str | None, structure: str = "shots") -> None:
  if structure not in STRUCTURES:
    raise ValueError(f"--structure must be one of {', '.join(STRUCTURES)} (got {structure!r})")
  if segment_label_ids_file and not segment_ratings:
    raise ValueError("--segment_label_ids_file needs --segment_ratings")
  if not output_dir:
    raise ValueError("--output_dir must be set")
  if num_videos <= 0:
    raise ValueError(f"--num_videos must be > 0 (got {num_videos})")
  if num_shards <= 0:
    raise ValueError(f"--num_shards must be > 0 (got {num_shards})")
  if num_shards > num_videos:
    raise ValueError(f"--num_shards={num_shards} exceeds --num_videos={num_videos} (empty shards)")
  if seed < 0:
    raise ValueError(f"--seed must be >= 0 (got {seed})")
  if world_seed < 0:
    raise ValueError(f"--world_seed must be >= 0 (got {world_seed})")
  if num_classes <= 0:
    raise ValueError(f"--num_classes must be > 0 (got {num_classes})")
  if top_classes is not None and not 1 <= top_classes <= num_classes:
    raise ValueError(f"--top_classes must be in [1, --num_classes={num_classes}] (got {top_classes})")
  if not split or any(ch in split for ch in "/\\") or split.startswith("."):
    raise ValueError(f"--split must be a plain file-name prefix (got {split!r})")


def generate(output_dir: str, num_videos: int, seed: int, from_video_level: str | None = None,
       num_shards: int = 1, top_classes: int | None = None, split: str = "train",
       world_seed: int = 0, num_classes: int = 3862, segment_ratings: bool = False,
       segment_label_ids_file: str | None = None, structure: str = "shots") -> list[str]:
  """Writes `{split}{shard:04d}.tfrecord` shards + `{split}_manifest.json`; returns shard paths.

  Video i goes to shard floor(i * num_shards / num_videos) (contiguous blocks). Same arguments
  give byte-identical files. Raises ValueError on bad arguments or inputs, and
  OutputExistsError (a FileExistsError and ValueError) if any output file already exists.

  segment_ratings: also write the 2019 segment ratings (rate_segments), rating only the
  classes listed in segment_label_ids_file if given; a video with nothing to rate is drawn
  again from its own stream (so every video has ratings, as in the real 2019 validation
  data). Off, the output is exactly what it was without the option.

  structure: the temporal layout of labels ("shots", the default, or "bursts"; see make_video
  and docs/SYNTHETIC.md). The default's output is exactly what it was before the option.
  """
  _validate(output_dir, num_videos, seed, num_shards, top_classes, split, world_seed, num_classes,
            segment_ratings, segment_label_ids_file, structure)
  rated_classes = None
  if segment_label_ids_file:
    from yt8m import inference_lib  # heavy (Keras); only for this option
    try:
      rated_classes = inference_lib.read_class_whitelist(segment_label_ids_file)
    except (FileNotFoundError, ValueError) as e:
      raise ValueError(str(e)) from None
  paths = shard_paths(output_dir, split, num_shards)
  manifest = manifest_path(output_dir, split)
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise ValueError(f"--output_dir={output_dir} exists and is not a directory")
  for p in paths + [manifest]:
    if os.path.exists(p):
      raise OutputExistsError(f"refusing to overwrite existing file {p} (choose another "
                  f"--output_dir or --split, or delete it)")

  world = build_world(world_seed, num_classes, from_video_level)
  if top_classes is not None and world.anchor_label_sets is not None:
    anchor_pool(world, top_classes)  # fail before writing anything
  os.makedirs(output_dir, exist_ok=True)

  lengths = np.zeros(num_videos, np.int64)
  label_counts = np.zeros(num_classes, np.int64)
  rating_counts = np.zeros(3, np.int64)  # discarded draws, rated segments, positives
  for shard, path in enumerate(paths):
    lo, hi = shard * num_videos // num_shards, (shard + 1) * num_videos // num_shards
    with outputs.atomic_path(path, signature=None) as tmp, tf.io.TFRecordWriter(tmp) as writer:
      for i in range(lo, hi):
        rng, name = video_rng(seed, split, i), video_id(split, seed, world_seed, i)
        if segment_ratings:
          video, segments, redraws = _rated_video(world, rng, name, top_classes,
                                                  segment_rng(seed, split, i), rated_classes,
                                                  structure)
          rating_counts += [redraws, segments[0].size, int(segments[2].sum())]
        else:
          video, segments = make_video(world, rng, name, top_classes, structure=structure), None
        writer.write(serialize_video(video, segments))
        lengths[i] = video.num_frames
        label_counts[video.labels] += 1

  info = {
    "generator": "yt8m.synthetic", "generator_version": GENERATOR_VERSION,
    "flags": {"output_dir": output_dir, "num_videos": num_videos, "seed": seed,
          "from_video_level": from_video_level, "num_shards": num_shards,
          "top_classes": top_classes, "split": split, "world_seed": world_seed,
          "num_classes": num_classes},
    "world_seed": world_seed,
    "world": {"mode": world.mode, "fingerprint": world.fingerprint(),
          "source_files": world.source_files,
          "num_anchor_videos": len(world.anchor_label_sets or []),
          "num_anchor_unlabelled_skipped": world.num_anchor_unlabelled},
    "num_videos_written": num_videos,
    "num_classes": num_classes,
    "num_label_instances": int(label_counts.sum()),
    "num_distinct_labels": int((label_counts > 0).sum()),
    "mean_labels_per_video": float(label_counts.sum() / num_videos),
    "frame_length_stats": {
      "min": int(lengths.min()), "max": int(lengths.max()),
      "mean": round(float(lengths.mean()), 3), "median": float(np.median(lengths)),
      "num_under_120": int((lengths < 120).sum()), "num_over_300": int((lengths > 300).sum())},
    "shards": [os.path.basename(p) for p in paths],
    "format": {"context": ["id", "labels"], "feature_lists": {"rgb": RGB_DIM, "audio": AUDIO_DIM},
           "extra_feature_list": VISIBLE_KEY,
           "quantization": "q = round((clip(x, -2, 2) + 2) * 255 / 4)"},
  }
  if structure != "shots":  # only then: the default manifest stays as it was
    info["flags"]["structure"] = structure
  if segment_ratings:  # only then: the default manifest stays as it was
    info["flags"].update(segment_ratings=True, segment_label_ids_file=segment_label_ids_file)
    info["format"]["context"] += list(SEGMENT_KEYS)
    info["segment_ratings"] = {
      "segment_size": readers.SEGMENT_SIZE, "max_positives_per_label": SEGMENT_POSITIVES,
      "max_negatives_per_label": SEGMENT_NEGATIVES,
      "num_rated_classes": None if rated_classes is None else int(rated_classes.size),
      "num_draws_discarded": int(rating_counts[0]), "num_rated_segments": int(rating_counts[1]),
      "num_positive_ratings": int(rating_counts[2])}
  with outputs.atomic_output(manifest, signature=None) as f:
    f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
  return paths


# ----------------------------------------------------------------------------------------------
# Command line.


def _define_flags():
  from absl import flags

  flags.DEFINE_string("output_dir", None, "Directory for the shards and manifest (created if missing).")
  flags.DEFINE_integer("num_videos", None, "Number of videos to write (> 0).")
  flags.DEFINE_integer("seed", None, "Seed for drawing the videos (>= 0).")
  flags.DEFINE_string("from_video_level", None,
            "Glob of real video-level TFRecords to anchor the world on (optional).")
  flags.DEFINE_integer("num_shards", 1, "Number of output shards.")
  flags.DEFINE_integer("top_classes", None, "Keep only labels < N; drop videos left without labels.")
  flags.DEFINE_string("split", "train", "File prefix: {split}{shard:04d}.tfrecord.")
  flags.DEFINE_integer("world_seed", 0, "Seed of the world (label directions, visibility).")
  flags.DEFINE_integer("num_classes", 3862, "Class count: 3862 (2018 data) or 4716 (2017).")
  flags.DEFINE_bool("segment_ratings", False, "Also write 2019 segment ratings (segment_labels, "
            "segment_start_times, segment_scores) from where labels are visible.")
  flags.DEFINE_string("segment_label_ids_file", None, "With --segment_ratings: rate only the "
            "classes of this file (the 2019 segment_label_ids.csv format).")
  flags.DEFINE_enum("structure", "shots", list(STRUCTURES), "Temporal layout of the labels: "
            "'shots' (visible in whole shots) or 'bursts' (1-3 short bursts per label at "
            "random places, background elsewhere, each label's look drifting along the video).")
  for name in ("output_dir", "num_videos", "seed"):
    flags.mark_flag_as_required(name)
  return flags.FLAGS


FLAGS = None  # the parsed flags: set by the command line (yt8m/cli/synthetic.py)


def main(argv):
  from absl import app, logging

  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = FLAGS
  start = time.perf_counter()
  try:
    paths = generate(f.output_dir, f.num_videos, f.seed, from_video_level=f.from_video_level,
             num_shards=f.num_shards, top_classes=f.top_classes, split=f.split,
             world_seed=f.world_seed, num_classes=f.num_classes,
             segment_ratings=f.segment_ratings,
             segment_label_ids_file=f.segment_label_ids_file, structure=f.structure)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  seconds = time.perf_counter() - start
  logging.info("wrote %d videos in %d shards + %s in %.1f s (%.0f videos/s, incl. world build)",
         f.num_videos, len(paths), manifest_path(f.output_dir, f.split), seconds,
         f.num_videos / seconds)


if __name__ == "__main__":
  from yt8m.cli import synthetic as _command

  _command.run()
