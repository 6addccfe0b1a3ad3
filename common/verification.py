"""Open-set verification metrics on embeddings (face-recognition protocols, any domain).

Two protocols, both on cosine similarity of L2-normalised embeddings (higher = same identity):

- LFW-style: a fixed list of positive/negative pairs split into 10 folds; for each fold the
  threshold that maximises accuracy on the other 9 folds is applied to it; the result is the
  mean (and std) of the 10 held-out accuracies (`make_pairs`, `kfold_accuracy`).
- All pairs (IJB-style): every i < j pair of an evaluation set; ROC and the true-accept rate
  at fixed false-accept rates (`all_pairs`, `tar_at_far`, `roc_curve`). The pairs are scored
  a block of rows at a time and only the highest negatives a FAR needs are kept, so memory
  stays O(N * block + positives + max_far * negatives), never N x N. A FAR of 1e-4 is only
  measured when at least 1 / 1e-4 negative pairs exist, so every TAR comes with the number of
  negative pairs behind it (how many false accepts the FAR allows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

DEFAULT_FARS = (1e-4, 1e-3, 1e-2)


def normalize(embeddings: np.ndarray) -> np.ndarray:
  """Rows scaled to unit L2 norm (float64)."""
  x = np.asarray(embeddings, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def make_pairs(labels: np.ndarray, num_pairs: int = 6000, num_folds: int = 10, seed: int = 0
               ) -> np.ndarray:
  """A fixed pair list [num_pairs, 3] of (i, j, same): half positive, half negative, every
  fold (contiguous blocks of num_pairs / num_folds rows) balanced. Pure in (labels, seed)."""
  labels = np.asarray(labels)
  if num_pairs % (2 * num_folds):
    raise ValueError(f'num_pairs={num_pairs} must be a multiple of 2 * num_folds')
  rng = np.random.default_rng(seed)
  by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
  by_class = [idx for idx in by_class if len(idx) >= 2]
  if not by_class or len(np.unique(labels)) < 2:
    raise ValueError('need at least one class with 2 samples and at least 2 classes')
  half = num_pairs // 2
  pos = []
  while len(pos) < half:
    idx = by_class[rng.integers(len(by_class))]
    i, j = rng.choice(idx, 2, replace=False)
    pos.append((i, j, 1))
  neg = []
  while len(neg) < half:
    i, j = rng.integers(len(labels), size=2)
    if labels[i] != labels[j]:
      neg.append((i, j, 0))
  per_fold = half // num_folds
  folds = [pos[f * per_fold:(f + 1) * per_fold] + neg[f * per_fold:(f + 1) * per_fold]
           for f in range(num_folds)]
  return np.array([p for fold in folds for p in fold], np.int64)


def pair_scores(embeddings: np.ndarray, pairs: np.ndarray) -> np.ndarray:
  """Cosine similarity of each listed pair."""
  x = normalize(embeddings)
  return np.sum(x[pairs[:, 0]] * x[pairs[:, 1]], axis=-1)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
  """The threshold t maximising accuracy of `score > t` (midpoints between sorted scores,
  plus both ends; the lowest t wins ties)."""
  s = np.sort(np.unique(scores))
  candidates = np.concatenate([[s[0] - 1.0], (s[:-1] + s[1:]) / 2, [s[-1] + 1.0]])
  pos = np.sort(scores[same.astype(bool)])
  neg = np.sort(scores[~same.astype(bool)])
  true_accepts = len(pos) - np.searchsorted(pos, candidates, side='right')
  true_rejects = np.searchsorted(neg, candidates, side='right')
  return float(candidates[np.argmax(true_accepts + true_rejects)])


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, num_folds: int = 10
                   ) -> dict[str, float]:
  """LFW protocol: fold f (contiguous block f of the pair list) is classified with the
  threshold chosen on the other folds. Returns mean/std accuracy and the mean threshold."""
  scores, same = np.asarray(scores, np.float64), np.asarray(same).astype(bool)
  folds = np.array_split(np.arange(len(scores)), num_folds)
  accs, thresholds = [], []
  for f, test in enumerate(folds):
    train = np.concatenate([folds[g] for g in range(num_folds) if g != f])
    t = best_threshold(scores[train], same[train])
    accs.append(np.mean((scores[test] > t) == same[test]))
    thresholds.append(t)
  return {'accuracy': float(np.mean(accs)), 'accuracy_std': float(np.std(accs)),
          'threshold': float(np.mean(thresholds))}


@dataclasses.dataclass(frozen=True)
class AllPairs:
  """Every i < j pair of an evaluation set, kept as what TAR at FAR <= `max_far` needs: all
  positive (same-label) scores, the highest negative scores and the number of negatives."""
  positives: np.ndarray  # cosine similarity of every same-label pair, any order
  top_negatives: np.ndarray  # the floor(max_far * num_negatives) + 1 highest, descending
  num_negatives: int
  max_far: float


def all_pairs(embeddings: np.ndarray, labels: np.ndarray, max_far: float = max(DEFAULT_FARS),
              block_rows: int = 256) -> AllPairs:
  """Cosine similarities of every pair i < j, computed `block_rows` rows at a time (never an
  N x N matrix); negatives beyond the highest floor(max_far * num_negatives) + 1 are dropped
  as the blocks go (a running cut-off, so most of a block is discarded by one comparison)."""
  x = normalize(embeddings)
  labels = np.asarray(labels)
  n = len(x)
  classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
  positives = [(x[idx] @ x[idx].T)[np.triu_indices(len(idx), k=1)] for idx in classes]
  num_negatives = n * (n - 1) // 2 - sum(len(idx) * (len(idx) - 1) // 2 for idx in classes)
  keep = min(int(np.floor(max_far * num_negatives)) + 1, num_negatives)
  negatives, cut = np.zeros((0,), np.float64), -np.inf
  for start in range(0, n, block_rows):
    stop = min(start + block_rows, n)
    sims = x[start:stop] @ x[start:].T  # rows start..stop-1 against columns start..n-1
    r, c = np.nonzero(sims >= cut)
    negative = (c + start > r + start) & (labels[r + start] != labels[c + start])
    negatives = np.concatenate([negatives, sims[r[negative], c[negative]]])
    if len(negatives) > keep:  # only the highest `keep` can matter from here on
      negatives = np.partition(negatives, len(negatives) - keep)[-keep:]
      cut = negatives.min()
  top = np.sort(negatives)[::-1][:keep]
  return AllPairs(np.concatenate(positives), top, int(num_negatives), float(max_far))


def _tar_at_far(positives: np.ndarray, top_negatives: np.ndarray, num_negatives: int,
                fars: Sequence[float]) -> dict[float, dict[str, float]]:
  out = {}
  for far in fars:
    k = int(np.floor(far * num_negatives))
    if not num_negatives:
      out[float(far)] = {'tar': float('nan'), 'threshold': float('nan'), 'far': float('nan'),
                         'false_accepts': 0, 'num_negatives': 0}
      continue
    if min(k, num_negatives - 1) >= len(top_negatives):
      raise ValueError(f'FAR {far} needs the {k + 1} highest negatives; only '
                       f'{len(top_negatives)} were kept: pass a larger max_far to all_pairs')
    threshold = top_negatives[min(k, num_negatives - 1)]
    out[float(far)] = {
        'tar': float(np.mean(positives > threshold)) if len(positives) else float('nan'),
        'threshold': float(threshold),
        'far': float(np.sum(top_negatives > threshold) / num_negatives),
        'false_accepts': k,
        'num_negatives': int(num_negatives),
    }
  return out


def tar_at_far(scores: np.ndarray | AllPairs, same: np.ndarray | None = None,
               fars: Sequence[float] = DEFAULT_FARS) -> dict[float, dict[str, float]]:
  """TAR at each FAR, of a pair list (`scores`, `same`) or of `all_pairs(...)`: threshold = the
  (k+1)-th highest negative score with k = floor(far * num_negatives), accept
  `score > threshold` (k false accepts without ties).

  Each entry: tar, threshold, far (achieved), false_accepts (k: the negative pairs behind
  this FAR; 0 means the FAR is below what the negatives can resolve) and num_negatives.
  """
  if isinstance(scores, AllPairs):
    return _tar_at_far(scores.positives, scores.top_negatives, scores.num_negatives, fars)
  scores, same = np.asarray(scores, np.float64), np.asarray(same).astype(bool)
  neg = np.sort(scores[~same])[::-1]
  return _tar_at_far(scores[same], neg, len(neg), fars)


def roc_curve(pairs: AllPairs, fars: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(far, tar) of `all_pairs(...)` at the given FARs (default: 100 log-spaced points from the
  smallest FAR the negatives resolve up to the pairs' `max_far`), for plotting."""
  if fars is None:
    fars = np.geomspace(min(1.0 / max(pairs.num_negatives, 1), pairs.max_far), pairs.max_far,
                        100)
  table = tar_at_far(pairs, fars=fars)
  return np.asarray(fars, np.float64), np.array([table[float(f)]['tar'] for f in fars])


def evaluate_embeddings(embeddings: np.ndarray, labels: np.ndarray, pairs: np.ndarray,
                        fars: Sequence[float] = DEFAULT_FARS, num_folds: int = 10
                        ) -> dict[str, float]:
  """Both protocols as one flat dict: accuracy (+ std) on `pairs`, and for every FAR
  `tar@far=...` with `negatives@far=...` (false accepts allowed), plus the pair counts."""
  kfold = kfold_accuracy(pair_scores(embeddings, pairs), pairs[:, 2], num_folds)
  every = all_pairs(embeddings, labels, max(fars))
  out = {'accuracy': kfold['accuracy'], 'accuracy_std': kfold['accuracy_std'],
         'num_positive_pairs': len(every.positives), 'num_negative_pairs': every.num_negatives}
  for far, row in tar_at_far(every, fars=fars).items():
    out[f'tar@far={far:g}'] = row['tar']
    out[f'negatives@far={far:g}'] = row['false_accepts']
  return out
