"""Character-level language modelling on the shared transformer (the quickstart experiment).

Also the shared pieces the LM papers reuse: the character corpus split, sequence windows
and the token cross-entropy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from common import config as cfglib
from common import data, parallel, train
from common.models.transformer import Transformer


@dataclasses.dataclass(frozen=True)
class CharCorpus:
  """A character corpus as int32 ids with a 90/10 train/validation split."""
  train: np.ndarray
  valid: np.ndarray
  chars: str

  @property
  def vocab_size(self) -> int:
    return len(self.chars)

  def decode(self, ids) -> str:
    return ''.join(self.chars[i] for i in np.asarray(ids))


def synthetic_text(num_chars: int = 200_000, seed: int = 0) -> str:
  """A generated stand-in corpus: words from a small Zipfian vocabulary, in sentences."""
  rng = np.random.default_rng(seed)
  letters = np.array(list('etaoinshrdlucmfwypvbgk'))
  words = [''.join(rng.choice(letters, rng.integers(1, 8))) for _ in range(300)]
  probs = 1.0 / np.arange(1, len(words) + 1)
  out, size = [], 0
  while size < num_chars:
    sentence = ' '.join(rng.choice(words, rng.integers(3, 12), p=probs / probs.sum()))
    out.append(sentence.capitalize() + '.\n')
    size += len(out[-1])
  return ''.join(out)[:num_chars]


def load_corpus(data_dir_setting: str = '') -> CharCorpus:
  """Tiny Shakespeare from the data directory, or the generated corpus with a notice."""
  root = data.data_dir(data_dir_setting)
  if root is None:
    logging.warning('no data directory (set $%s): using a generated corpus', data.sources.ENV_VAR)
    print(f'notice: no data directory (set ${data.sources.ENV_VAR}); '
          'training on a generated corpus')
    text = synthetic_text()
  else:
    text = data.load_char_corpus(root)
  chars = ''.join(sorted(set(text)))
  ids = np.frombuffer(text.encode('utf-32-le'), np.uint32)
  lookup = {ord(c): i for i, c in enumerate(chars)}
  ids = np.vectorize(lookup.__getitem__, otypes=[np.int32])(ids)
  split = int(0.9 * len(ids))
  return CharCorpus(ids[:split], ids[split:], chars)


def windows(ids: np.ndarray, seq_len: int) -> np.ndarray:
  """Non-overlapping windows [N, seq_len + 1] (inputs plus the next-token targets)."""
  n = (len(ids) - 1) // seq_len
  starts = np.arange(n) * seq_len
  return ids[starts[:, None] + np.arange(seq_len + 1)]


def token_cross_entropy(logits: jax.Array, targets: jax.Array,
                        weights: jax.Array | None = None) -> jax.Array:
  """Mean next-token cross-entropy in nats (weighted mean when `weights` is given)."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  if weights is None:
    return losses.mean()
  return (losses * weights).sum() / jnp.maximum(weights.sum(), 1)


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.validate_train(config, num_devices)
  cfglib.check_positive_int(config, 'data.seq_len', 'model.num_layers', 'model.d_model',
                            'model.num_heads', 'model.mlp_dim', 'train.eval_batches')
  if config.model.d_model % config.model.num_heads:
    raise cfglib.ConfigError(f'config.model.d_model={config.model.d_model} is not divisible by '
                             f'config.model.num_heads={config.model.num_heads}: change either')


def fit_char_lm(config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh,
                corpus: CharCorpus, params, logits_fn: Callable,
                loss_fn: Callable | None = None) -> train.FitResult:
  """Trains `logits_fn(params, tokens) -> logits` on windows of the corpus with `train.fit`;
  the loss defaults to next-token cross-entropy, eval is validation bits per character."""
  seq_len, batch_size = config.data.seq_len, config.train.batch_size
  train_windows = windows(corpus.train, seq_len)
  valid_windows = windows(corpus.valid, seq_len)

  def default_loss(params, batch, rng):
    del rng
    return token_cross_entropy(logits_fn(params, batch['tokens'][:, :-1]),
                               batch['tokens'][:, 1:]), {}

  def eval_fn(params, batch):
    nats = token_cross_entropy(logits_fn(params, batch['tokens'][:, :-1]),
                               batch['tokens'][:, 1:])
    return {'loss': nats, 'bits_per_char': nats / jnp.log(2.0)}

  order = data.batch_indices(len(train_windows), batch_size, config.seed)
  eval_rows = min(config.train.eval_batches * batch_size,
                  len(valid_windows) // batch_size * batch_size)

  def eval_batches():
    for start in range(0, eval_rows, batch_size):
      yield data.take({'tokens': valid_windows}, np.arange(start, start + batch_size))

  return train.fit(config, workdir, mesh=mesh, params=params, loss_fn=loss_fn or default_loss,
                   train_batch=lambda step: data.take({'tokens': train_windows}, order[step]),
                   eval_fn=eval_fn, eval_batches=eval_batches)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains a character LM; the eval metric is validation bits per character."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  corpus = load_corpus(config.data.data_dir)
  model = Transformer(vocab_size=corpus.vocab_size, causal=True, **config.model)
  params = model.init(jax.random.key(config.seed), np.zeros((1, config.data.seq_len), np.int32))
  return fit_char_lm(config, workdir, mesh, corpus, params, model.apply)
