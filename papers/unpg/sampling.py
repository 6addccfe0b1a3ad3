"""Identity-balanced batches: P classes x K samples each, pure in (seed, step).

Margin losses with mini-batch pairs need positives and many negatives in every batch; the
official code reads shuffled face datasets with ~100k identities, where a random batch has
almost only negatives. With 136 training classes an identity-balanced batch (as in metric
learning samplers) keeps the positive/negative pair mix fixed.
"""

from __future__ import annotations

import numpy as np


def class_index(labels: np.ndarray) -> list[np.ndarray]:
  """Example indices of each class 0..C-1."""
  labels = np.asarray(labels)
  order = np.argsort(labels, kind='stable')  # one sort, not a scan per class (85k faces ids)
  counts = np.bincount(labels, minlength=int(labels.max()) + 1)
  return np.split(order, np.cumsum(counts)[:-1])


def identity_balanced_batch(by_class: list[np.ndarray], classes_per_batch: int,
                            samples_per_class: int, seed: int, step: int) -> np.ndarray:
  """Global batch `step`: `classes_per_batch` distinct classes, `samples_per_class` distinct
  examples of each, class-contiguous rows [P * K]. Same (seed, step) -> same batch."""
  if classes_per_batch > len(by_class):
    raise ValueError(f'classes_per_batch={classes_per_batch} > {len(by_class)} classes')
  rng = np.random.default_rng([seed, step])
  classes = rng.choice(len(by_class), classes_per_batch, replace=False)
  rows = [rng.choice(by_class[c], samples_per_class, replace=len(by_class[c]) < samples_per_class)
          for c in classes]
  return np.concatenate(rows).astype(np.int64)
