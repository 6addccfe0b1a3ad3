"""EDLM experiments on the shared trainer: the MDLM denoiser, the AR models, the NCE energy.

`config.model_kind` picks what `train_and_evaluate` trains:
  'mdlm': the bidirectional denoiser (eval: validation NELBO in bits/char);
  'ar':   a causal LM of the same shape (the EDLM-AR energy, or the larger judge);
  'nce':  the energy network, initialised from a denoiser trained first in workdir/denoiser
          (eval: validation NCE loss and accuracy).

Data (`common.lm.load_lm_corpus`): the character corpus of the data directory, or with
`data.text_files` + `data.tokenizer` those documents tokenized and EOS-joined (e.g. OpenWebText
with the GPT-2 tokenizer); the mask id is the vocabulary size either way. Metrics are per
character or per token accordingly.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import config as cfglib
from common import data, lm, parallel, train
from common.models.transformer import Transformer
from papers.edlm import diffusion, energy

KINDS = ('mdlm', 'ar', 'nce')


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
  e_pos = energy_net.apply(energy_params, x0, xt)
  e_neg = energy_net.apply(energy_params, x_neg, xt)
  accuracy = 0.5 * ((e_pos < 0).mean() + (e_neg > 0).mean())
  return energy.nce_loss(e_pos, e_neg), accuracy


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.validate_train(config, num_devices)
  cfglib.check_choice(config, 'model_kind', KINDS)
  cfglib.check_positive_int(config, 'data.seq_len', 'model.num_layers', 'model.d_model',
                            'model.num_heads', 'model.mlp_dim', 'train.eval_batches')
  cfglib.check_range(config, 'diffusion.eps', 0.0, 0.5, low_open=True)
  if config.model.d_model % config.model.num_heads:
    raise cfglib.ConfigError(f'config.model.d_model={config.model.d_model} is not divisible by '
                             f'config.model.num_heads={config.model.num_heads}: change either')
  lm.check_text_data(config)


def _batches(config, corpus: lm.Corpus):
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


def _eval_key(batch) -> jax.Array:
  """A fixed key per eval batch (the same t and masks for every checkpoint)."""
  return jax.random.fold_in(jax.random.key(1234), batch['row'][0])


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       corpus: lm.Corpus | None = None) -> train.FitResult:
  """Trains `config.model_kind` on the corpus (Tiny Shakespeare or token files). Diffusion and
  energy models see sequences of L = data.seq_len characters (tokens); the AR models predict
  symbols 1..L of windows of L + 1."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  corpus = corpus or lm.load_lm_corpus(config.data)
  unit = 'char' if isinstance(corpus, lm.CharCorpus) else 'token'
  vocab, mask_id = corpus.vocab_size, corpus.vocab_size
  eps, sampling_eps = config.diffusion.eps, config.diffusion.sampling_eps
  train_windows, train_batch, eval_batches = _batches(config, corpus)
  example = train_windows[:1]
  key = jax.random.key(config.seed)

  if config.model_kind == 'ar':
    model = ar_model(config.model, vocab)
    params = model.init(key, example[:, :-1])

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
    params = model.init(key, example[:, :-1])

    def loss_fn(params, batch, rng):
      x0 = batch['tokens'][:, :-1]
      return mdlm_loss(model, params, x0, rng, mask_id, eps, sampling_eps), {}

    def eval_fn(params, batch):
      nats = mdlm_loss(model, params, batch['tokens'][:, :-1], _eval_key(batch), mask_id, eps,
                       sampling_eps)
      return {'loss': nats, f'nelbo_bits_per_{unit}': nats / jnp.log(2.0)}

  else:  # nce: the denoiser first (train/optim settings, workdir/denoiser), then the energy
    return fit_nce(config, workdir, corpus)[1]

  return train.fit(config, workdir, mesh=mesh, params=params, loss_fn=loss_fn,
                   train_batch=train_batch, eval_fn=eval_fn, eval_batches=eval_batches)


def init_energy_from_denoiser(energy_params, denoiser_params):
  """The energy backbone starts from the pretrained denoiser (as in the paper)."""
  inner = dict(energy_params['params'])
  inner['backbone'] = denoiser_params['params']
  return {'params': inner}


def fit_nce(config: ml_collections.ConfigDict, workdir: str, corpus: lm.Corpus | None = None
            ) -> tuple[train.FitResult, train.FitResult]:
  """Trains (or resumes) the MDLM denoiser in workdir/denoiser with `config.train`/`optim`,
  then the energy network in workdir/energy with `config.nce` (steps, lr, warmup_steps),
  its backbone initialised from the denoiser, which stays frozen. Returns both results."""
  corpus = corpus or lm.load_lm_corpus(config.data)
  den_config = ml_collections.ConfigDict(config.to_dict())
  den_config.model_kind = 'mdlm'
  den = train_and_evaluate(den_config, os.path.join(workdir, 'denoiser'), corpus)
  mesh = parallel.mesh_from_config(config)
  vocab, mask_id = corpus.vocab_size, corpus.vocab_size
  eps, sampling_eps = config.diffusion.eps, config.diffusion.sampling_eps
  e_config = ml_collections.ConfigDict(config.to_dict())
  e_config.train.steps = config.nce.steps
  e_config.optim.update(lr=config.nce.lr, warmup_steps=config.nce.warmup_steps)
  e_config.train.checkpoint_every = min(config.train.checkpoint_every, config.nce.steps)
  example, train_batch, eval_batches = _batches(e_config, corpus)
  denoiser, den_params = denoiser_model(config, vocab), den.state.params
  model = energy_model(config, vocab)
  params = model.init(jax.random.key(config.seed + 1), example[:1, :-1], example[:1, :-1])
  params = init_energy_from_denoiser(params, jax.device_get(den_params))

  def loss_fn(params, batch, rng):
    loss, acc = nce_batch_loss(model, params, denoiser, den_params, batch['tokens'][:, :-1],
                               rng, mask_id, eps, sampling_eps)
    return loss, {'accuracy': acc}

  def eval_fn(params, batch):
    loss, acc = nce_batch_loss(model, params, denoiser, den_params, batch['tokens'][:, :-1],
                               _eval_key(batch), mask_id, eps, sampling_eps)
    return {'loss': loss, 'accuracy': acc}

  energy_dir = os.path.join(workdir, 'energy')
  os.makedirs(energy_dir, exist_ok=True)
  result = train.fit(e_config, energy_dir, mesh=mesh, params=params, loss_fn=loss_fn,
                     train_batch=train_batch, eval_fn=eval_fn, eval_batches=eval_batches)
  return den, result
