"""Language modelling on the shared transformer (the quickstart experiment), and the shared
pieces the LM papers reuse: the corpus, sequence windows, the token cross-entropy, and starting
from a Hugging Face Qwen2 checkpoint.

The corpus (`load_lm_corpus(config.data)`) is the character corpus of the data directory by
default; with `data.text_files` (comma-separated jsonl/parquet/arrow paths, directories or
globs; column `data.text_field`) and `data.tokenizer` (a tokenizer.json or its directory) it is
those documents tokenized, each followed by EOS (`data.eos_token`, default the tokenizer's
'<|endoftext|>', '</s>' or '<eos>'), as one token stream. Both split 90/10 into train and
validation streams that `windows` cuts into fixed-length sequences.

`model.init_checkpoint` (a directory with config.json + model.safetensors) gives a causal
model's initial parameters through `common.hf.load_qwen2`; `check_init_checkpoint` refuses a
checkpoint whose architecture differs from `config.model`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import config as cfglib
from common import data, hf, parallel, train
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
    data.stand_in_notice('a generated corpus')
    text = synthetic_text()
  else:
    text = data.load_char_corpus(root)
  chars = ''.join(sorted(set(text)))
  ids = np.frombuffer(text.encode('utf-32-le'), np.uint32)
  lookup = {ord(c): i for i, c in enumerate(chars)}
  ids = np.vectorize(lookup.__getitem__, otypes=[np.int32])(ids)
  split = int(0.9 * len(ids))
  return CharCorpus(ids[:split], ids[split:], chars)


@dataclasses.dataclass(frozen=True)
class TokenCorpus:
  """Tokenized text documents joined with EOS, as int32 ids with a 90/10 train/valid split."""
  train: np.ndarray
  valid: np.ndarray
  tokenizer: Any  # tokenizers.Tokenizer
  vocab_size: int  # the tokenizer's, added tokens included

  def decode(self, ids) -> str:
    return self.tokenizer.decode([int(i) for i in np.asarray(ids)])


Corpus = CharCorpus | TokenCorpus


def string_setting(section: ml_collections.ConfigDict, name: str, default: str = '',
                   section_name: str = 'data') -> str:
  """A string setting of a config section (`default` when absent), e.g. a path."""
  value = section.get(name, default)
  if not isinstance(value, str):
    raise cfglib.ConfigError(f'config.{section_name}.{name}={value!r} must be a string: '
                             f'pass --config.{section_name}.{name}=PATH')
  return value


def text_file_paths(data_config: ml_collections.ConfigDict) -> list[str]:
  """`data.text_files` split at commas (each a file, a directory or a glob); [] when unset."""
  return [p.strip() for p in string_setting(data_config, 'text_files').split(',') if p.strip()]


def check_text_data(config: ml_collections.ConfigDict) -> None:
  """`data.text_files` needs `data.tokenizer` (and the reverse)."""
  d = config.get('data', ml_collections.ConfigDict())
  files, tokenizer = text_file_paths(d), string_setting(d, 'tokenizer')
  if files and not tokenizer:
    raise cfglib.ConfigError('config.data.text_files is set but config.data.tokenizer is empty: '
                             'pass --config.data.tokenizer=/path/to/tokenizer.json')
  if tokenizer and not files:
    raise cfglib.ConfigError('config.data.tokenizer is set but config.data.text_files is empty: '
                             'pass --config.data.text_files=/data/*.parquet (or unset the '
                             'tokenizer for the character corpus)')


def load_tokenizer(data_config: ml_collections.ConfigDict):
  """The `tokenizers.Tokenizer` named by `data.tokenizer` (a ConfigError when missing)."""
  path = string_setting(data_config, 'tokenizer')
  try:
    return hf.load_tokenizer(path)
  except FileNotFoundError:
    raise cfglib.ConfigError(f'config.data.tokenizer={path!r} does not exist: pass a '
                             'tokenizer.json or the directory holding one') from None
  except Exception as e:  # tokenizers raises a bare Exception on a malformed file
    raise cfglib.ConfigError(f'config.data.tokenizer={path!r} cannot be read ({e}): pass a '
                             'Hugging Face tokenizer.json') from None


def load_token_corpus(data_config: ml_collections.ConfigDict) -> TokenCorpus:
  """The documents of `data.text_files` tokenized with `data.tokenizer`, EOS-joined, split
  90/10 (at a token, as the character corpus is)."""
  tokenizer = load_tokenizer(data_config)
  eos_token = string_setting(data_config, 'eos_token') or None
  ids = data.token_stream(text_file_paths(data_config), tokenizer,
                          string_setting(data_config, 'text_field', 'text'), eos_token)
  split = int(0.9 * len(ids))
  return TokenCorpus(ids[:split], ids[split:], tokenizer,
                     tokenizer.get_vocab_size(with_added_tokens=True))


def load_lm_corpus(data_config: ml_collections.ConfigDict) -> Corpus:
  """Token files when `data.text_files` is set, else the character corpus (`load_corpus`)."""
  if text_file_paths(data_config):
    return load_token_corpus(data_config)
  return load_corpus(data_config.get('data_dir', ''))


# --- starting from a Hugging Face checkpoint ------------------------------------------------

INIT_CHECKPOINT = 'init_checkpoint'
_ARCHITECTURE = ('num_layers', 'd_model', 'num_heads', 'num_kv_heads', 'mlp_dim', 'rope_theta',
                 'norm_eps', 'tie_embeddings')


def model_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`config.model` as `Transformer` keyword arguments (without `init_checkpoint`)."""
  return {k: v for k, v in config.model.items() if k != INIT_CHECKPOINT}


