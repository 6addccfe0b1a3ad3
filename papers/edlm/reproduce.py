"""EDLM reproduction at character level on Tiny Shakespeare (one command, < 12 min on 2 CPUs).

    python -m papers.edlm.reproduce            # full: writes results.json + PNGs here
    python -m papers.edlm.reproduce --quick    # same code path, tiny, in a temp dir

Trains an MDLM denoiser, an AR model of the same size (the EDLM-AR energy), the NCE energy
network (from the denoiser), and a larger AR judge; then samples unconditionally with MDLM,
EDLM-AR, EDLM-NCE and the released code's +E weighting for S in {8, 16, 32, 64} steps and
scores generative perplexity under the judge, unigram entropy, sampling seconds, and the
validation NELBO of MDLM and EDLM (bits/char).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from common import lm, results
from common.quickstart import load_config
from papers.edlm import diffusion, energy, experiment

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
METHODS = ('mdlm', 'edlm_ar', 'edlm_nce', 'edlm_ar_plusE', 'edlm_nce_plusE')
LABELS = {'mdlm': 'MDLM', 'edlm_ar': 'EDLM-AR', 'edlm_nce': 'EDLM-NCE',
          'edlm_ar_plusE': 'EDLM-AR, +E weights', 'edlm_nce_plusE': 'EDLM-NCE, +E weights'}


def settings(quick: bool) -> dict:
  if quick:
    return dict(steps_list=(4, 8), num_samples=8, candidates=4, window=0.5, nelbo_batches=2,
                nelbo_candidates=4, judge=dict(num_layers=1, d_model=32, num_heads=2,
                                               num_kv_heads=2, mlp_dim=64), judge_steps=6,
                ar_steps=6)
  return dict(steps_list=(8, 16, 32, 64), num_samples=64, candidates=4, window=0.25,
              nelbo_batches=8, nelbo_candidates=8,
              judge=dict(num_layers=4, d_model=128, num_heads=4, num_kv_heads=4, mlp_dim=512),
              judge_steps=700, ar_steps=600)


def configs(quick: bool, run: dict):
  arg = 'smoke' if quick else ''
  base = load_config(ROOT / 'configs' / 'edlm' / 'mdlm.py', arg)
  base.num_devices = 1
  base.train.eval_every = 0
  ar = load_config(ROOT / 'configs' / 'edlm' / 'mdlm.py', ','.join(filter(None, [arg, 'ar'])))
  ar.num_devices = 1
  ar.train.update(steps=run['ar_steps'], eval_every=0)
  judge = load_config(ROOT / 'configs' / 'edlm' / 'mdlm.py', ','.join(filter(None, [arg, 'ar'])))
  judge.num_devices, judge.seed = 1, 7
  judge.model.update(run['judge'])
  judge.train.update(steps=run['judge_steps'], eval_every=0)
  return base, ar, judge


def ar_token_log_probs(model, params, x: jax.Array) -> jax.Array:
  """log p(x_i | x_<i) for i = 1..L-1, [N, L-1]."""
  log_probs = jax.nn.log_softmax(model.apply(params, x[:, :-1]).astype(jnp.float32), -1)
  return jnp.take_along_axis(log_probs, x[:, 1:, None], -1)[..., 0]


def unigram_entropy(samples: np.ndarray) -> np.ndarray:
  """Per-sample entropy (nats) of the character histogram, as MDLM reports it."""
  out = []
  for row in samples:
    counts = np.bincount(row).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    out.append(-(p * np.log(p)).sum())
  return np.array(out)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='tiny run (<1 min), temp outputs')
  parser.add_argument('--workdir', default='', help='where models are trained (default: temp)')
  parser.add_argument('--outdir', default='', help='results.json/PNG folder (default: here, '
                      'or a temp dir with --quick)')
  args = parser.parse_args(argv)
  started = time.time()
  run = settings(args.quick)
  workdir = args.workdir or tempfile.mkdtemp(prefix='edlm_')
  outdir = pathlib.Path(args.outdir or (tempfile.mkdtemp(prefix='edlm_out_') if args.quick
                                        else HERE))
  outdir.mkdir(parents=True, exist_ok=True)
  base, ar_cfg, judge_cfg = configs(args.quick, run)
  corpus = lm.load_corpus(base.data.data_dir)
  vocab, mask_id, length = corpus.vocab_size, corpus.vocab_size, base.data.seq_len

  # --- models ------------------------------------------------------------------------------
  timings = {}
  t0 = time.time()
  den_res, nce_res = experiment.fit_nce(base, os.path.join(workdir, 'nce'), corpus)
  timings['denoiser + energy'] = time.time() - t0
  t0 = time.time()
  ar_res = experiment.train_and_evaluate(ar_cfg, os.path.join(workdir, 'ar'), corpus)
  judge_res = experiment.train_and_evaluate(judge_cfg, os.path.join(workdir, 'judge'), corpus)
  timings['ar + judge'] = time.time() - t0
  denoiser = experiment.denoiser_model(base, vocab)
  ar = experiment.ar_model(ar_cfg.model, vocab)
  judge = experiment.ar_model(judge_cfg.model, vocab)
  energy_net = experiment.energy_model(base, vocab)
  den_p, ar_p, judge_p, e_p = (jax.device_get(r.state.params)
                               for r in (den_res, ar_res, judge_res, nce_res))

  def denoise(xt):
    return experiment.denoiser_log_probs(denoiser, den_p, xt, mask_id)

  def energy_ar(x0, xt, log_mu):
    return energy.ar_energy(ar_token_log_probs(ar, ar_p, x0), log_mu, x0, xt, mask_id)

  def energy_nce(x0, xt, log_mu):
    del log_mu
    return energy_net.apply(e_p, x0, xt)

  energies = {'ar': energy_ar, 'nce': energy_nce}

  # --- sampling ----------------------------------------------------------------------------
  def make_sampler(method):
    propose = None
    if method != 'mdlm':
      kind = method.split('_')[1]
      sign = -1.0 if method.endswith('plusE') else 1.0
      propose = energy.make_proposal(energies[kind], run['candidates'], vocab + 1, sign=sign)
    return jax.jit(lambda key, steps: diffusion.sample(
        key, denoise, run['num_samples'], length, steps, mask_id, propose, run['window']))

  judge_nll = jax.jit(lambda x: -ar_token_log_probs(judge, judge_p, x).mean(-1))
  rows = {}
  for m_i, method in enumerate(METHODS):
    sampler = make_sampler(method)
    jax.block_until_ready(sampler(jax.random.key(99), 2))  # compile outside the timing
    for steps in run['steps_list']:
      key = jax.random.fold_in(jax.random.key(1000 + steps), m_i)
      t0 = time.perf_counter()
      samples = jax.block_until_ready(sampler(key, steps))
      seconds = time.perf_counter() - t0
      nll = np.asarray(judge_nll(samples), np.float64)
      samples = np.asarray(samples)
      rows[method, steps] = dict(nll=nll, seconds=seconds, entropy=unigram_entropy(samples),
                                 example=corpus.decode(samples[0]))
      print(f'{method:16s} S={steps:3d} gen-PPL {np.exp(nll.mean()):7.2f} '
            f'entropy {rows[method, steps]["entropy"].mean():.3f} {seconds:6.2f}s '
            f'{rows[method, steps]["example"]!r}')

  # --- likelihood (NELBO, bits/char) -------------------------------------------------------
  valid = lm.windows(corpus.valid, length)[:, :-1]
  nelbo = nelbo_table(run, denoise, energies, valid, mask_id, base)
  ar_bpc = ar_res.eval_metrics['bits_per_char']
  judge_bpc = judge_res.eval_metrics['bits_per_char']
  data_entropy = float(unigram_entropy(valid[:512]).mean())

  # --- results -----------------------------------------------------------------------------
  write(outdir, run, rows, nelbo, ar_bpc, judge_bpc, data_entropy, timings,
        time.time() - started, args.quick)


def nelbo_table(run, denoise, energies, valid, mask_id, base) -> dict[str, np.ndarray]:
  """Per-batch NELBO estimates (bits/char): MDLM's Eq. (3), and EDLM's with
  -log p(x0|xt) = -log mu(x0|xt) + E(x0, xt) + log Z(xt), log Z by k-sample importance
  sampling from mu (a Jensen-biased, i.e. optimistic, estimate of the EDLM bound)."""
  eps, k = base.diffusion.eps, run['nelbo_candidates']
  batch = base.train.batch_size

  @jax.jit
  def per_batch(x0, key):
    k_t, k_mask, k_draw = jax.random.split(key, 3)
    t = diffusion.antithetic_times(k_t, x0.shape[0], base.diffusion.sampling_eps)
    xt = diffusion.forward_mask(k_mask, x0, t, mask_id, eps)
    log_mu = denoise(xt)
    masked = xt == mask_id
    tok = jnp.take_along_axis(log_mu, x0[..., None], -1)[..., 0]
    nll_mu = -jnp.where(masked, tok, 0.0).sum(-1)  # [B]
    weight = diffusion.loss_weight(t, eps)
    out = {'mdlm': (weight * nll_mu).mean() / x0.shape[1]}
    draws = diffusion.sample_x0(k_draw, log_mu, k)  # [B, k, L]
    rep = lambda a: jnp.repeat(a, k, 0)  # noqa: E731
    for name, fn in energies.items():
      e_data = fn(x0, xt, log_mu)
      e_draws = fn(draws.reshape(-1, x0.shape[1]), rep(xt), rep(log_mu)).reshape(-1, k)
      log_z = jax.nn.logsumexp(-e_draws, -1) - jnp.log(k)
      out[f'edlm_{name}'] = (weight * (nll_mu + e_data + log_z)).mean() / x0.shape[1]
    return {m: v / jnp.log(2.0) for m, v in out.items()}

  values: dict[str, list] = {}
  for b in range(run['nelbo_batches']):
    x0 = jnp.asarray(valid[b * batch:(b + 1) * batch])
    for m, v in per_batch(x0, jax.random.key(5000 + b)).items():
      values.setdefault(m, []).append(float(v))
  return {m: np.array(v) for m, v in values.items()}


def _se(x: np.ndarray) -> float:
  return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float('inf')


def _combine(verdicts: list[str]) -> str:
  if all(v == 'reproduced' for v in verdicts):
    return 'reproduced'
  if all(v != 'not' for v in verdicts) or sum(v != 'not' for v in verdicts) > len(verdicts) / 2:
    return 'partly'
  return 'not'


def time_to_quality(rows, method, steps_list, target_ppl) -> float:
  """Seconds at which `method`'s gen-PPL first reaches target_ppl (log-linear interpolation
  between measured step counts); inf when it never does."""
  pts = [(rows[method, s]['seconds'], float(np.exp(rows[method, s]['nll'].mean())))
         for s in steps_list]
  pts.sort()
  if pts[0][1] <= target_ppl:
    return pts[0][0]
  for (s0, p0), (s1, p1) in zip(pts, pts[1:], strict=False):
    if p1 <= target_ppl:
      frac = (p0 - target_ppl) / (p0 - p1)
      return float(np.exp(np.log(s0) + frac * (np.log(s1) - np.log(s0))))
  return float('inf')


def write(outdir, run, rows, nelbo, ar_bpc, judge_bpc, data_entropy, timings, wall, quick):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  steps_list = run['steps_list']
  ppl = lambda m, s: float(np.exp(rows[m, s]['nll'].mean()))  # noqa: E731
  gain = lambda m, s: rows['mdlm', s]['nll'].mean() - rows[m, s]['nll'].mean()  # noqa: E731
  noise = lambda a, b, s: 2 * np.hypot(_se(rows[a, s]['nll']), _se(rows[b, s]['nll']))  # noqa: E731

  claims = []
  for kind in ('ar', 'nce'):
    m = f'edlm_{kind}'
    per_s = [results.verdict(gain(m, s), noise('mdlm', m, s)) for s in steps_list]
    ours = ', '.join(f'S={s}: {ppl("mdlm", s):.2f} -> {ppl(m, s):.2f}' for s in steps_list)
    claims.append(results.claim(
        f'{LABELS[m]} lowers generative perplexity at every step count (MDLM -> EDLM)',
        'OWT, 1024 steps: MDLM 42.6 -> EDLM 25.5 (GPT-2 large judge)', ours, _combine(per_s)))
  lo, hi = steps_list[0], steps_list[-1]
  for kind in ('ar', 'nce'):
    m = f'edlm_{kind}'
    effect = gain(m, lo) - gain(m, hi)
    nz = 2 * np.sqrt(sum(_se(rows[a, s]['nll']) ** 2 for a in ('mdlm', m) for s in (lo, hi)))
    claims.append(results.claim(
        f'{LABELS[m]}: the gain is largest at few steps (gain in judge nats/char)',
        'largest gain at the fewest steps', f'S={lo}: {gain(m, lo):+.3f}, '
        f'S={hi}: {gain(m, hi):+.3f}', results.verdict(effect, nz)))
  for kind in ('ar', 'nce'):
    m, p = f'edlm_{kind}', f'edlm_{kind}_plusE'
    diffs = [rows[p, s]['nll'].mean() - rows[m, s]['nll'].mean() for s in steps_list]
    nz = 2 * np.sqrt(sum(_se(rows[a, s]['nll']) ** 2 for a in (m, p) for s in steps_list)) / len(
        steps_list)
    ours = ', '.join(f'S={s}: {ppl(m, s):.2f} vs +E {ppl(p, s):.2f}' for s in steps_list)
    claims.append(results.claim(
        f'{LABELS[m]}: weights softmax(-E) (Algorithm 1) beat the released code\'s softmax(+E)',
        'Algorithm 1 uses exp(-E)', ours, results.verdict(float(np.mean(diffs)), nz)))
  for kind in ('ar', 'nce'):
    m = f'edlm_{kind}'
    effect = nelbo['mdlm'].mean() - nelbo[m].mean()
    nz = 2 * _se(nelbo['mdlm'] - nelbo[m])
    # EDLM reweights MDLM towards the AR energy, so a bound below the exact AR likelihood
    # can only come from an under-estimated log Z: such an estimate proves nothing.
    valid = nelbo[m].mean() >= ar_bpc
    claims.append(results.claim(
        f'{LABELS[m]} NELBO is below MDLM\'s, towards the AR likelihood (bits/char)',
        'EDLM closes part of the gap to AR (OWT perplexity bound)',
        f'MDLM {nelbo["mdlm"].mean():.3f}, {LABELS[m]} {nelbo[m].mean():.3f}, '
        f'AR {ar_bpc:.3f}' + ('' if valid else ' (invalid: below the exact AR likelihood, '
                              'log Z under-estimated)'),
        results.verdict(effect, nz) if valid else 'not'))
  target = ppl('mdlm', hi)
  t_mdlm = rows['mdlm', hi]['seconds']
  for kind in ('ar', 'nce'):
    m = f'edlm_{kind}'
    t_edlm = time_to_quality(rows, m, steps_list, target)
    speedup = t_mdlm / t_edlm
    claims.append(results.claim(
        f'{LABELS[m]} reaches MDLM\'s best gen-PPL (S={hi}) in fewer sampling seconds',
        'about 1.3x fewer seconds', f'MDLM {t_mdlm:.2f}s, {LABELS[m]} {t_edlm:.2f}s '
        f'(speed-up {speedup:.2f}x)',
        # one timing per cell, no timing noise: a speed-up can be at most 'partly' shown
        'partly' if np.isfinite(t_edlm) and speedup > 1.0 else 'not'))

  table_rows = []
  for m in METHODS:
    for s in steps_list:
      r = rows[m, s]
      table_rows.append([LABELS[m], s, f'{ppl(m, s):.2f}', f'{_se(r["nll"]):.3f}',
                         f'{r["entropy"].mean():.3f}', f'{r["seconds"]:.2f}'])
  tables = [
      results.table('Unconditional samples: gen-PPL under the AR judge (± SE of nats/char), '
                    f'unigram entropy (data: {data_entropy:.3f}), seconds per '
                    f'{run["num_samples"]} samples', ['method', 'steps', 'gen-PPL',
                                                      'SE (nats)', 'entropy', 'seconds'],
                    table_rows),
      results.table('Validation likelihood (bits/char; EDLM via importance-sampled log Z)',
                    ['model', 'bits/char', 'SE'],
                    [[LABELS[m], f'{v.mean():.3f}', f'{_se(v):.3f}'] for m, v in nelbo.items()]
                    + [['AR (same size, exact)', f'{ar_bpc:.3f}', ''],
                       ['AR judge (larger, exact)', f'{judge_bpc:.3f}', '']]),
      results.table('Training time (s)', ['part', 'seconds'],
                    [[k, f'{v:.0f}'] for k, v in timings.items()]),
  ]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for m in METHODS:
    style = '--' if m.endswith('plusE') else '-'
    axes[0].plot(steps_list, [ppl(m, s) for s in steps_list], style, marker='o', label=LABELS[m])
    axes[1].plot([rows[m, s]['seconds'] for s in steps_list], [ppl(m, s) for s in steps_list],
                 style, marker='o', label=LABELS[m])
  axes[0].set_xscale('log', base=2)
  axes[1].set_xscale('log')
  axes[0].set_xlabel('sampling steps S')
  axes[1].set_xlabel(f'seconds per {run["num_samples"]} samples (2 CPU cores)')
  for ax in axes:
    ax.set_ylabel('gen-PPL (judge, chars)')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle('EDLM vs MDLM, Tiny Shakespeare characters')
  fig.tight_layout()
  fig.savefig(outdir / 'gen_ppl.png', dpi=110)
  plt.close(fig)
  examples = [f'{LABELS[m]} S={steps_list[0]}: {rows[m, steps_list[0]]["example"]!r}'
              for m in ('mdlm', 'edlm_ar', 'edlm_nce')]
  notes = ['One training seed (0) per model; noise is 2 standard errors over the '
           f'{run["num_samples"]} samples per cell (gen-PPL) or over validation batches (NELBO).',
           f'k = {run["candidates"]} candidates, importance sampling in the first '
           f'{run["window"]:.0%} of the steps (nearest t = 1), temperature 1.',
           'Speed-up verdicts use no timing noise (one timing per cell).'] + examples
  out = results.write_results(
      outdir / 'results.json', paper='edlm',
      title='Energy-Based Diffusion Language Models (Xu et al., ICLR 2025)', claims=claims,
      tables=tables, plots=['gen_ppl.png'], notes=notes, seeds=[0], wall_time_s=wall,
      command='python -m papers.edlm.reproduce' + (' --quick' if quick else ''))
  for c in out['claims']:
    print(f'[{c["verdict"]}] {c["claim"]}: {c["ours"]}')
  print(f'wrote {outdir / "results.json"} in {wall:.0f}s')


if __name__ == '__main__':
  main()
