"""Open-set verification metrics on embeddings (face-recognition protocols, any domain).

Two protocols, both on cosine similarity of L2-normalised embeddings (higher = same identity):

- LFW-style: a fixed list of positive/negative pairs split into 10 folds; for each fold the
  threshold that maximises accuracy on the other 9 folds is applied to it; the result is the
  mean (and std) of the 10 held-out accuracies (`make_pairs`, `kfold_accuracy`).
- All pairs (IJB-style): every i < j pair of an evaluation set; ROC and the true-accept rate
  at fixed false-accept rates (`all_pairs`, `tar_at_far`, `roc_curve`), the normalised partial
  area under the ROC up to a FAR (`partial_auc`), and TAR at FAR over bootstrap resamples of the
  identities (`bootstrap_tar_at_far`: how much the number moves with the identities tested).
  The pairs are scored
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
  positive (same-label) scores, the highest negative scores and the number of negatives; with
  the identity (0..C-1, in sorted label order) behind each kept score and each identity's size,
  for resampling identities."""
  positives: np.ndarray  # cosine similarity of every same-label pair, any order
  top_negatives: np.ndarray  # the floor(max_far * num_negatives) + 1 highest (+ ties), descending
  num_negatives: int
  max_far: float
  positive_ids: np.ndarray | None = None  # [P] identity of each positive pair
  top_negative_ids: np.ndarray | None = None  # [K, 2] identities of each kept negative pair
  identity_sizes: np.ndarray | None = None  # [C] images of each identity


def all_pairs(embeddings: np.ndarray, labels: np.ndarray, max_far: float = max(DEFAULT_FARS),
              block_rows: int = 256) -> AllPairs:
  """Cosine similarities of every pair i < j, computed `block_rows` rows at a time (never an
  N x N matrix); negatives below the highest floor(max_far * num_negatives) + 1 (ties with the
  lowest of them kept) are dropped as the blocks go (a running cut-off, so most of a block is
  discarded by one comparison)."""
  x = normalize(embeddings)
  _, ids = np.unique(np.asarray(labels), return_inverse=True)
  ids = ids.reshape(-1)
  n = len(x)
  classes = [np.flatnonzero(ids == c) for c in range(int(ids.max()) + 1 if n else 0)]
  positives = [(x[idx] @ x[idx].T)[np.triu_indices(len(idx), k=1)] for idx in classes]
  positive_ids = [np.full(len(p), c) for c, p in enumerate(positives)]
  num_negatives = n * (n - 1) // 2 - sum(len(idx) * (len(idx) - 1) // 2 for idx in classes)
  keep = min(int(np.floor(max_far * num_negatives)) + 1, num_negatives)
  negatives, pair_ids, cut = np.zeros((0,), np.float64), np.zeros((0, 2), np.int64), -np.inf
  for start in range(0, n, block_rows):
    stop = min(start + block_rows, n)
    sims = x[start:stop] @ x[start:].T  # rows start..stop-1 against columns start..n-1
    r, c = np.nonzero(sims >= cut)
    r, c = r + start, c + start
    negative = (c > r) & (ids[r] != ids[c])
    negatives = np.concatenate([negatives, sims[r[negative] - start, c[negative] - start]])
    pair_ids = np.concatenate([pair_ids, np.stack([ids[r[negative]], ids[c[negative]]], 1)])
    if len(negatives) > keep:  # only the highest `keep` (and ties) can matter from here on
      cut = np.partition(negatives, len(negatives) - keep)[len(negatives) - keep]
      top = negatives >= cut
      negatives, pair_ids = negatives[top], pair_ids[top]
  order = np.argsort(-negatives, kind='stable')
  return AllPairs(np.concatenate(positives), negatives[order], int(num_negatives),
                  float(max_far), np.concatenate(positive_ids).astype(np.int64),
                  pair_ids[order], np.array([len(idx) for idx in classes], np.int64))


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


def partial_auc(pairs: AllPairs, max_far: float) -> float:
  """Area under the ROC (TAR against FAR, linear between its points, as scikit-learn's
  `roc_curve` + trapezoids) from FAR 0 to `max_far`, divided by `max_far`: 1 for perfect
  separation, `max_far / 2` for random scores. A group of c negatives tied at score v spans c
  steps of FAR (1 / num_negatives each) over which TAR goes linearly from the share of
  positives > v to the share >= v."""
  if max_far > pairs.max_far:
    raise ValueError(f'partial_auc up to {max_far} needs the negatives down to that FAR: pass '
                     'a larger max_far to all_pairs')
  num_neg = pairs.num_negatives
  if not num_neg or not len(pairs.positives):
    return float('nan')
  span = max_far * num_neg  # FAR up to max_far, in units of one negative
  values, counts = np.unique(pairs.top_negatives, return_counts=True)
  values, counts = values[::-1], counts[::-1].astype(np.float64)  # highest first
  starts = np.concatenate([[0.0], np.cumsum(counts)[:-1]])
  pos = np.sort(pairs.positives)
  above = (len(pos) - np.searchsorted(pos, values, side='right')) / len(pos)
  at_least = (len(pos) - np.searchsorted(pos, values, side='left')) / len(pos)
  covered = np.clip(span - starts, 0.0, counts)  # the part of each group below max_far
  area = covered * above + (at_least - above) * covered ** 2 / (2 * counts)
  return float(np.sum(area) / span)


