"""EDLM's evaluation stage: sample with every method, score the samples under the AR judge.

From the trained runs named in `config.runs` (denoiser, AR energy, NCE energy, judge), for each
method of `config.sample.methods` (MDLM; EDLM-AR and EDLM-NCE with Algorithm 1's weights
softmax(-E); optionally the same with the released code's softmax(+E), a control) and each step
count S of `config.sample.steps`:
`num_samples` unconditional samples, their judge NLL (nats/char) and gen-PPL, their unigram
entropy, and the sampling seconds (under `perf/`: a wall-clock measurement). Every method at
one S uses the same key (common random numbers, so method differences are paired).

Floors of gen-PPL, computed with the same judge: uniformly random text and text drawn from the
training split's unigram distribution. Likelihood rows on validation windows (bits/char): the
MDLM NELBO (Eq. (3)) and the paper's estimator for EDLM, the NELBO with
-log p(x0|xt) = -log mu(x0|xt) + E(x0, xt) + log Z(xt) (Eq. (6)); for the AR energy log Z is
exact (`energy.ar_log_partition`), for the NCE energy it is a k-sample importance estimate
(biased low, so that row is optimistic). Beside them, the AR energy's exact likelihood of the
same windows with a uniform first symbol, which the EDLM-AR row estimates.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import lm, watchdog
from common.metrics import MetricWriter
from papers.edlm import diffusion, energy
from papers.edlm import experiment as ex

METHODS = ('mdlm', 'edlm_ar', 'edlm_nce', 'edlm_ar_plusE', 'edlm_nce_plusE')
LABELS = {'mdlm': 'MDLM', 'edlm_ar': 'EDLM-AR', 'edlm_nce': 'EDLM-NCE',
          'edlm_ar_plusE': 'EDLM-AR, +E weights', 'edlm_nce_plusE': 'EDLM-NCE, +E weights'}


def ar_token_log_probs(model, params, x: jax.Array) -> jax.Array:
  """log p(x_i | x_<i) for i = 1..L-1, [N, L-1]."""
  log_probs = jax.nn.log_softmax(model.apply(params, x[:, :-1]).astype(jnp.float32), -1)
  return jnp.take_along_axis(log_probs, x[:, 1:, None], -1)[..., 0]


def unigram_entropy(samples: np.ndarray) -> np.ndarray:
  """Per-sample entropy (nats) of the symbol histogram, as MDLM reports it."""
  out = []
  for row in np.asarray(samples):
    counts = np.bincount(row).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    out.append(-(p * np.log(p)).sum())
  return np.array(out)


def unigram_log_probs(train_ids: np.ndarray, vocab_size: int) -> np.ndarray:
  """log of the add-one symbol frequencies of the training stream."""
  counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
  return np.log(counts / counts.sum())


class Stages:
  """The trained models of the runs named in `config.runs`. Their parameters are `params`
  ({'denoiser', 'ar', 'nce', 'judge'}), an argument of every jitted function (so programs do
  not embed weights as constants and compile once for every seed)."""

  def __init__(self, config: ml_collections.ConfigDict, vocab: int):
    self.mask_id, self.vocab = vocab, vocab
    den_cfg, den_p = ex.restore_stage(config, 'denoiser')
    ar_cfg, ar_p = ex.restore_stage(config, 'ar_energy')
    nce_cfg, nce_p = ex.restore_stage(config, 'nce_energy')
    judge_cfg, judge_p = ex.restore_stage(config, 'judge')
    self.params = jax.device_put({'denoiser': den_p, 'ar': ar_p, 'nce': nce_p['energy'],
                                  'judge': judge_p})
    self.diffusion = den_cfg.diffusion
    self.denoiser = ex.denoiser_model(den_cfg, vocab)
    self.ar = ex.ar_model(ar_cfg.model, vocab)
    self.nce = ex.energy_model(nce_cfg, vocab)
    self.judge = ex.ar_model(judge_cfg.model, vocab)

  def denoise(self, params, xt: jax.Array) -> jax.Array:
    return ex.denoiser_log_probs(self.denoiser, params['denoiser'], xt, self.mask_id)

  def energy(self, params, kind: str):
    """E(x0, xt, log_mu) -> [B] of the AR energy (Eq. (8)) or the NCE energy network."""
    if kind == 'ar':
      return lambda x0, xt, log_mu: energy.ar_energy(
          ar_token_log_probs(self.ar, params['ar'], x0), log_mu, x0, xt, self.mask_id)
    return lambda x0, xt, log_mu: self.nce.apply(params['nce'], x0, xt)

  def judge_nll(self, params, x: jax.Array) -> jax.Array:
    """Per-sample judge NLL, nats per predicted symbol (symbols 1..L-1)."""
    return -ar_token_log_probs(self.judge, params['judge'], x).mean(-1)


def make_sampler(stages: Stages, method: str, sample: ml_collections.ConfigDict, length: int):
  """Jitted `sampler(params, key, steps) -> [num_samples, length]` for one method."""

  def sampler(params, key, steps):
    propose = None
    if method != 'mdlm':
      kind = method.split('_')[1]
      propose = energy.make_proposal(stages.energy(params, kind), sample.candidates,
                                     stages.vocab + 1,
                                     sign=-1.0 if method.endswith('plusE') else 1.0)
    return diffusion.sample(key, lambda xt: stages.denoise(params, xt), sample.num_samples,
                            length, steps, stages.mask_id, propose, sample.window)

  return jax.jit(sampler)


def likelihood_rows(stages: Stages, valid: np.ndarray, sample: ml_collections.ConfigDict,
                    batch_size: int) -> dict[str, float]:
  """Bits/char on `likelihood_batches` validation batches (fixed keys): the MDLM NELBO, the
  paper's estimator for EDLM-AR (exact log Z) and EDLM-NCE (k-sample log Z), and the AR
  energy's exact likelihood with a uniform first symbol."""
  eps, k = stages.diffusion.eps, sample.log_z_samples

  @jax.jit
  def per_batch(params, x0, key):
    e_ar, e_nce = stages.energy(params, 'ar'), stages.energy(params, 'nce')
    k_t, k_mask, k_draw = jax.random.split(key, 3)
    length = x0.shape[1]
    t = diffusion.antithetic_times(k_t, x0.shape[0], stages.diffusion.sampling_eps)
    xt = diffusion.forward_mask(k_mask, x0, t, stages.mask_id, eps)
    log_mu = stages.denoise(params, xt)
    tok = jnp.take_along_axis(log_mu, x0[..., None], -1)[..., 0]
    nll_mu = -jnp.where(xt == stages.mask_id, tok, 0.0).sum(-1)  # [B]
    weight = diffusion.loss_weight(t, eps)
    log_z_ar = energy.ar_log_partition(xt, stages.mask_id, stages.vocab)
    draws = diffusion.sample_x0(k_draw, log_mu, k).reshape(-1, length)  # [B * k, L]
    rep = lambda a: jnp.repeat(a, k, 0)  # noqa: E731
    log_z_nce = (jax.nn.logsumexp(-e_nce(draws, rep(xt), rep(log_mu)).reshape(-1, k), -1)
                 - jnp.log(k))
    ar_exact = (-ar_token_log_probs(stages.ar, params['ar'], x0).sum(-1)
                + jnp.log(float(stages.vocab)))
    out = {'mdlm': weight * nll_mu,
           'edlm_ar': weight * (nll_mu + e_ar(x0, xt, log_mu) + log_z_ar),
           'edlm_nce': weight * (nll_mu + e_nce(x0, xt, log_mu) + log_z_nce),
           'ar_exact': ar_exact}
    return {m: v.mean() / length / jnp.log(2.0) for m, v in out.items()}

  totals: dict[str, list[float]] = {}
  for b in range(sample.likelihood_batches):
    watchdog.beat('likelihood', b)
    x0 = jnp.asarray(valid[b * batch_size:(b + 1) * batch_size])
    for m, v in per_batch(stages.params, x0, jax.random.key(5000 + b)).items():
      totals.setdefault(m, []).append(float(v))
  return {m: float(np.mean(v)) for m, v in totals.items()}


