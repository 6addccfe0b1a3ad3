"""EDLM experiments: each stage of the pipeline is one run of `train_and_evaluate`.

`config.model_kind` picks the stage:
  'mdlm':   the bidirectional denoiser (eval: validation NELBO, Eq. (3));
  'ar':     a causal LM (the EDLM-AR energy, or the larger judge; eval: validation loss);
  'nce':    the energy network, its backbone starting from the denoiser run named by
            `runs.denoiser`, which stays frozen (its parameters are params['denoiser'], the
            energy's params['energy']); eval: validation NCE loss and accuracy;
  'sample': the evaluation (`papers.edlm.evaluation`): samples of every sampler from the runs
            named in `runs`, scored by the AR judge and a 5-gram judge, with the floors and
            the likelihood rows.

Stages that start from another run read its newest checkpoint (`common.checkpoint.
restore_params`) and its `config.json` (the architecture it was trained with). Data
(`common.lm.load_lm_corpus`): the character corpus of the data directory, or with
`data.text_files` + `data.tokenizer` those documents tokenized and EOS-joined (e.g. OpenWebText
with the GPT-2 tokenizer); the mask id is the vocabulary size either way.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import checkpoint, data, lm, parallel, train
from common import config as cfglib
from common.models.transformer import Transformer
from papers.edlm import diffusion, energy

KINDS = ('mdlm', 'ar', 'nce', 'sample')
STAGES = ('denoiser', 'ar_energy', 'nce_energy', 'judge')  # the keys of config.runs
STAGE_KINDS = {'denoiser': 'mdlm', 'ar_energy': 'ar', 'nce_energy': 'nce', 'judge': 'ar'}


def denoiser_model(config: ml_collections.ConfigDict, vocab_size: int) -> Transformer:
  """Bidirectional transformer over vocab + [MASK] (mask id = vocab_size)."""
  return Transformer(vocab_size=vocab_size + 1, causal=False, **config.model)


def ar_model(model_cfg: dict, vocab_size: int) -> Transformer:
  return Transformer(vocab_size=vocab_size, causal=True, **model_cfg)


def energy_model(config: ml_collections.ConfigDict, vocab_size: int) -> energy.EnergyNetwork:
  return energy.EnergyNetwork(vocab_size=vocab_size + 1, **config.model)


def denoiser_log_probs(model: Transformer, params, xt: jax.Array, mask_id: int) -> jax.Array:
  return diffusion.subs_log_probs(model.apply(params, xt), xt, mask_id)


def mdlm_loss(model: Transformer, params, x0: jax.Array, key: jax.Array, mask_id: int,
              eps: float, sampling_eps: float) -> jax.Array:
  """One Monte-Carlo estimate of the MDLM NELBO (nats/token) on a batch x0 [B, L]."""
  k_t, k_mask = jax.random.split(key)
  t = diffusion.antithetic_times(k_t, x0.shape[0], sampling_eps)
  xt = diffusion.forward_mask(k_mask, x0, t, mask_id, eps)
  return diffusion.diffusion_loss(denoiser_log_probs(model, params, xt, mask_id), x0, xt, t,
                                  mask_id, eps)


def nce_batch_loss(energy_net, energy_params, denoiser, denoiser_params, x0: jax.Array,
                   key: jax.Array, mask_id: int, eps: float, sampling_eps: float):
  """NCE (Eq. (9)) with x0- ~ mu(. | xt) from the frozen denoiser; returns (loss, accuracy)."""
  k_t, k_mask, k_neg = jax.random.split(key, 3)
  t = diffusion.antithetic_times(k_t, x0.shape[0], sampling_eps)
  xt = diffusion.forward_mask(k_mask, x0, t, mask_id, eps)
  log_mu = jax.lax.stop_gradient(denoiser_log_probs(denoiser, denoiser_params, xt, mask_id))
  x_neg = diffusion.sample_x0(k_neg, log_mu, 1)[:, 0]
  energies = energy_net.apply(energy_params, jnp.concatenate([x0, x_neg]),
                              jnp.concatenate([xt, xt]))  # one pass over both
  e_pos, e_neg = jnp.split(energies, 2)
  accuracy = 0.5 * ((e_pos < 0).mean() + (e_neg > 0).mean())
  return energy.nce_loss(e_pos, e_neg), accuracy


def needed_stages(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return {'nce': ('denoiser',), 'sample': STAGES}.get(config.model_kind, ())


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.check_choice(config, 'model_kind', KINDS)
  if config.model_kind != 'sample':
    cfglib.validate_train(config, num_devices)
  cfglib.check_positive_int(config, 'data.seq_len', 'model.num_layers', 'model.d_model',
                            'model.num_heads', 'model.mlp_dim', 'train.eval_batches')
  cfglib.check_range(config, 'diffusion.eps', 0.0, 0.5, low_open=True)
  if config.model.d_model % config.model.num_heads:
    raise cfglib.ConfigError(f'config.model.d_model={config.model.d_model} is not divisible by '
                             f'config.model.num_heads={config.model.num_heads}: change either')
  if config.model_kind == 'sample':
    from papers.edlm.evaluation import parse_sampler
    for field in ('samplers', 'ablations'):
      for name in config.sample[field]:
        try:
          parse_sampler(name)
        except ValueError as e:
          raise cfglib.ConfigError(f'config.sample.{field}: {e}') from None
  for stage in needed_stages(config):
    if not lm.string_setting(config.runs, stage, section_name='runs'):
      raise cfglib.ConfigError(f'config.model_kind={config.model_kind!r} starts from the '
                               f'{stage} run: pass --config.runs.{stage}=WORKDIR')
  lm.check_text_data(config)


def stage_config(workdir: str) -> ml_collections.ConfigDict:
  """The config an earlier run was trained with (its workdir's config.json)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise cfglib.ConfigError(f'{workdir} holds no config.json: run that stage first')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_stage(config: ml_collections.ConfigDict, stage: str
                  ) -> tuple[ml_collections.ConfigDict, Any]:
  """(config, newest parameters) of the run named by `config.runs.<stage>`; refuses a run of
  another model kind or sequence length."""
  workdir = config.runs[stage]
  theirs = stage_config(workdir)
  if theirs.model_kind != STAGE_KINDS[stage]:
    raise cfglib.ConfigError(f'config.runs.{stage}={workdir!r} is a {theirs.model_kind!r} run: '
                             f'name a {STAGE_KINDS[stage]!r} run')
  if theirs.data.seq_len != config.data.seq_len:
    raise cfglib.ConfigError(f'config.runs.{stage}={workdir!r} was trained on seq_len '
                             f'{theirs.data.seq_len}: pass --config.data.seq_len='
                             f'{theirs.data.seq_len}')
  return theirs, checkpoint.restore_params(workdir)


