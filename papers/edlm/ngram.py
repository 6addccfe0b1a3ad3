"""An interpolated Kneser-Ney n-gram model: the second, independent judge of EDLM's samples.

Chen & Goodman (1999), interpolated form with one absolute discount per order and count kind,
D = n1 / (n1 + 2 n2) (n1, n2: how many n-grams of that order occur once, twice). For a context
h of length k - 1 with counts c(h, .):

    P_k(w | h) = max(c(h, w) - D, 0) / c(h) + D N1+(h .) / c(h) * P_{k-1}(w | h[1:]),

with P_0 uniform over the V symbols and P_k = P_{k-1} when h was never seen. The order a
position is scored at uses raw counts; the lower orders it backs off to use continuation counts
(the number of distinct symbols seen before h w). A symbol with i predecessors in its sequence
is scored with a context of min(i, order - 1) symbols.
"""

from __future__ import annotations

import numpy as np


def _ngram_counts(ids: np.ndarray, k: int, vocab_size: int) -> dict[tuple, np.ndarray]:
  """{context (k - 1 symbols): counts [V] of the symbol after it} over the stream `ids`."""
  windows = np.lib.stride_tricks.sliding_window_view(ids, k)
  keys, counts = np.unique(windows, axis=0, return_counts=True)
  out: dict[tuple, np.ndarray] = {}
  for key, count in zip(keys, counts, strict=True):
    out.setdefault(tuple(int(s) for s in key[:-1]), np.zeros(vocab_size))[key[-1]] = count
  return out


def _continuation_counts(ids: np.ndarray, k: int, vocab_size: int) -> dict[tuple, np.ndarray]:
  """{context (k - 1 symbols): N1+(. h w) [V]}: distinct symbols seen before each k-gram."""
  windows = np.unique(np.lib.stride_tricks.sliding_window_view(ids, k + 1), axis=0)[:, 1:]
  keys, counts = np.unique(windows, axis=0, return_counts=True)
  out: dict[tuple, np.ndarray] = {}
  for key, count in zip(keys, counts, strict=True):
    out.setdefault(tuple(int(s) for s in key[:-1]), np.zeros(vocab_size))[key[-1]] = count
  return out


def _discount(counts: dict[tuple, np.ndarray]) -> float:
  values = np.concatenate(list(counts.values())) if counts else np.zeros(1)
  n1, n2 = float((values == 1).sum()), float((values == 2).sum())
  return n1 / (n1 + 2 * n2) if n1 > 0 else 0.5


def _table(counts: dict[tuple, np.ndarray]) -> dict[tuple, tuple[np.ndarray, float, float]]:
  """{context: (counts [V], their sum, how many symbols followed it)}."""
  return {h: (c, float(c.sum()), float((c > 0).sum())) for h, c in counts.items()}


class KneserNey:
  """Interpolated Kneser-Ney model of `order` over symbols 0..vocab_size-1, fit on `ids`."""

  def __init__(self, ids: np.ndarray, vocab_size: int, order: int = 5):
    ids = np.asarray(ids, np.int64)
    self.vocab_size, self.order = vocab_size, order
    raw = {k: _ngram_counts(ids, k, vocab_size) for k in range(1, order + 1)}
    cont = {k: _continuation_counts(ids, k, vocab_size) for k in range(1, order)}
    self.tables = {('raw', k): _table(c) for k, c in raw.items()}
    self.tables |= {('cont', k): _table(c) for k, c in cont.items()}
    self.discount = {('raw', k): _discount(c) for k, c in raw.items()}
    self.discount |= {('cont', k): _discount(c) for k, c in cont.items()}

  def prob(self, context: tuple[int, ...], symbol: int, kind: str = 'raw') -> float:
    """P(symbol | context) at order len(context) + 1 (`kind`: 'raw' or 'cont' counts there)."""
    k = len(context) + 1
    lower = (self.prob(context[1:], symbol, 'cont') if k > 1 else 1.0 / self.vocab_size)
    entry = self.tables[(kind, k)].get(context)
    if entry is None:
      return lower
    counts, total, seen = entry
    d = self.discount[(kind, k)]
    return max(counts[symbol] - d, 0.0) / total + d * seen / total * lower

  def probs(self, context: tuple[int, ...]) -> np.ndarray:
    """P(. | context) [V] (the distribution a symbol after `context` is scored with)."""
    context = tuple(context[max(0, len(context) - self.order + 1):])
    return np.array([self.prob(context, w) for w in range(self.vocab_size)])

  def log_probs(self, sequences: np.ndarray) -> np.ndarray:
    """log P(x_i | x_{i-m..i-1}), m = min(i, order - 1), for i = 1..L-1: [N, L] -> [N, L-1]."""
    seqs = np.asarray(sequences, np.int64)
    out = np.empty((seqs.shape[0], seqs.shape[1] - 1))
    for n, row in enumerate(seqs.tolist()):
      for i in range(1, len(row)):
        out[n, i - 1] = np.log(self.prob(tuple(row[max(0, i - self.order + 1):i]), row[i]))
    return out
