"""EDLM's evaluation stage: sample with every sampler, score the samples under two judges.

From the trained runs named in `config.runs` (denoiser, AR energy, NCE energy, AR judge), each
sampler of `config.sample.samplers` draws `num_samples` unconditional samples at each step count
of `config.sample.steps` (those of `config.sample.ablations` at `config.sample.ablation_steps`).
A sampler is named `mdlm` or `{ar|nce}_k{K}[_nocarry][_plusE][_speed]`: EDLM with the AR energy
(Eq. (8)) or the NCE energy network, K candidates per importance-sampling step (Algorithm 1),
optionally the AR energy without carry-over (the AR joint over every position), the released
code's softmax(+E) weights instead of softmax(-E) (a control), and the speed window
(`sample.speed_window`) instead of the main one (`sample.window`, t in [0, 1]: every step).
Every sampler at one S uses the same key (common random numbers).

Per cell: the mean per-symbol NLL under the AR judge (gen-PPL = its exp) and under a 5-gram
Kneser-Ney model fit on the validation split (`ngram.KneserNey`, held out from every trained
model); the unigram entropy and the share of distinct 4-grams per sample (degenerate, repetitive
text scores low on both); the forward passes per sample (denoiser calls + K energy evaluations
per importance-sampling step: a noise-free cost); the sampling seconds (under `perf/`).

References under both judges: uniformly random text, text drawn from the training unigram
distribution (the floors), validation and training text. Likelihood rows on validation windows
(bits/char, same windows and masks for every row): the MDLM NELBO (Eq. (3), a bound) and the
paper's estimator for EDLM, E_t[(1/t) (-log mu(x0|xt) + E(x0, xt) + log Z(xt))] (Eq. (6);
not a bound once the denoiser is a joint model). For the carry-over AR energy log Z is exact
(`energy.ar_log_partition`), so that row estimates the AR energy's likelihood with a uniform
first symbol (printed beside it); for the NCE energy log Z comes from `log_z_samples` draws of
mu as Theorem 1's pair (`energy.log_partition_bracket`): the low and the high end.
"""

from __future__ import annotations

import dataclasses
import re
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import lm, watchdog
from common.metrics import MetricWriter
from papers.edlm import diffusion, energy, ngram
from papers.edlm import experiment as ex

_NAME = re.compile(r'^(ar|nce)_k([1-9]\d*)((?:_nocarry|_plusE|_speed)*)$')


@dataclasses.dataclass(frozen=True)
class Sampler:
  """One sampler of the evaluation (see the module docstring for its name)."""
  name: str
  energy: str = ''  # '' (MDLM), 'ar' or 'nce'
  candidates: int = 1
  carry_over: bool = True
  sign: float = 1.0  # -1: the released code's softmax(+E) weights
  speed: bool = False  # the speed window

  @property
  def label(self) -> str:
    if not self.energy:
      return 'MDLM'
    extra = [', no carry-over'] * (not self.carry_over) + [', +E weights'] * (self.sign < 0)
    extra += [', speed window'] * self.speed
    return f'EDLM-{self.energy.upper()} k={self.candidates}' + ''.join(extra)


def parse_sampler(name: str) -> Sampler:
  """'mdlm' or '{ar|nce}_k{K}[_nocarry][_plusE][_speed]' -> Sampler; ValueError otherwise."""
  if name == 'mdlm':
    return Sampler(name)
  match = _NAME.match(name)
  if not match or (match[1] == 'nce' and 'nocarry' in match[3]):
    raise ValueError(f'sampler {name!r}: use mdlm or {{ar|nce}}_k<K>[_nocarry][_plusE][_speed] '
                     '(_nocarry only with ar)')
  return Sampler(name, match[1], int(match[2]), 'nocarry' not in match[3],
                 -1.0 if 'plusE' in match[3] else 1.0, 'speed' in match[3])


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


def distinct_ngrams(samples: np.ndarray, n: int = 4) -> np.ndarray:
  """Per sample, distinct n-grams / all n-grams (1: no n-gram repeats; low: repetitive)."""
  windows = np.lib.stride_tricks.sliding_window_view(np.asarray(samples), n, axis=1)
  return np.array([len({tuple(w) for w in row}) / len(row) for row in windows])


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

  def energy(self, params, kind: str, carry_over: bool = True):
    """E(x0, xt, log_mu) -> [B] of the AR energy (Eq. (8)) or the NCE energy network."""
    if kind == 'ar':
      return lambda x0, xt, log_mu: energy.ar_energy(
          ar_token_log_probs(self.ar, params['ar'], x0), log_mu, x0, xt, self.mask_id,
          carry_over)
    return lambda x0, xt, log_mu: self.nce.apply(params['nce'], x0, xt)

  def judge_nll(self, params, x: jax.Array) -> jax.Array:
    """Per-sample judge NLL, nats per predicted symbol (symbols 1..L-1)."""
    return -ar_token_log_probs(self.judge, params['judge'], x).mean(-1)


def make_sampler(stages: Stages, spec: Sampler, sample: ml_collections.ConfigDict, length: int):
  """Jitted `sampler(params, key, steps) -> (samples [num_samples, length], calls [2])`."""
  window = tuple(sample.speed_window if spec.speed else sample.window)

  def sampler(params, key, steps):
    propose = None
    if spec.energy:
      propose = energy.make_proposal(stages.energy(params, spec.energy, spec.carry_over),
                                     spec.candidates, stages.vocab + 1, sign=spec.sign)
    return diffusion.sample(key, lambda xt: stages.denoise(params, xt), sample.num_samples,
                            length, steps, stages.mask_id, propose, window, with_calls=True)

  return jax.jit(sampler)