def check_init_checkpoint(config: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """Reads the checkpoint's config.json and checks it against `config.model`; returns the
  checkpoint's `Transformer` kwargs (None without `model.init_checkpoint`)."""
  path = string_setting(config.model, INIT_CHECKPOINT, section_name='model')
  if not path:
    return None
  setting = f'config.model.{INIT_CHECKPOINT}={path!r}'
  try:
    with open(os.path.join(path, hf.CONFIG_FILE)) as f:
      theirs = hf.transformer_kwargs(json.load(f))
  except FileNotFoundError:
    raise cfglib.ConfigError(f'{setting} has no {hf.CONFIG_FILE}: pass a Hugging Face '
                             'checkpoint directory (config.json + model.safetensors)') from None
  except (ValueError, KeyError) as e:
    raise cfglib.ConfigError(f'{setting} is not a Qwen2 checkpoint ({e}): pass a Qwen2-family '
                             'checkpoint directory') from None
  model = Transformer(vocab_size=1, **model_kwargs(config))  # the config's defaults filled in
  for key in _ARCHITECTURE:
    mine, other = getattr(model, key), theirs[key]
    if key == 'num_kv_heads':
      mine = mine or model.num_heads
    same = math.isclose(mine, other, rel_tol=1e-9) if isinstance(mine, float) else mine == other
    if not same:
      raise cfglib.ConfigError(f'config.model.{key}={mine!r} but the checkpoint {path} has '
                               f'{other!r}: pass --config.model.{key}={other!r} (or a checkpoint '
                               'of this architecture)')
  return theirs


def load_init_checkpoint(config: ml_collections.ConfigDict, tokenizer_vocab: int
                         ) -> tuple[int, dict[str, Any]]:
  """(the checkpoint's vocabulary size, its float32 numpy parameters {'params': ...}).

  The checkpoint's embedding may be larger than the tokenizer's vocabulary (Qwen2.5 pads it),
  never smaller."""
  kwargs = check_init_checkpoint(config)
  if kwargs is None:
    raise cfglib.ConfigError(f'config.model.{INIT_CHECKPOINT} is empty: pass a checkpoint dir')
  path = config.model[INIT_CHECKPOINT]
  if tokenizer_vocab > kwargs['vocab_size']:
    raise cfglib.ConfigError(f'config.data.tokenizer has {tokenizer_vocab} tokens but the '
                             f'checkpoint {path} embeds only {kwargs["vocab_size"]}: pass the '
                             "checkpoint's own tokenizer")
  try:
    _, params = hf.load_qwen2(path)
  except (FileNotFoundError, hf.CheckpointFormatError) as e:
    raise cfglib.ConfigError(f'config.model.{INIT_CHECKPOINT}={path!r}: {e}: pass a complete '
                             'Qwen2 checkpoint') from None
  return kwargs['vocab_size'], params


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
  check_text_data(config)


def fit_char_lm(config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh,
                corpus: Corpus, params, logits_fn: Callable,
                loss_fn: Callable | None = None, tx: optax.GradientTransformation | None = None,
                first_batch: int = 0, evaluator: Callable | None = None) -> train.FitResult:
  """Trains `logits_fn(params, tokens) -> logits` on windows of the corpus with `train.fit`;
  the loss defaults to next-token cross-entropy, eval is validation bits per character (per
  token for a `TokenCorpus`). `tx` replaces the optimizer of `config.optim`; step s trains on
  batch `first_batch + s` of the seed's shuffled windows (a stage continuing another run's
  data stream starts past that run's batches). `evaluator(params)` adds host-side eval
  metrics (`train.fit`)."""
  seq_len, batch_size = config.data.seq_len, config.train.batch_size
  train_windows = windows(corpus.train, seq_len)
  valid_windows = windows(corpus.valid, seq_len)
  bits_name = 'bits_per_char' if isinstance(corpus, CharCorpus) else 'bits_per_token'

  def default_loss(params, batch, rng):
    del rng
    return token_cross_entropy(logits_fn(params, batch['tokens'][:, :-1]),
                               batch['tokens'][:, 1:]), {}

  def eval_fn(params, batch):
    nats = token_cross_entropy(logits_fn(params, batch['tokens'][:, :-1]),
                               batch['tokens'][:, 1:])
    return {'loss': nats, bits_name: nats / jnp.log(2.0)}

  order = data.batch_indices(len(train_windows), batch_size, config.seed)
  eval_rows = min(config.train.eval_batches * batch_size,
                  len(valid_windows) // batch_size * batch_size)

  def eval_batches():
    for start in range(0, eval_rows, batch_size):
      yield data.take({'tokens': valid_windows}, np.arange(start, start + batch_size))

  return train.fit(config, workdir, mesh=mesh, params=params, loss_fn=loss_fn or default_loss,
                   train_batch=lambda step: data.take({'tokens': train_windows},
                                                      order[first_batch + step]),
                   eval_fn=eval_fn, eval_batches=eval_batches, tx=tx, evaluator=evaluator)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains a character LM (or a token LM on `data.text_files`); the eval metric is
  validation bits per character (token)."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  corpus = load_lm_corpus(config.data)
  model = Transformer(vocab_size=corpus.vocab_size, causal=True, **config.model)
  params = model.init(jax.random.key(config.seed), np.zeros((1, config.data.seq_len), np.int32))
  return fit_char_lm(config, workdir, mesh, corpus, params, model.apply)
