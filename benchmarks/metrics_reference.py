"""A straightforward per-item Python implementation of yt8m.metrics' definitions.

It loops over videos, classes and ranked items one at a time, the way the starter code's
eval_util.py does. It is the baseline of benchmarks/bench_metrics.py and the oracle of
tests/test_metrics.py; it is not used by the library.
"""

import math


def ranked(row):
  """Classes of one video by descending score, ties by lowest class, no-prediction (-inf)
  entries left out."""
  order = sorted(range(len(row)), key=lambda c: -row[c])
  return [c for c in order if row[c] > -math.inf]


def hit_at_one(row, label_row):
  best = 0
  for c in range(len(row)):
    if row[c] > row[best]:
      best = c
  return float(label_row[best]) if row[best] > -math.inf else 0.0


def perr(row, label_row, order):
  n = int(round(sum(label_row)))
  if n == 0:
    return 0.0
  hits = 0.0
  for c in order[:n]:
    if row[c] > 0:
      hits += label_row[c]
  return hits / n


def average_precision(items, num_positives):
  """items: list of (score, is_positive). Tie runs count with their expected value over
  all orders of the run."""
  if num_positives <= 0:
    return 0.0
  items = sorted(items, key=lambda item: -item[0])
  total, rank, positives_before, i = 0.0, 0, 0, 0
  while i < len(items):
    j = i
    while j < len(items) and items[j][0] == items[i][0]:
      j += 1
    size = j - i
    run_positives = sum(1 for item in items[i:j] if item[1])
    for position in range(size):
      rank += 1
      ahead = position * (run_positives - 1) / (size - 1) if size > 1 else 0.0
      total += (run_positives / size) * (positives_before + 1 + ahead) / rank
    positives_before += run_positives
    i = j
  return total / num_positives


def evaluate(predictions, labels, top_k=20):
  """predictions, labels: [videos, classes] arrays (or lists of lists), read one row at a
  time. Returns hit_at_one, perr, gap, map."""
  num_classes = len(predictions[0])
  pooled, per_class = [], [[] for _ in range(num_classes)]
  positives = [0.0] * num_classes
  sum_hit, sum_perr = 0.0, 0.0
  for row, label_row in zip(predictions, labels, strict=True):
    row, label_row = list(map(float, row)), list(map(float, label_row))
    order = ranked(row)
    sum_hit += hit_at_one(row, label_row)
    sum_perr += perr(row, label_row, order)
    for c in order[:top_k]:
      pooled.append((row[c], label_row[c] > 0))
      per_class[c].append((row[c], label_row[c] > 0))
    for c in range(num_classes):
      positives[c] += label_row[c]
  aps = [average_precision(per_class[c], positives[c])
         for c in range(num_classes) if positives[c] > 0]
  return {
      "hit_at_one": sum_hit / len(predictions),
      "perr": sum_perr / len(predictions),
      "gap": average_precision(pooled, sum(positives)),
      "map": sum(aps) / len(aps) if aps else 0.0,
  }