def bootstrap_tar_at_far(pairs: AllPairs, far: float, num_resamples: int = 200, seed: int = 0
                         ) -> np.ndarray:
  """TAR at `far` on `num_resamples` bootstrap resamples of the identities [num_resamples].

  A resample draws C identities with replacement (weights w_c = how often c was drawn); a
  positive pair of c counts w_c times, a negative pair of c, d w_c w_d times (pairs between two
  copies of one identity are left out), and the threshold is the weighted analogue of
  `tar_at_far`'s: accept score > t, the weight of negatives above t at most far x their total.
  Same `seed` -> the same resamples for any embeddings of the same identities, so two
  embedders can be compared resample by resample. All weights 1 give `tar_at_far`'s TAR."""
  if pairs.positive_ids is None or pairs.identity_sizes is None:
    raise ValueError('pairs carry no identities: build them with all_pairs')
  c = len(pairs.identity_sizes)
  weights = np.random.default_rng(seed).multinomial(c, np.full(c, 1.0 / c), num_resamples)
  return tar_at_far_weighted(pairs, far, weights.astype(np.float64))


def tar_at_far_weighted(pairs: AllPairs, far: float, weights: np.ndarray) -> np.ndarray:
  """TAR at `far` with identity weights [R, C] (see `bootstrap_tar_at_far`) [R]; NaN where the
  kept negatives do not reach the weighted FAR (raise `all_pairs`' max_far). The threshold is
  first looked for among the 4 far x num_negatives highest negatives, then among all kept."""
  sizes = pairs.identity_sizes.astype(np.float64)
  w = np.atleast_2d(np.asarray(weights, np.float64))
  allowed = far * ((w @ sizes) ** 2 - (w ** 2) @ (sizes ** 2)) / 2  # [R]
  threshold = np.full(len(w), np.nan)
  todo = np.arange(len(w))
  kept = len(pairs.top_negatives)
  for limit in sorted({min(kept, int(np.ceil(4 * far * pairs.num_negatives)) + 1), kept}):
    a, b = pairs.top_negative_ids[:limit, 0], pairs.top_negative_ids[:limit, 1]
    cum = np.cumsum(w[todo][:, a] * w[todo][:, b], axis=1)  # negatives highest first
    over = cum > allowed[todo, None]
    found = over.any(axis=1)
    threshold[todo[found]] = pairs.top_negatives[np.argmax(over[found], axis=1)]
    todo = todo[~found]
    if not len(todo):
      break
  pos_w = w[:, pairs.positive_ids]  # [R, P]
  accepted = pairs.positives[None, :] > threshold[:, None]
  tar = np.sum(pos_w * accepted, axis=1) / np.maximum(np.sum(pos_w, axis=1), 1e-300)
  return np.where(np.isnan(threshold), np.nan, tar)


def evaluate_embeddings(embeddings: np.ndarray, labels: np.ndarray, pairs: np.ndarray,
                        fars: Sequence[float] = DEFAULT_FARS, num_folds: int = 10
                        ) -> dict[str, float]:
  """Both protocols as one flat dict: accuracy (+ std) on `pairs`, for every FAR
  `tar@far=...` with `negatives@far=...` (false accepts allowed), the partial AUC up to the
  largest FAR (`pauc@far=...`), plus the pair counts."""
  kfold = kfold_accuracy(pair_scores(embeddings, pairs), pairs[:, 2], num_folds)
  every = all_pairs(embeddings, labels, max(fars))
  out = {'accuracy': kfold['accuracy'], 'accuracy_std': kfold['accuracy_std'],
         'num_positive_pairs': len(every.positives), 'num_negative_pairs': every.num_negatives}
  for far, row in tar_at_far(every, fars=fars).items():
    out[f'tar@far={far:g}'] = row['tar']
    out[f'negatives@far={far:g}'] = row['false_accepts']
  out[f'pauc@far={max(fars):g}'] = partial_auc(every, max(fars))
  return out
