"""ParScale LM experiment: the P-stream model on the shared trainer.

    python -m common.main --config=configs/parscale/char_lm.py:smoke --workdir=/tmp/parscale

Data: the character corpus, or token files (`data.text_files` + `data.tokenizer`, see
`common.lm`). Two ways to start from a trained P = 1 model (the paper's two-stage recycling):
`parscale.init_from` (the workdir of another run of this experiment: its newest checkpoint's
backbone) or `model.init_checkpoint` (a Hugging Face Qwen2 directory). Either way the P
streams' prefixes and the aggregator start fresh; `parscale.freeze_backbone` trains only them
(the paper's PEFT variant), and `data.first_batch` continues the earlier run's data stream.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from common import checkpoint, lm, parallel, train
from common import config as cfglib
from papers.parscale.model import ParScaleLM, count_parameters


def make_model(config: ml_collections.ConfigDict, vocab_size: int,
               num_streams: int | None = None) -> ParScaleLM:
  ps = config.parscale
  return ParScaleLM(vocab_size=vocab_size,
                    num_streams=ps.num_streams if num_streams is None else num_streams,
                    num_prefix=ps.num_prefix, eps=ps.eps, prefix_init=ps.prefix_init,
                    model=lm.model_kwargs(config))


def make_loss(model: ParScaleLM):
  """`loss_fn(params, batch, rng) -> (next-token cross-entropy, {'max_stream_weight'})`."""

  def loss_fn(params, batch, rng):
    del rng
    logits, weights = model.apply(params, batch['tokens'][:, :-1], return_weights=True)
    return lm.token_cross_entropy(logits, batch['tokens'][:, 1:]), {
        'max_stream_weight': weights.max(-1).mean()}

  return loss_fn


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
  if config.parscale.freeze_backbone and not (init_from or config.model.get(lm.INIT_CHECKPOINT)):
    raise cfglib.ConfigError('config.parscale.freeze_backbone=True needs a trained backbone: '
                             'pass --config.parscale.init_from=WORKDIR')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains a P-stream LM; evaluates validation loss (nats) and bits per character (token)
  every `train.eval_every` steps. Final metrics add `non_embedding_params` (the paper's N)."""
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
  tx = None
  if config.parscale.freeze_backbone:
    tx = optax.multi_transform({'train': train.make_optimizer(config.optim, config.train.steps),
                                'freeze': optax.set_to_zero()}, frozen_backbone_labels)
  result = lm.fit_char_lm(config, workdir, mesh, corpus, params, model.apply, make_loss(model),
                          tx=tx, first_batch=config.data.first_batch)
  result.eval_metrics['non_embedding_params'] = count_parameters(params)['non_embedding']
  return result
