"""The training stream: the batch at step t is a pure function of (seed, t).

A grain `MapDataset` is random-access, so `batch_indices(n, b, seed)[t]` gives the example
indices of step t without replaying steps 0..t-1: resuming at step t continues the exact
stream. Each epoch is a fresh permutation; batches run across epoch boundaries.
"""

from __future__ import annotations

from collections.abc import Mapping

import grain
import numpy as np

from common import parallel


def batch_indices(num_examples: int, batch_size: int, seed: int) -> grain.MapDataset:
  """Indexable stream of global batches of example indices, infinite, reshuffled per epoch."""
  return (grain.MapDataset.range(num_examples).shuffle(seed=seed).repeat(None)
          .batch(batch_size, batch_fn=np.asarray))


def take(arrays: Mapping[str, np.ndarray], indices: np.ndarray,
         local: bool = True) -> dict[str, np.ndarray]:
  """Gathers rows of each array; with `local`, only this process's share of the batch."""
  if local:
    indices = indices[parallel.process_rows(len(indices))]
  return {k: v[indices] for k, v in arrays.items()}
