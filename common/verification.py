"""Open-set verification metrics on embeddings (face-recognition protocols, any domain).

Two protocols, both on cosine similarity of L2-normalised embeddings (higher = same identity):

- LFW-style: a fixed list of positive/negative pairs split into 10 folds; for each fold the
  threshold that maximises accuracy on the other 9 folds is applied to it; the result is the
  mean (and std) of the 10 held-out accuracies (`make_pairs`, `kfold_accuracy`).
- All pairs (IJB-style): every i < j pair of an evaluation set; ROC and the true-accept rate
  at fixed false-accept rates (`all_pair_scores`, `tar_at_far`, `roc_curve`). A FAR of 1e-4
  is only measured when at least 1 / 1e-4 negative pairs exist, so every TAR comes with the
  number of negative pairs behind it (how many false accepts the FAR allows).
"""

from __future__ import annotations

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


def all_pair_scores(embeddings: np.ndarray, labels: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Cosine similarities and same-label flags of every pair i < j."""
  x = normalize(embeddings)
  i, j = np.triu_indices(len(x), k=1)
  sims = (x @ x.T)[i, j]
  labels = np.asarray(labels)
  return sims, labels[i] == labels[j]


def tar_at_far(scores: np.ndarray, same: np.ndarray, fars: Sequence[float] = DEFAULT_FARS
               ) -> dict[float, dict[str, float]]:
  """TAR at each FAR: threshold = the (k+1)-th highest negative score with
  k = floor(far * num_negatives), accept `score > threshold` (k false accepts without ties).

  Each entry: tar, threshold, far (achieved), false_accepts (k: the negative pairs behind
  this FAR; 0 means the FAR is below what the negatives can resolve) and num_negatives.
  """
  scores, same = np.asarray(scores, np.float64), np.asarray(same).astype(bool)
  neg = np.sort(scores[~same])[::-1]
  pos = scores[same]
  out = {}
  for far in fars:
    k = int(np.floor(far * len(neg)))
    threshold = neg[min(k, len(neg) - 1)]
    out[float(far)] = {
        'tar': float(np.mean(pos > threshold)) if len(pos) else float('nan'),
        'threshold': float(threshold),
        'far': float(np.mean(neg > threshold)),
        'false_accepts': k,
        'num_negatives': int(len(neg)),
    }
  return out


def roc_curve(scores: np.ndarray, same: np.ndarray, fars: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
  """(far, tar) at the given FARs (default: 100 log-spaced points from the smallest FAR the
  negatives resolve up to 1), for plotting."""
  num_neg = int(np.sum(~np.asarray(same).astype(bool)))
  if fars is None:
    fars = np.logspace(np.log10(1.0 / max(num_neg, 1)), 0, 100)
  table = tar_at_far(scores, same, fars)
  return np.asarray(fars, np.float64), np.array([table[float(f)]['tar'] for f in fars])


def evaluate_embeddings(embeddings: np.ndarray, labels: np.ndarray, pairs: np.ndarray,
                        fars: Sequence[float] = DEFAULT_FARS, num_folds: int = 10
                        ) -> dict[str, float]:
  """Both protocols as one flat dict: accuracy (+ std) on `pairs`, and for every FAR
  `tar@far=...` with `negatives@far=...` (false accepts allowed), plus the pair counts."""
  kfold = kfold_accuracy(pair_scores(embeddings, pairs), pairs[:, 2], num_folds)
  sims, same = all_pair_scores(embeddings, labels)
  out = {'accuracy': kfold['accuracy'], 'accuracy_std': kfold['accuracy_std'],
         'num_positive_pairs': int(same.sum()), 'num_negative_pairs': int((~same).sum())}
  for far, row in tar_at_far(sims, same, fars).items():
    out[f'tar@far={far:g}'] = row['tar']
    out[f'negatives@far={far:g}'] = row['false_accepts']
  return out
