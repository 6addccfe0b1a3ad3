"""Repeated sampling of random subsets, as a data-loading policy.

Each round (an "epoch" of the reduced budget) trains on k = round(fraction * n) examples.

* Without replacement (mode 'without_replacement'): one shuffled permutation of 0..n-1 is cut into
  consecutive chunks of k; a pass over the data takes `ceil(n / k)` rounds and then the data
  is reshuffled (pass p uses permutation p). When k does not divide n the last chunk of a pass
  is short; like the official code it is topped up by wrapping around to the start of the same
  permutation, so every round still has k distinct examples and every example is seen at least
  once per pass (exactly once when k divides n).
* With replacement (mode 'with_replacement'): an independent uniform subset of k distinct
  examples every round.
* Static random subset (mode 'static', the pruning baseline): one subset for all rounds.

Everything is a pure function of (n, fraction, seed, round): resuming at any step continues the
exact sequence, and any experiment can switch it on from its config (`batch_sampler`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_PERMUTATION, _WITH_REPLACEMENT, _STATIC, _BATCH_ORDER = 0, 1, 2, 3  # PRNG stream tags


def subset_size(n: int, fraction: float) -> int:
  """k = round(fraction * n), at least 1 and at most n."""
  if n <= 0:
    raise ValueError(f'n={n} must be positive')
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'fraction={fraction} must be in (0, 1]')
  return int(min(n, max(1, round(fraction * n))))


def rounds_per_pass(n: int, fraction: float) -> int:
  """Rounds needed to see every example once without replacement: ceil(n / k)."""
  return math.ceil(n / subset_size(n, fraction))


def _rng(*words: int) -> np.random.Generator:
  return np.random.default_rng([int(w) for w in words])


def subset_round_indices(n: int, fraction: float, seed: int, round: int,  # noqa: A002
                         replacement: bool = False) -> np.ndarray:
  """The k example indices (int64, distinct) of `round` (0-based)."""
  if round < 0:
    raise ValueError(f'round={round} must be >= 0')
  k = subset_size(n, fraction)
  if replacement:
    return _rng(seed, _WITH_REPLACEMENT, round).choice(n, k, replace=False)
  per_pass = math.ceil(n / k)
  p, c = divmod(round, per_pass)
  perm = _rng(seed, _PERMUTATION, p).permutation(n)
  chunk = perm[c * k:(c + 1) * k]
  if len(chunk) < k:  # last chunk of the pass: wrap around to the start of the permutation
    chunk = np.concatenate([chunk, perm[:k - len(chunk)]])
  return chunk


def static_subset_indices(n: int, fraction: float, seed: int) -> np.ndarray:
  """One uniform random subset of k examples, used for every round (the pruning baseline)."""
  return _rng(seed, _STATIC).choice(n, subset_size(n, fraction), replace=False)


def steps_per_round(k: int, batch_size: int) -> int:
  """Batches per round with drop_last: the last k mod batch_size examples of a round are
  skipped (choose batch_size dividing k to use them all); at least one full batch."""
  if k < batch_size:
    raise ValueError(f'a round of {k} examples is smaller than batch_size={batch_size}: '
                     'lower the batch size or raise the fraction')
  return k // batch_size


def total_steps(n: int, fraction: float, batch_size: int, rounds: int) -> int:
  """Step count of the budget-adapted schedule: steps per round x rounds (a per-step schedule
  runs over exactly this many steps)."""
  return steps_per_round(subset_size(n, fraction), batch_size) * rounds


def round_batches(indices: np.ndarray, batch_size: int, seed: int, round: int  # noqa: A002
                  ) -> np.ndarray:
  """The round's examples shuffled and cut into [steps_per_round, batch_size] (drop_last)."""
  steps = steps_per_round(len(indices), batch_size)
  order = _rng(seed, _BATCH_ORDER, round).permutation(len(indices))
  return np.asarray(indices)[order[:steps * batch_size]].reshape(steps, batch_size)


class SubsetBatchStream:
  """Per-step batch indices: `stream[step]` -> [batch_size] example indices, pure in step.

  `mode` is 'without_replacement', 'with_replacement', 'static' (one random subset), or
  'full' (fraction 1, reshuffled every round); `subset` fixes the round's examples instead
  (e.g. a pruning method's selection), reshuffled every round.
  """

  def __init__(self, n: int, fraction: float, batch_size: int, seed: int,
               mode: str = 'without_replacement',
               subset: np.ndarray | None = None):
    if mode not in MODES:
      raise ValueError(f'mode={mode!r} is not one of {MODES}')
    self.n, self.batch_size, self.seed, self.mode = n, batch_size, seed, mode
    self.fraction = 1.0 if mode == 'full' else fraction
    if subset is not None:
      self.subset = np.asarray(subset)
    elif mode == 'static':
      self.subset = static_subset_indices(n, fraction, seed)
    elif mode == 'full':
      self.subset = np.arange(n)
    else:
      self.subset = None
    k = len(self.subset) if self.subset is not None else subset_size(n, self.fraction)
    self.steps_per_round = steps_per_round(k, batch_size)
    self._round: tuple[int, np.ndarray] | None = None

  def round_indices(self, round: int) -> np.ndarray:  # noqa: A002
    if self.subset is not None:
      return self.subset
    return subset_round_indices(self.n, self.fraction, self.seed, round,
                                replacement=self.mode == 'with_replacement')

  def round_batches(self, round: int) -> np.ndarray:  # noqa: A002
    """[steps_per_round, batch_size] indices of every step of `round`."""
    return round_batches(self.round_indices(round), self.batch_size, self.seed, round)

  def __getitem__(self, step: int) -> np.ndarray:
    r, s = divmod(int(step), self.steps_per_round)
    if self._round is None or self._round[0] != r:  # one round's draw, not one per step
      self._round = (r, self.round_batches(r))
    return self._round[1][s]


MODES = ('without_replacement', 'with_replacement', 'static', 'full')


def batch_sampler(sampler: dict, n: int, batch_size: int, seed: int) -> Callable[[int], np.ndarray]:
  """`step -> example indices` from a config block such as
  `config.data.sampler = dict(mode='without_replacement', fraction=0.1)` (any experiment can
  use it)."""
  stream = SubsetBatchStream(n, float(sampler.get('fraction', 1.0)), batch_size, seed,
                             sampler.get('mode', 'without_replacement'))
  return stream.__getitem__