def forward_passes(spec: Sampler, calls: np.ndarray) -> int:
  """Sequence forward passes per sample: denoiser calls + k energy passes per IS step (none
  with k = 1; the energy networks are the denoiser's size)."""
  return int(calls[0]) + (spec.candidates * int(calls[1]) if spec.candidates > 1 else 0)


def likelihood_rows(stages: Stages, valid: np.ndarray, sample: ml_collections.ConfigDict,
                    batch_size: int) -> dict[str, float]:
  """Bits/char on `likelihood_batches` validation batches (fixed keys, the same t and masks
  for every row): the MDLM NELBO, the paper's estimator for EDLM-AR (exact log Z) and for
  EDLM-NCE (Theorem 1's low and high log Z), the AR energy's exact likelihood."""
  eps, n = stages.diffusion.eps, sample.log_z_samples

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
    draws = diffusion.sample_x0(k_draw, log_mu, n).reshape(-1, length)  # [B * n, L]
    rep = lambda a: jnp.repeat(a, n, 0)  # noqa: E731
    low, high = energy.log_partition_bracket(-e_nce(draws, rep(xt), rep(log_mu)).reshape(-1, n))
    e_pos = e_nce(x0, xt, log_mu)
    ar_exact = (-ar_token_log_probs(stages.ar, params['ar'], x0).sum(-1)
                + jnp.log(float(stages.vocab)))
    out = {'mdlm': weight * nll_mu,
           'edlm_ar': weight * (nll_mu + e_ar(x0, xt, log_mu) + log_z_ar),
           'edlm_nce_low': weight * (nll_mu + e_pos + low),
           'edlm_nce_high': weight * (nll_mu + e_pos + high),
           'ar_exact': ar_exact}
    return {m: v.mean() / length / jnp.log(2.0) for m, v in out.items()}

  totals: dict[str, list[float]] = {}
  for b in range(sample.likelihood_batches):
    watchdog.beat('likelihood', b)
    x0 = jnp.asarray(valid[b * batch_size:(b + 1) * batch_size])
    for m, v in per_batch(stages.params, x0, jax.random.key(5000 + b)).items():
      totals.setdefault(m, []).append(float(v))
  return {m: float(np.mean(v)) for m, v in totals.items()}


def cell_metrics(stages: Stages, judge_nll, judge: ngram.KneserNey, samples: np.ndarray,
                 cell: str) -> dict[str, float]:
  """Both judges' NLL (nats/char), gen-PPL, entropy and distinct 4-grams of one cell."""
  nll = np.asarray(judge_nll(stages.params, jnp.asarray(samples, jnp.int32)), np.float64)
  return {f'judge_nll/{cell}': float(nll.mean()), f'gen_ppl/{cell}': float(np.exp(nll.mean())),
          f'ngram_nll/{cell}': float(-judge.log_probs(samples).mean()),
          f'entropy/{cell}': float(unigram_entropy(samples).mean()),
          f'distinct4/{cell}': float(distinct_ngrams(samples).mean())}


def evaluate(config: ml_collections.ConfigDict, workdir: str, corpus: lm.Corpus) -> dict:
  """The evaluation stage; returns (and logs at step 0 of metrics.jsonl) its metrics."""
  stages = Stages(config, corpus.vocab_size)
  params = stages.params
  judge_nll = jax.jit(stages.judge_nll)
  sample, length = config.sample, config.data.seq_len
  judge = ngram.KneserNey(corpus.valid, corpus.vocab_size, sample.ngram_order)
  key = jax.random.key(config.seed)
  metrics: dict = {}
  plan = ([(name, tuple(sample.steps)) for name in sample.samplers]
          + [(name, tuple(sample.ablation_steps)) for name in sample.ablations])
  for name, steps_list in plan:
    spec = parse_sampler(name)
    sampler = make_sampler(stages, spec, sample, length)
    watchdog.beat(f'compile sampler {name}')
    jax.block_until_ready(sampler(params, jax.random.key(99), 2))  # compile outside the timing
    for steps in steps_list:
      watchdog.beat(f'sample {name}', steps)
      start = time.perf_counter()
      samples, calls = jax.block_until_ready(
          sampler(params, jax.random.fold_in(key, steps), steps))
      seconds = time.perf_counter() - start
      samples = np.asarray(samples)
      cell = f'{name}/S{steps}'
      metrics |= cell_metrics(stages, judge_nll, judge, samples, cell)
      metrics[f'forward_passes/{cell}'] = float(forward_passes(spec, np.asarray(calls)))
      metrics[f'perf/sample_seconds/{cell}'] = seconds
    metrics[f'example/{name}'] = corpus.decode(samples[0])
  # --- floors and references under both judges --------------------------------------------
  shape = (sample.num_samples, length)
  k_uniform, k_unigram = jax.random.split(jax.random.fold_in(key, 7))
  uniform = jax.random.randint(k_uniform, shape, 0, corpus.vocab_size)
  unigram = jax.random.categorical(
      k_unigram, jnp.asarray(unigram_log_probs(corpus.train, corpus.vocab_size)), shape=shape)
  valid = lm.windows(corpus.valid, length)[:, :-1]
  train = lm.windows(corpus.train, length)[:, :-1]
  picked = np.random.default_rng(config.seed).permutation(len(train))[:sample.num_samples]
  for name, x in (('uniform', uniform), ('unigram', unigram),
                  ('validation', valid[:sample.num_samples]), ('training', train[picked])):
    metrics |= cell_metrics(stages, judge_nll, judge, np.asarray(x, np.int32), f'{name}_text')
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
