"""Training batches, pure in (seed, step).

`shuffled_batch` draws them as the official code does (a `DataLoader` with `shuffle=True`,
`drop_last=True`): each epoch is a fresh permutation of the training images cut into batches,
so a batch holds whatever identities the permutation puts together. `identity_balanced_batch`
(P classes x K samples, as metric-learning samplers) is kept as an option.
"""

from __future__ import annotations

import numpy as np

SAMPLERS = ('shuffled', 'balanced')


def shuffled_batch(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Rows of global batch `step`: slice `step % E` of the permutation of epoch `step // E`
  (E = num_examples // batch_size batches per epoch, the remainder dropped)."""
  per_epoch = num_examples // batch_size
  if per_epoch < 1:
    raise ValueError(f'batch_size={batch_size} > {num_examples} examples')
  epoch, index = divmod(step, per_epoch)
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return order[index * batch_size:(index + 1) * batch_size].astype(np.int64)


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
