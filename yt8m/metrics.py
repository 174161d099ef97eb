"""YouTube-8M challenge metrics: Hit@1, PERR, GAP@k and mAP, vectorised numpy in float64.

Definitions (the starter code's eval_util.py; the reference is ../shared/reference/starter_code.md):

  Hit@1  mean over videos of labels[argmax(predictions)] (ties: the lowest class index).
  PERR   per video with n positives: the fraction of the n top-scored classes that are
         positive and scored > 0; a video with no positives scores 0 and still counts.
  top-k  each video contributes its k (default 20) highest-scored (class, score, label)
         triplets; ties at the k-th score go to the lowest class index.
  GAP    average precision of all videos' triplets pooled into one ranked list, with recall
         over ALL positive (video, class) labels, including those outside the top k.
  mAP    mean over classes WITH positives of the average precision of that class's
         triplets, recall again over all its positives.

Average precision is the non-interpolated AP: sum over ranks i holding a positive of
precision@i, divided by the number of positives. Equal scores are not ordered by chance (the
starter shuffles them with a seed-0 RNG in heap order, which depends on how the data was
batched): a run of tied scores contributes its expectation over all orders of the run, so the
result is deterministic, batch invariant, and the plain AP whenever no scores tie.

Scores of -inf mean "no prediction" (a CSV row that lists fewer than k classes): they are
never selected into the top k and never hit.
"""

from __future__ import annotations

import numpy as np

_GROUPS = 256  # about this many column groups in the top-k search (at least k)


def _descending_bits(scores: np.ndarray) -> np.ndarray:
  """float32 -> uint64 whose ascending order is the scores' descending order."""
  bits = scores.view(np.uint32)
  ascending = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
  return (~ascending).astype(np.uint64)


def _order(major: np.ndarray, scores: np.ndarray, minor: np.ndarray | None,
           major_count: int, minor_count: int) -> np.ndarray:
  """Permutation sorting by (major asc, score desc, minor asc). float32 scores are packed with
  the two integer keys into one uint64, several times faster than a 3-key lexsort."""
  major_bits = max(1, int(major_count - 1).bit_length())
  minor_bits = 0 if minor is None else max(1, int(minor_count - 1).bit_length())
  if scores.dtype == np.float32 and major_bits + 32 + minor_bits <= 64:
    key = (major.astype(np.uint64) << np.uint64(32 + minor_bits)) | (
        _descending_bits(scores) << np.uint64(minor_bits))
    if minor is not None:
      key |= minor.astype(np.uint64)
    return np.argsort(key)  # (major, score, minor) keys are unique; tie order is irrelevant for AP
  keys = (-scores.astype(np.float64), major) if minor is None else (minor, -scores, major)
  return np.lexsort(keys)


