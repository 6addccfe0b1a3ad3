"""Data-pruning baselines RS2 is compared with (the paper's Table 1 set, via DeepCore): each picks
one static subset of k examples before training, and its selection time counts towards the
time-to-accuracy.

* EL2N (Paul et al., 2021): score(x, y) = || softmax(f(x)) - onehot(y) ||_2 from a model after a
  short pre-training; keep the k highest-scoring (hardest) examples, class-balanced.
* Forgetting (Toneva et al., 2019): during the pre-training, count for every example how often
  it goes from classified correctly to misclassified between two consecutive looks at it; keep
  the k most forgotten examples, class-balanced (DeepCore's default).
* k-center greedy coreset (Sener & Savarese, 2018) on the pre-trained model's features: repeatedly
  add the example farthest from the chosen set (a 2-approximation of the minimax cover).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ('el2n', 'forgetting', 'kcenter')


def el2n_scores(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Error L2-norm per example: || softmax(logits) - onehot(labels) ||_2 (EL2N, eq. 2 of Paul
  et al.)."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  return jnp.linalg.norm(probs - onehot, axis=-1)


def forgetting_events(correct: np.ndarray) -> np.ndarray:
  """Forgetting events per example from its correctness at successive looks [T, N] (bool): the
  number of t with correct[t-1] and not correct[t]; before the first look an example counts as
  misclassified, so learning it is no event (as DeepCore's `last_acc` starts at 0)."""
  c = np.asarray(correct, bool)
  before = np.concatenate([np.zeros_like(c[:1]), c[:-1]])
  return np.sum(before & ~c, axis=0)


def top_k_balanced(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """The k highest-scoring indices with classes kept in proportion to their counts (largest
  remainders fill the rounding gap); ties broken by index."""
  scores, labels = np.asarray(scores), np.asarray(labels)
  classes, counts = np.unique(labels, return_counts=True)
  quota = counts * k / len(labels)
  take = np.floor(quota).astype(int)
  extra = np.argsort(-(quota - take), kind='stable')[:k - take.sum()]
  take[extra] += 1
  chosen = []
  for c, t in zip(classes, take, strict=True):
    idx = np.flatnonzero(labels == c)
    order = np.argsort(-scores[idx], kind='stable')
    chosen.append(idx[order[:t]])
  return np.sort(np.concatenate(chosen))


def k_center_greedy(features: np.ndarray, k: int, seed: int) -> np.ndarray:
  """k indices by greedy farthest-point selection from one random start (Euclidean)."""
  x = np.asarray(features, np.float64)
  n = len(x)
  if not 0 < k <= n:
    raise ValueError(f'k={k} must be in [1, {n}]')
  first = int(np.random.default_rng([seed, 7]).integers(n))
  chosen = [first]
  dist = np.sum((x - x[first]) ** 2, axis=1)
  for _ in range(k - 1):
    nxt = int(np.argmax(dist))
    chosen.append(nxt)
    dist = np.minimum(dist, np.sum((x - x[nxt]) ** 2, axis=1))
  return np.asarray(chosen)
