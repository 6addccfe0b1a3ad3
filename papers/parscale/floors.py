"""Trivial baselines of the validation loss: unigram and bigram cross-entropy (nats/symbol).

Each n-gram model is estimated from the training stream with add-one smoothing and scored on
exactly the targets the experiment's eval scores (symbols 1..L of each validation window), so
a trained LM's `eval/loss` and these floors are on the same text.
"""

from __future__ import annotations

import numpy as np


def unigram_cross_entropy(train_ids: np.ndarray, windows: np.ndarray, vocab_size: int) -> float:
  """-mean log p(x_i) over the windows' targets, p = add-one symbol frequencies of train."""
  counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
  log_p = np.log(counts / counts.sum())
  return float(-log_p[windows[:, 1:]].mean())


def bigram_cross_entropy(train_ids: np.ndarray, windows: np.ndarray, vocab_size: int) -> float:
  """-mean log p(x_i | x_{i-1}) over the windows' targets, p = add-one bigram frequencies of
  train (the context of each target is the symbol before it in the window)."""
  counts = np.ones((vocab_size, vocab_size))
  np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1.0)
  log_p = np.log(counts / counts.sum(1, keepdims=True))
  return float(-log_p[windows[:, :-1], windows[:, 1:]].mean())
