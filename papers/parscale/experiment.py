"""ParScale LM experiment: the P-stream model on the shared trainer.

    python -m common.main --config=configs/parscale/char_lm.py:smoke --workdir=/tmp/parscale

Data: the character corpus, or token files (`data.text_files` + `data.tokenizer`, see
`common.lm`). Two ways to start from a trained P = 1 model (the paper's two-stage recycling):
`parscale.init_from` (the workdir of another run of this experiment: its newest checkpoint's
backbone) or `model.init_checkpoint` (a Hugging Face Qwen2 directory). Either way the P
streams' prefixes and the aggregator start fresh; `parscale.freeze_backbone` trains only them
(the paper's PEFT variant), and `data.first_batch` continues the earlier run's data stream.

Stream initialisation (`parscale.stream_init`): 'normal' draws every prefix from
normal(`parscale.prefix_init`); 'snippets' (needs a trained backbone) fills stream p's m slots
with the backbone's own keys and values on m / `parscale.snippet_len` training snippets of its
own (`model.snippet_kv`), so each stream starts as the trained model reading a different text
before its input. `parscale.zero_aggregator_out` starts the aggregator's last layer at 0 (equal
weights), `parscale.prefix_at_p1` gives P = 1 prefixes (the prefix-tuning control). Every eval
also logs the streams' statistics (`stream_statistics`): aggregation-weight entropy and
maximum, stream diversity, and each stream's own loss.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import checkpoint, lm, parallel, train
from common import config as cfglib
from common.models.transformer import Transformer
from papers.parscale import model as ps
from papers.parscale.model import ParScaleLM, count_parameters

STREAM_INITS = ('normal', 'snippets')


def make_model(config: ml_collections.ConfigDict, vocab_size: int,
               num_streams: int | None = None) -> ParScaleLM:
  ps = config.parscale
  return ParScaleLM(vocab_size=vocab_size,
                    num_streams=ps.num_streams if num_streams is None else num_streams,
                    num_prefix=ps.num_prefix, eps=ps.eps, prefix_init=ps.prefix_init,
                    model=lm.model_kwargs(config), prefix_at_p1=ps.get('prefix_at_p1', False),
                    zero_aggregator_out=ps.get('zero_aggregator_out', False))


def make_loss(model: ParScaleLM):
  """`loss_fn(params, batch, rng) -> (next-token cross-entropy, {'max_stream_weight'})`."""

  def loss_fn(params, batch, rng):
    del rng
    logits, weights = model.apply(params, batch['tokens'][:, :-1], return_weights=True)
    return lm.token_cross_entropy(logits, batch['tokens'][:, 1:]), {
        'max_stream_weight': weights.max(-1).mean()}

  return loss_fn


def snippet_prefixes(model: ParScaleLM, params: Any, train_ids: np.ndarray, snippet_len: int,
                     seed: int) -> dict[str, np.ndarray]:
  """Prefixes from the backbone's keys and values on training snippets: stream p holds
  snippets p * k .. p * k + k - 1 (k = m / snippet_len) of one seed-fixed order of the
  training windows, so at one seed a smaller P's streams are the first of a larger P's, and
  P = 1 with P x m slots holds exactly P streams' slots."""
  p, m = model.num_streams, model.num_prefix
  count = p * m // snippet_len
  starts = np.random.default_rng([seed, 23]).permutation(len(train_ids) // snippet_len)[:count]
  snippets = train_ids[starts[:, None] * snippet_len + np.arange(snippet_len)]
  backbone = Transformer(vocab_size=model.vocab_size, causal=True, **(model.model or {}))
  kv = ps.snippet_kv(backbone, {'params': params['params']['backbone']}, jnp.asarray(snippets))
  out = {}
  for i, (k, v) in enumerate(kv):  # [count, kv, L, hd] -> [P, kv, m, hd]
    for name, x in (('k', k), ('v', v)):
      x = np.asarray(x).reshape((p, m // snippet_len) + x.shape[1:])
      out[f'prefix_{name}_{i}'] = x.transpose(0, 2, 1, 3, 4).reshape(p, x.shape[2], m, -1)
  return out


def stream_statistics(model: ParScaleLM, config: ml_collections.ConfigDict, corpus: lm.Corpus):
  """`statistics(params)` over the eval windows: 'loss' (the mixed model's), 'agg_entropy'
  (nats), 'max_stream_weight', 'stream_diversity' (`model.stream_diversity`),
  'stream_loss_best' / 'stream_loss_mean' (each stream's hidden states alone through the head;
  the best and the mean over streams)."""
  seq_len, batch = config.data.seq_len, config.train.batch_size
  valid = lm.windows(corpus.valid, seq_len)
  rows = min(config.train.eval_batches * batch, len(valid) // batch * batch)

  @jax.jit
  def stats(params, tokens):
    hidden, weights, mixed = model.apply(params, tokens[:, :-1], method=ParScaleLM.streams)
    loss = lambda h: lm.token_cross_entropy(  # noqa: E731
        model.apply(params, h, method=ParScaleLM.unembed), tokens[:, 1:])
    return {'loss': loss(mixed), 'stream_loss': jnp.stack([loss(h) for h in hidden]),
            'agg_entropy': ps.weight_entropy(weights),
            'max_stream_weight': weights.max(-1).mean(),
            'stream_diversity': ps.stream_diversity(hidden)}

  def statistics(params) -> dict[str, float]:
    out = [jax.device_get(stats(params, valid[s:s + batch])) for s in range(0, rows, batch)]
    mean = {k: np.mean([o[k] for o in out], axis=0) for k in out[0]}
    losses = mean.pop('stream_loss')
    return {**{k: float(v) for k, v in mean.items()},
            'stream_loss_best': float(losses.min()), 'stream_loss_mean': float(losses.mean())}

  return statistics


def frozen_backbone_labels(params: Any) -> Any:
  """'freeze' for the backbone, 'train' for prefixes and aggregator (the PEFT variant)."""
  return {'params': {name: jax.tree.map(lambda _, n=name: 'freeze' if n == 'backbone' else 'train',
                                        sub)
                     for name, sub in params['params'].items()}}


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  lm.validate(config, num_devices)
  cfglib.check_positive_int(config, 'parscale.num_streams', 'parscale.num_prefix')
  cfglib.check_nonneg_int(config, 'data.first_batch')
  if not 0.0 <= config.parscale.eps < 1.0:
    raise cfglib.ConfigError(f'config.parscale.eps={config.parscale.eps} must be in [0, 1)')
  if lm.check_init_checkpoint(config) and not lm.text_file_paths(config.data):
    raise cfglib.ConfigError('config.model.init_checkpoint needs token data: pass '
                             '--config.data.text_files=... and --config.data.tokenizer=... (the '
                             "checkpoint's tokenizer.json)")
  init_from = lm.string_setting(config.parscale, 'init_from', section_name='parscale')
  if init_from and config.model.get(lm.INIT_CHECKPOINT):
    raise cfglib.ConfigError('config.parscale.init_from and config.model.init_checkpoint both '
                             'name a backbone: pass one of them')
  trained = init_from or config.model.get(lm.INIT_CHECKPOINT)
  if config.parscale.freeze_backbone and not trained:
    raise cfglib.ConfigError('config.parscale.freeze_backbone=True needs a trained backbone: '
                             'pass --config.parscale.init_from=WORKDIR')
  init = config.parscale.get('stream_init', 'normal')
  if init not in STREAM_INITS:
    raise cfglib.ConfigError(f'config.parscale.stream_init={init!r}: use one of {STREAM_INITS}')
  if init == 'snippets':
    if not trained:
      raise cfglib.ConfigError("config.parscale.stream_init='snippets' needs a trained "
                               'backbone: pass --config.parscale.init_from=WORKDIR')
    length = config.parscale.get('snippet_len', 0) or config.parscale.num_prefix
    if length < 1 or config.parscale.num_prefix % length:
      raise cfglib.ConfigError(f'config.parscale.snippet_len={length} must divide '
                               f'config.parscale.num_prefix={config.parscale.num_prefix}')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains a P-stream LM; evaluates validation loss (nats), bits per character (token) and the
  streams' statistics every `train.eval_every` steps. Final metrics add the statistics before
  training (`start_*`), `non_embedding_params` (the paper's N) and `trainable_params`."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  corpus = lm.load_lm_corpus(config.data)
  vocab_size, backbone = corpus.vocab_size, None
  if config.model.get(lm.INIT_CHECKPOINT):
    vocab_size, backbone = lm.load_init_checkpoint(config, corpus.vocab_size)
  elif config.parscale.init_from:  # stage 2: the backbone of another run's newest checkpoint
    backbone = checkpoint.restore_params(config.parscale.init_from)
  model = make_model(config, vocab_size)
  params = model.init(jax.random.key(config.seed),
                      np.zeros((1, config.data.seq_len), np.int32))
  if backbone is not None:
    params = {'params': {**params['params'], 'backbone': backbone['params']['backbone']
                         if 'backbone' in backbone['params'] else backbone['params']}}
  if config.parscale.get('stream_init', 'normal') == 'snippets' and model.has_prefix:
    length = config.parscale.get('snippet_len', 0) or config.parscale.num_prefix
    params = {'params': {**params['params'], **snippet_prefixes(model, params, corpus.train,
                                                                length, config.seed)}}
  tx = None
  if config.parscale.freeze_backbone:
    tx = optax.multi_transform({'train': train.make_optimizer(config.optim, config.train.steps),
                                'freeze': optax.set_to_zero()}, frozen_backbone_labels)
  statistics = stream_statistics(model, config, corpus)
  start = {f'start_{k}': v for k, v in statistics(params).items()}  # before any training
  result = lm.fit_char_lm(config, workdir, mesh, corpus, params, model.apply, make_loss(model),
                          tx=tx, first_batch=config.data.first_batch,
                          evaluator=lambda p: {k: v for k, v in statistics(p).items()
                                               if k != 'loss'})
  counts = count_parameters(params)
  stream_part = counts['total'] - count_parameters(params['params']['backbone'])['total']
  result.eval_metrics.update(start, non_embedding_params=counts['non_embedding'],
                             trainable_params=stream_part if config.parscale.freeze_backbone
                             else counts['total'])
  return result