def top_k_sorted(predictions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Per row, the k highest scores in descending order (ties: lowest column first).

  Returns (classes [B, k] int64, scores [B, k]); rows with fewer than k finite scores are
  padded with class -1 and score -inf.

  Cost is about one pass over the matrix. The columns are split into G >= k groups (column c
  in group c mod G, a free reshape); the k-th largest group maximum is a lower bound on the
  row's k-th largest score, so only the groups reaching it are searched and sorted.
  """
  num_rows, num_classes = predictions.shape
  k = min(k, num_classes)
  per_group = max(1, num_classes // max(k, _GROUPS))
  num_groups = num_classes // per_group
  body = predictions[:, :per_group * num_groups].reshape(num_rows, per_group, num_groups)
  tail = predictions[:, per_group * num_groups:]  # fewer than num_groups columns
  group_max = body.max(axis=1)
  if tail.shape[1]:
    group_max[:, :tail.shape[1]] = np.maximum(group_max[:, :tail.shape[1]], tail)
  if np.isnan(group_max).any():  # max propagates NaN, so this checks every score
    raise ValueError("predictions contain NaN")
  threshold = np.partition(group_max, -k, axis=1)[:, -k] if num_rows else group_max[:, 0]
  group_rows, groups = np.nonzero(group_max >= threshold[:, None])
  values = body[group_rows, :, groups]  # [selected groups, per_group]
  hit, position = np.nonzero(values >= threshold[group_rows, None])
  tail_rows, tail_cols = np.nonzero(tail >= threshold[:, None])
  rows = np.concatenate([group_rows[hit], tail_rows])
  cols = np.concatenate([position * num_groups + groups[hit],
                         per_group * num_groups + tail_cols])
  scores = predictions[rows, cols]
  keep = scores > -np.inf
  rows, cols, scores = rows[keep], cols[keep], scores[keep]
  # Candidates are few (about k per row): sort them by (row, -score, class).
  order = _order(rows, scores, cols, num_rows, num_classes)
  rows, cols, scores = rows[order], cols[order], scores[order]
  row_start = np.searchsorted(rows, np.arange(num_rows))
  rank = np.arange(rows.size) - row_start[rows]
  take = rank < k
  out_classes = np.full((num_rows, k), -1, np.int64)
  out_scores = np.full((num_rows, k), -np.inf, predictions.dtype)
  out_classes[rows[take], rank[take]] = cols[take]
  out_scores[rows[take], rank[take]] = scores[take]
  return out_classes, out_scores


def average_precision(scores: np.ndarray, positive: np.ndarray, num_positives: float,
                      groups: np.ndarray | None = None,
                      num_groups: int = 1) -> np.ndarray:
  """Tie-aware non-interpolated AP of one or many ranked lists.

  Args:
    scores: [N] scores.
    positive: [N] bool, whether each item is a true label.
    num_positives: scalar, or [num_groups] array: recall denominators (positives outside
      the lists count too).
    groups: optional [N] int list id in [0, num_groups); None = one list.
    num_groups: number of lists.

  Returns:
    [num_groups] float64 APs; 0 for a list without positives.
  """
  scores = np.asarray(scores)
  if scores.dtype != np.float32:
    scores = scores.astype(np.float64)
  positive = np.asarray(positive, bool)
  if groups is None:
    groups = np.zeros(scores.shape, np.int64)
  order = _order(groups, scores, None, num_groups, 0)
  groups, scores, positive = groups[order], scores[order], positive[order]
  n = scores.size
  index = np.arange(n)
  list_start = np.searchsorted(groups, np.arange(num_groups))
  rank = index - list_start[groups] + 1  # 1-based rank within the list
  # A tie run: consecutive items of one list with equal scores.
  new_run = np.ones(n, bool)
  new_run[1:] = (groups[1:] != groups[:-1]) | (scores[1:] != scores[:-1])
  run_id = np.cumsum(new_run) - 1
  run_start = index[new_run]
  run_size = np.diff(np.append(run_start, n))
  run_pos = np.add.reduceat(positive.astype(np.float64), run_start) if n else np.zeros(0)
  cum_pos = np.cumsum(positive, dtype=np.float64)
  # Positives ranked above the run, within the same list.
  list_pos_before = np.concatenate([[0.0], cum_pos])[list_start]
  pos_before = (np.concatenate([[0.0], cum_pos])[run_start] -
                list_pos_before[groups[run_start]])
  # Item at position j (1-based) of a run of size s with p positives, in a random order of
  # the run: it is positive with probability p/s, and then (j-1)(p-1)/(s-1) of the items
  # before it in the run are positive on average.
  s = run_size[run_id].astype(np.float64)
  p = run_pos[run_id]
  j = (index - run_start[run_id]).astype(np.float64)  # j - 1
  ahead = np.where(s > 1, j * (p - 1) / np.maximum(s - 1, 1), 0.0)
  term = (p / s) * (pos_before[run_id] + 1.0 + ahead) / rank
  sums = np.bincount(groups, weights=term, minlength=num_groups)
  denominator = np.broadcast_to(np.asarray(num_positives, np.float64), (num_groups,))
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(denominator > 0, sums / denominator, 0.0)


def hit_at_one(predictions: np.ndarray, labels: np.ndarray,
               ranked: tuple | None = None) -> np.ndarray:
  """Per-video Hit@1 [B] (float64): the label of the top class, the first one of ties."""
  _, _, hits = ranked if ranked is not None else _ranked_labels(predictions, labels, 1)
  return hits[:, 0]


def _ranked_labels(predictions, labels, k):
  classes, scores = top_k_sorted(predictions, k)
  rows = np.arange(predictions.shape[0])[:, None]
  hits = np.where(classes >= 0, labels[rows, np.maximum(classes, 0)], 0).astype(np.float64)
  return classes, scores, hits


def precision_at_equal_recall_rate(predictions: np.ndarray, labels: np.ndarray,
                                   ranked: tuple | None = None) -> np.ndarray:
  """Per-video PERR [B] (float64). `ranked` may pass top_k_sorted output reused from GAP."""
  num_positive = np.rint(labels.sum(axis=1)).astype(np.int64)
  need = int(num_positive.max(initial=0))
  if ranked is None or ranked[0].shape[1] < need:
    ranked = _ranked_labels(predictions, labels, max(need, 1))
  _, scores, hits = ranked
  position = np.arange(scores.shape[1])[None, :]
  counted = (position < num_positive[:, None]) & (scores > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    perr = np.where(num_positive > 0,
                    (hits * counted).sum(axis=1) / np.maximum(num_positive, 1), 0.0)
  return perr


class EvaluationMetrics:
  """Streaming Hit@1, PERR, GAP@top_k, mAP and mean loss over batches of predictions.

  Keeps only each video's top_k triplets and per-class positive counts, so memory is
  O(videos * top_k), and the result does not depend on how the videos were batched.
  """

  def __init__(self, num_classes: int, top_k: int = 20):
    if top_k <= 0:
      raise ValueError(f"top_k must be positive, got {top_k}")
    self.num_classes = num_classes
    self.top_k = top_k
    self.clear()

  def clear(self) -> None:
    self.num_videos = 0
    self.sum_hit_at_one = 0.0
    self.sum_perr = 0.0
    self.sum_loss = 0.0
    self.num_loss = 0
    self.positives_per_class = np.zeros(self.num_classes, np.float64)
    self._classes, self._scores, self._hits = [], [], []

  def accumulate(self, predictions: np.ndarray, labels: np.ndarray,
                 loss: np.ndarray | float | None = None) -> dict:
    """Adds a batch: predictions and labels [B, num_classes], optional per-video loss [B] or
    batch-mean loss. Returns the batch's own hit_at_one, perr (and loss)."""
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.shape != labels.shape or predictions.ndim != 2:
      raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must both "
                       "be [batch, num_classes]")
    if predictions.shape[1] != self.num_classes:
      raise ValueError(f"predictions have {predictions.shape[1]} classes, expected "
                       f"{self.num_classes}")
    batch = predictions.shape[0]
    ranked = _ranked_labels(predictions, labels, self.top_k)
    hit = hit_at_one(predictions, labels, ranked)
    perr = precision_at_equal_recall_rate(predictions, labels, ranked)
    classes, scores, hits = ranked
    keep = classes >= 0
    self._classes.append(classes[keep])
    self._scores.append(scores[keep])
    self._hits.append(hits[keep] > 0)
    self.positives_per_class += labels.sum(axis=0)  # exact: counts per batch < 2**24
    self.num_videos += batch
    self.sum_hit_at_one += hit.sum()
    self.sum_perr += perr.sum()
    out = {"hit_at_one": float(hit.mean()) if batch else 0.0,
           "perr": float(perr.mean()) if batch else 0.0}
    if loss is not None:
      loss = np.asarray(loss, np.float64)
      count = loss.size if loss.ndim else batch
      self.sum_loss += float(loss.sum()) if loss.ndim else float(loss) * batch
      self.num_loss += count
      out["loss"] = float(loss.mean())
    return out

  def get(self) -> dict:
    """Epoch metrics: hit_at_one, perr, gap, map, loss (if given), num_videos,
    num_classes_with_positives and per-class aps (NaN for classes without positives)."""
    if self.num_videos <= 0:
      raise ValueError("no videos were accumulated")
    classes = np.concatenate(self._classes) if self._classes else np.zeros(0, np.int64)
    scores = np.concatenate(self._scores) if self._scores else np.zeros(0, np.float32)
    hits = np.concatenate(self._hits) if self._hits else np.zeros(0, bool)
    gap = float(average_precision(scores, hits, self.positives_per_class.sum())[0])
    aps = average_precision(scores, hits, self.positives_per_class, groups=classes,
                            num_groups=self.num_classes)
    has_positives = self.positives_per_class > 0
    result = {
        "hit_at_one": self.sum_hit_at_one / self.num_videos,
        "perr": self.sum_perr / self.num_videos,
        "gap": gap,
        "map": float(aps[has_positives].mean()) if has_positives.any() else 0.0,
        "num_videos": self.num_videos,
        "num_classes_with_positives": int(has_positives.sum()),
        "aps": np.where(has_positives, aps, np.nan),
    }
    if self.num_loss:
      result["loss"] = self.sum_loss / self.num_loss
    return result


def calculate_gap(predictions: np.ndarray, labels: np.ndarray, top_k: int = 20) -> float:
  """GAP@top_k of one batch (the training-time metric)."""
  metrics = EvaluationMetrics(predictions.shape[1], top_k)
  metrics.accumulate(predictions, labels)
  return metrics.get()["gap"]
