"""ParScale LM experiments: the P-stream model on the shared trainer, and a fast seed-vmapped
trainer (one jitted `lax.scan` per run group) used by the reproduction.

    python -m common.main --config=configs/parscale/char_lm.py:smoke --workdir=/tmp/parscale

Data: the character corpus, or token files (`data.text_files` + `data.tokenizer`, see
`common.lm`). `model.init_checkpoint` (a Hugging Face Qwen2 directory, e.g. a P = 1 model) is
the two-stage recycling of the paper: the backbone starts from the checkpoint's parameters,
the P streams' prefixes and the aggregator start fresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import config as cfglib
from common import lm, parallel, train
from papers.parscale.model import ParScaleLM


def make_model(config: ml_collections.ConfigDict, vocab_size: int,
               num_streams: int | None = None) -> ParScaleLM:
  ps = config.parscale
  return ParScaleLM(vocab_size=vocab_size,
                    num_streams=ps.num_streams if num_streams is None else num_streams,
                    num_prefix=ps.num_prefix, eps=ps.eps, prefix_init=ps.prefix_init,
                    model=lm.model_kwargs(config))


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  lm.validate(config, num_devices)
  cfglib.check_positive_int(config, 'parscale.num_streams', 'parscale.num_prefix')
  if not 0.0 <= config.parscale.eps < 1.0:
    raise cfglib.ConfigError(f'config.parscale.eps={config.parscale.eps} must be in [0, 1)')
  if lm.check_init_checkpoint(config) and not lm.text_file_paths(config.data):
    raise cfglib.ConfigError('config.model.init_checkpoint needs token data: pass '
                             '--config.data.text_files=... and --config.data.tokenizer=... (the '
                             "checkpoint's tokenizer.json)")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains a P-stream LM; the eval metric is validation bits per character (token). With
  `model.init_checkpoint` the backbone starts from that checkpoint (recycling)."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  corpus = lm.load_lm_corpus(config.data)
  vocab_size, backbone = corpus.vocab_size, None
  if config.model.get(lm.INIT_CHECKPOINT):
    vocab_size, backbone = lm.load_init_checkpoint(config, corpus.vocab_size)
  model = make_model(config, vocab_size)
  params = model.init(jax.random.key(config.seed),
                      np.zeros((1, config.data.seq_len), np.int32))
  if backbone is not None:
    params = {'params': {**params['params'], 'backbone': backbone['params']}}

  def loss_fn(params, batch, rng):
    del rng
    logits, weights = model.apply(params, batch['tokens'][:, :-1], return_weights=True)
    return lm.token_cross_entropy(logits, batch['tokens'][:, 1:]), {
        'max_stream_weight': weights.max(-1).mean()}

  return lm.fit_char_lm(config, workdir, mesh, corpus, params, model.apply, loss_fn)


# --- fast trainer for the sweeps: whole run = one jit of a lax.scan, vmapped over seeds -------

def frozen_backbone_labels(params: Any) -> Any:
  """'freeze' for the backbone, 'train' for prefixes and aggregator (the PEFT variant)."""
  return {'params': {name: jax.tree.map(lambda _, n=name: 'freeze' if n == 'backbone' else 'train',
                                        sub)
                     for name, sub in params['params'].items()}}


def make_run(model: ParScaleLM, train_ids: np.ndarray, valid_windows: np.ndarray, *,
             seq_len: int, batch_size: int, steps: int, optim: ml_collections.ConfigDict,
             freeze_backbone: bool = False, eval_chunk: int = 64) -> Callable:
  """Returns jitted `run(params, data_key) -> (params, train_losses [steps], valid_loss)`,
  vmapped over a leading seed axis of both arguments. Batches are random windows of the
  training ids drawn from (data_key, step): the same data for every P at a given seed."""
  tx = train.make_optimizer(optim, steps)
  if freeze_backbone:
    tx = optax.multi_transform({'train': tx, 'freeze': optax.set_to_zero()},
                               frozen_backbone_labels)
  ids = jnp.asarray(train_ids)
  valid = jnp.asarray(valid_windows[: len(valid_windows) // eval_chunk * eval_chunk])

  def loss(params, tokens):
    return lm.token_cross_entropy(model.apply(params, tokens[:, :-1]), tokens[:, 1:])

  def run(params, data_key):
    def step(carry, i):
      params, opt_state = carry
      starts = jax.random.randint(jax.random.fold_in(data_key, i), (batch_size,), 0,
                                  ids.shape[0] - seq_len - 1)
      tokens = ids[starts[:, None] + jnp.arange(seq_len + 1)]
      value, grads = jax.value_and_grad(loss)(params, tokens)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), value

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
    chunks = valid.reshape(-1, eval_chunk, valid.shape[-1])
    valid_loss = jax.lax.map(lambda c: loss(params, c), chunks).mean()
    return params, losses, valid_loss

  return jax.jit(jax.vmap(run))


def init_params(model: ParScaleLM, seeds, seq_len: int) -> Any:
  """Parameters for each seed, stacked on a leading axis (the backbone's init depends only on
  the seed, so P = 1 and P > 1 runs of one seed start from the same backbone)."""
  tokens = jnp.zeros((1, seq_len), jnp.int32)
  keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
  return jax.vmap(lambda k: model.init(k, tokens))(keys)


def data_keys(seeds) -> jax.Array:
  return jnp.stack([jax.random.fold_in(jax.random.key(int(s)), 7919) for s in seeds])