def batches(config: ml_collections.ConfigDict, corpus: lm.Corpus):
  """(train windows, train_batch(step), eval_batches()): shuffled windows of L + 1 symbols,
  pure in (seed, step); the eval batches carry their row index (a fixed key per batch)."""
  seq_len, batch_size = config.data.seq_len, config.train.batch_size
  train_windows = lm.windows(corpus.train, seq_len)
  valid_windows = lm.windows(corpus.valid, seq_len)
  order = data.batch_indices(len(train_windows), batch_size, config.seed)
  eval_rows = min(config.train.eval_batches * batch_size,
                  len(valid_windows) // batch_size * batch_size)

  def train_batch(step):
    return data.take({'tokens': train_windows}, order[step])

  def eval_batches():
    for start in range(0, eval_rows, batch_size):
      rows = np.arange(start, start + batch_size)
      yield data.take({'tokens': valid_windows}, rows) | {'row': rows.astype(np.int32)}

  return train_windows, train_batch, eval_batches


def eval_key(batch) -> jax.Array:
  """A fixed key per eval batch (the same t and masks for every checkpoint)."""
  return jax.random.fold_in(jax.random.key(1234), batch['row'][0])


def init_energy_from_denoiser(energy_params, denoiser_params):
  """The energy backbone starts from the pretrained denoiser (as in the paper)."""
  inner = dict(energy_params['params'])
  inner['backbone'] = denoiser_params['params']
  return {'params': inner}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       corpus: lm.Corpus | None = None) -> train.FitResult | dict:
  """Runs the stage `config.model_kind` on the corpus (Tiny Shakespeare or token files).
  Diffusion and energy models see sequences of L = data.seq_len symbols; the AR models
  predict symbols 1..L of windows of L + 1."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  corpus = corpus or lm.load_lm_corpus(config.data)
  if config.model_kind == 'sample':
    from papers.edlm import evaluation
    return evaluation.evaluate(config, workdir, corpus)
  unit = 'char' if isinstance(corpus, lm.CharCorpus) else 'token'
  vocab, mask_id = corpus.vocab_size, corpus.vocab_size
  eps, sampling_eps = config.diffusion.eps, config.diffusion.sampling_eps
  train_windows, train_batch, eval_batches = batches(config, corpus)
  example = train_windows[:1, :-1]
  key = jax.random.key(config.seed)
  tx = None  # config.optim

  if config.model_kind == 'ar':
    model = ar_model(config.model, vocab)
    params = model.init(key, example)

    def loss_fn(params, batch, rng):
      del rng
      logits = model.apply(params, batch['tokens'][:, :-1])
      return lm.token_cross_entropy(logits, batch['tokens'][:, 1:]), {}

    def eval_fn(params, batch):
      logits = model.apply(params, batch['tokens'][:, :-1])
      nats = lm.token_cross_entropy(logits, batch['tokens'][:, 1:])
      return {'loss': nats, f'bits_per_{unit}': nats / jnp.log(2.0)}

  elif config.model_kind == 'mdlm':
    model = denoiser_model(config, vocab)
    params = model.init(key, example)

    def loss_fn(params, batch, rng):
      return mdlm_loss(model, params, batch['tokens'][:, :-1], rng, mask_id, eps,
                       sampling_eps), {}

    def eval_fn(params, batch):
      nats = mdlm_loss(model, params, batch['tokens'][:, :-1], eval_key(batch), mask_id, eps,
                       sampling_eps)
      return {'loss': nats, f'nelbo_bits_per_{unit}': nats / jnp.log(2.0)}

  else:  # nce: the energy network from the (frozen) denoiser of runs.denoiser
    den_config, den_params = restore_stage(config, 'denoiser')
    if den_config.model.to_dict() != config.model.to_dict():
      raise cfglib.ConfigError(f'config.runs.denoiser={config.runs.denoiser!r} has model '
                               f'{den_config.model.to_dict()}: the energy network starts from '
                               'it, so pass the same config.model')
    denoiser = denoiser_model(config, vocab)
    model = energy_model(config, vocab)
    energy_params = init_energy_from_denoiser(
        model.init(jax.random.fold_in(key, 1), example, example), den_params)
    # the frozen denoiser rides in the state (an input of the step, not a compiled constant)
    params = {'energy': energy_params, 'denoiser': den_params}
    tx = frozen_denoiser_optimizer(config, params)

    def loss_fn(params, batch, rng):
      loss, acc = nce_batch_loss(model, params['energy'], denoiser, params['denoiser'],
                                 batch['tokens'][:, :-1], rng, mask_id, eps, sampling_eps)
      return loss, {'accuracy': acc}

    def eval_fn(params, batch):
      loss, acc = nce_batch_loss(model, params['energy'], denoiser, params['denoiser'],
                                 batch['tokens'][:, :-1], eval_key(batch), mask_id, eps,
                                 sampling_eps)
      return {'loss': loss, 'accuracy': acc}

  return train.fit(config, workdir, mesh=mesh, params=params, loss_fn=loss_fn,
                   train_batch=train_batch, eval_fn=eval_fn, eval_batches=eval_batches,
                   tx=tx)


def frozen_denoiser_optimizer(config: ml_collections.ConfigDict, params: dict):
  """`config.optim` for params['energy']; params['denoiser'] never changes."""
  labels = {name: jax.tree.map(lambda _, n=name: 'freeze' if n == 'denoiser' else 'train', sub)
            for name, sub in params.items()}
  return optax.multi_transform({'train': train.make_optimizer(config.optim, config.train.steps),
                                'freeze': optax.set_to_zero()}, labels)