def evaluate(config: ml_collections.ConfigDict, workdir: str, corpus: lm.Corpus) -> dict:
  """The evaluation stage; returns (and logs at step 0 of metrics.jsonl) its metrics."""
  stages = Stages(config, corpus.vocab_size)
  params = stages.params
  judge_nll = jax.jit(stages.judge_nll)
  sample, length = config.sample, config.data.seq_len
  key = jax.random.key(config.seed)
  metrics: dict = {}
  for method in sample.methods:
    sampler = make_sampler(stages, method, sample, length)
    watchdog.beat(f'compile sampler {method}')
    jax.block_until_ready(sampler(params, jax.random.key(99), 2))  # compile outside the timing
    for steps in sample.steps:
      watchdog.beat(f'sample {method}', steps)
      start = time.perf_counter()
      samples = jax.block_until_ready(sampler(params, jax.random.fold_in(key, steps), steps))
      seconds = time.perf_counter() - start
      nll = np.asarray(judge_nll(params, samples), np.float64)
      cell = f'{method}/S{steps}'
      metrics[f'judge_nll/{cell}'] = float(nll.mean())
      metrics[f'gen_ppl/{cell}'] = float(np.exp(nll.mean()))
      metrics[f'entropy/{cell}'] = float(unigram_entropy(samples).mean())
      metrics[f'perf/sample_seconds/{cell}'] = seconds
    metrics[f'example/{method}'] = corpus.decode(np.asarray(samples)[0])
  # --- floors and references of gen-PPL and entropy, same judge ---------------------------
  shape = (sample.num_samples, length)
  k_uniform, k_unigram = jax.random.split(jax.random.fold_in(key, 7))
  uniform = jax.random.randint(k_uniform, shape, 0, corpus.vocab_size)
  unigram = jax.random.categorical(
      k_unigram, jnp.asarray(unigram_log_probs(corpus.train, corpus.vocab_size)), shape=shape)
  valid = lm.windows(corpus.valid, length)[:, :-1]
  for name, x in (('uniform', uniform), ('unigram', unigram),
                  ('validation', valid[:sample.num_samples])):
    nll = np.asarray(judge_nll(params, jnp.asarray(x, jnp.int32)), np.float64)
    metrics[f'gen_ppl/{name}_text'] = float(np.exp(nll.mean()))
    metrics[f'entropy/{name}_text'] = float(unigram_entropy(np.asarray(x)).mean())
  # --- likelihood rows (bits/char) --------------------------------------------------------
  rows = likelihood_rows(stages, valid, sample, config.train.batch_size)
  metrics.update({f'likelihood_bits/{m}': v for m, v in rows.items()})
  n = sample.likelihood_batches * config.train.batch_size
  metrics['likelihood_bits/unigram'] = float(
      -unigram_log_probs(corpus.train, corpus.vocab_size)[valid[:n]].mean() / np.log(2.0))
  writer = MetricWriter(workdir)
  writer.write_scalars(0, {k: v for k, v in metrics.items() if isinstance(v, float)})
  writer.close()
  return metrics
