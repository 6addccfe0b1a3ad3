"""EDLM reproduction at character level on Tiny Shakespeare, 3 seeds of the whole pipeline.

    python -m papers.edlm.reproduce            # full (about 8 minutes on 2 CPU cores)
    python -m papers.edlm.reproduce --quick    # smoke configs, same code path

Arms (runs of `configs/edlm/mdlm.py`, each stage starting from the earlier runs of its seed via
`sweep.After`): the MDLM denoiser; the AR model of the same size (the EDLM-AR energy); the NCE
energy network from the denoiser; the larger AR judge; and the evaluation, which samples with
MDLM, EDLM-AR and EDLM-NCE at each step count, scores the samples under the judge, and computes
the floors and the likelihood rows. Claims via
`common.stats`, paired by seed.
"""

from __future__ import annotations

import pathlib

import numpy as np
from matplotlib import ticker

from common import plots, results, stats, sweep
from papers.edlm.evaluation import LABELS

PAPER = 'edlm'
TITLE = 'Energy-Based Diffusion Language Models (Xu et al., ICLR 2025)'
CONFIG = 'configs/edlm/mdlm.py'
SEEDS = (0, 1, 2)
# Convergence: a stage's eval loss (nats) counts as flat when its seed mean fell by at most TOL
# over the last 20% of its training. A sampler's claims check the stages it is built from (the
# denoiser, and the energy for EDLM); the judge is the measuring instrument, not an arm (its
# curve is in the stage table).
TOL = 0.02
FLOOR_MARGIN = 0.05  # a sampler counts as beyond the floor when its gen-PPL is 5% below it
PAPER_GEN_PPL = 'OWT, 1024 steps, GPT-2 large judge: MDLM 42.6 -> EDLM 25.5; lower at every ' \
                'step count, most at few steps (Fig. 3)'
STAGES = ('denoiser', 'ar_energy', 'nce_energy', 'judge')


def spec(quick: bool, arg: str = '') -> str:
  args = ','.join(filter(None, [arg, 'smoke' if quick else '']))
  return CONFIG + (f':{args}' if args else '')


def arms(quick: bool) -> list[sweep.Arm]:
  return [
      sweep.Arm('denoiser', spec(quick)),
      sweep.Arm('ar_energy', spec(quick, 'ar')),
      sweep.Arm('nce_energy', spec(quick, 'nce'), {'runs.denoiser': sweep.After('denoiser')}),
      sweep.Arm('judge', spec(quick, 'judge')),
      sweep.Arm('eval', spec(quick, 'sample'),
                {f'runs.{s}': sweep.After(s) for s in STAGES}),
  ]


def per_seed(runs: dict, key: str) -> list[float]:
  return [float(r.metrics[key]) for r in runs['eval']]


def converged(runs: dict, *stages: str) -> dict[str, dict]:
  out = {}
  for stage in stages:
    curves = [r.history('eval/loss')[1] for r in runs[stage]]
    out[stage] = stats.convergence(curves, TOL, higher_is_better=False)
  return out


def analyse(runs: dict[str, list[sweep.Run]], *, quick: bool, out: pathlib.Path) -> dict:
  config = sweep.load_config(spec(quick, 'sample'))
  steps, methods = list(config.sample.steps), list(config.sample.methods)
  seeds = [r.seed for r in runs['eval']]
  ppl = {(m, s): per_seed(runs, f'gen_ppl/{m}/S{s}') for m in methods for s in steps}
  nll = {(m, s): per_seed(runs, f'judge_nll/{m}/S{s}') for m in methods for s in steps}
  floor_ppl = float(np.mean(per_seed(runs, 'gen_ppl/unigram_text')))
  floor = stats.Floor('judge gen-PPL of text drawn from the unigram distribution', floor_ppl,
                      FLOOR_MARGIN * floor_ppl, higher_is_better=False)
  energy_stage = {'ar': 'ar_energy', 'nce': 'nce_energy'}
  claims = []
  # --- gen-PPL: EDLM vs MDLM at each step count ----------------------------------------------
  for kind in ('ar', 'nce'):
    m = f'edlm_{kind}'
    conv = converged(runs, 'denoiser', energy_stage[kind])
    for s in steps:
      a, b = f'{LABELS[m]} S={s}', f'MDLM S={s}'
      claims.append(stats.compare(
          f'{LABELS[m]} has lower gen-PPL than MDLM at S={s} sampling steps', PAPER_GEN_PPL,
          {a: ppl[m, s], b: ppl['mdlm', s]}, a, b, 'a<b',
          metric='gen-PPL under the AR judge (per char)', fmt='.3f', floor=floor,
          converged=conv))
  # --- the gain is largest at few steps ------------------------------------------------------
  lo, hi = steps[0], steps[-1]
  for kind in ('ar', 'nce'):
    m = f'edlm_{kind}'
    gain = {s: list(np.subtract(nll['mdlm', s], nll[m, s])) for s in (lo, hi)}
    a, b = f'gain S={lo}', f'gain S={hi}'
    claims.append(stats.compare(
        f'{LABELS[m]}: the gain over MDLM (judge nats/char) is larger at S={lo} than at S={hi}',
        'largest gain at the fewest steps (Fig. 3)', {a: gain[lo], b: gain[hi]}, a, b, 'a>b',
        metric='judge NLL of MDLM minus EDLM (nats/char)', fmt='.4f',
        floor=stats.Floor('no gain (EDLM = MDLM)', 0.0, 0.0, higher_is_better=True),
        converged=converged(runs, 'denoiser', energy_stage[kind])))
  claims.append(stats.not_tested(
      'Weights softmax(-E) (Algorithm 1) beat the released code\'s softmax(+E)',
      'Algorithm 1 weights candidates by exp(-E)',
      'the +E samplers are left out of the default budget; the evaluation stage runs them with '
      '--config.sample.methods including edlm_ar_plusE, edlm_nce_plusE'))
  # --- likelihood (the paper's estimator, not a bound) ---------------------------------------
  bits = {k: per_seed(runs, f'likelihood_bits/{k}')
          for k in ('mdlm', 'edlm_ar', 'edlm_nce', 'ar_exact', 'unigram')}
  claims.append(stats.compare(
      'EDLM-AR likelihood (the paper\'s estimator, exact log Z) is below the MDLM NELBO '
      '(bits/char)', 'EDLM closes part of the gap to AR (OWT perplexity, Table 2)',
      {'EDLM-AR': bits['edlm_ar'], 'MDLM': bits['mdlm']}, 'EDLM-AR', 'MDLM', 'a<b',
      metric='bits/char on validation windows', fmt='.3f',
      floor=stats.Floor('unigram cross-entropy of the validation windows (bits/char)',
                        float(np.mean(bits['unigram'])), 0.05, higher_is_better=False),
      converged=converged(runs, 'denoiser', 'ar_energy')))
  claims.append(stats.not_tested(
      'EDLM-NCE likelihood (the paper\'s estimator) is below the MDLM NELBO',
      'EDLM closes part of the gap to AR (OWT perplexity, Table 2)',
      f'log Z of the NCE energy has no closed form; its {config.sample.log_z_samples}-sample '
      'importance estimate is biased low (Jensen), so a lower value is no evidence (the row '
      'is in the likelihood table)'))
  claims.append(stats.not_tested(
      'EDLM reaches MDLM\'s best gen-PPL in fewer sampling seconds', 'about 1.3x fewer seconds',
      'sampling seconds are one wall-clock timing per cell on a shared CPU (perf/ keys, listed '
      'in the table); a speed claim needs controlled timings'))

  # --- tables ---------------------------------------------------------------------------------
  fmt = lambda v, f='.2f': ' / '.join(format(x, f) for x in v)  # noqa: E731
  rows = []
  for name, key in (('uniform random text (floor)', 'uniform_text'),
                    ('unigram-drawn text (floor)', 'unigram_text'),
                    ('validation text (reference)', 'validation_text')):
    v = per_seed(runs, f'gen_ppl/{key}')
    rows.append([name, '', f'{np.mean(v):.2f}', fmt(v),
                 f'{np.mean(per_seed(runs, f"entropy/{key}")):.3f}', ''])
  for m in methods:
    for s in steps:
      rows.append([LABELS[m], s, f'{np.mean(ppl[m, s]):.2f}', fmt(ppl[m, s]),
                   f'{np.mean(per_seed(runs, f"entropy/{m}/S{s}")):.3f}',
                   f'{np.mean(per_seed(runs, f"perf/sample_seconds/{m}/S{s}")):.2f}'])
  like_labels = {'mdlm': 'MDLM NELBO (Eq. (3))',
                 'edlm_ar': "EDLM-AR, paper's estimator (exact log Z)",
                 'edlm_nce': f"EDLM-NCE, paper's estimator ({config.sample.log_z_samples}-sample "
                             'log Z, biased low)',
                 'ar_exact': 'AR energy, exact (uniform first symbol)',
                 'unigram': 'unigram cross-entropy (floor)'}
  stage_rows = []
  for stage, key in (('denoiser', 'nelbo_bits_per_char'), ('ar_energy', 'bits_per_char'),
                     ('nce_energy', 'accuracy'), ('judge', 'bits_per_char')):
    v = [float(r.metrics[key]) for r in runs[stage]]
    c = converged(runs, stage)[stage]
    stage_rows.append([stage, key, f'{np.mean(v):.3f}', fmt(v, '.3f'),
                       f'{c["improvement"]:.4f}'])
  tables = [
      results.table(f'Unconditional samples ({config.sample.num_samples} per cell and seed, '
                    f'L={config.data.seq_len}): gen-PPL under the AR judge, unigram entropy '
                    f'(nats), sampling seconds; paper: {PAPER_GEN_PPL}',
                    ['sampler', 'steps S', 'gen-PPL', f'per seed {seeds}', 'entropy',
                     'seconds'], rows),
      results.table('Validation likelihood (bits/char, same windows and masks for every row)',
                    ['row', 'mean', f'per seed {seeds}'],
                    [[like_labels[k], f'{np.mean(v):.3f}', fmt(v, '.3f')]
                     for k, v in bits.items()]),
      results.table(f'Training stages: final eval metric and its fall over the last 20% of '
                    f'training (eval/loss, nats; converged when <= {TOL})',
                    ['stage', 'metric', 'mean', f'per seed {seeds}', 'last-20% fall'],
                    stage_rows),
  ]
  fig, axes = plots.figure(2)
  plots.curves(axes[0], steps, {LABELS[m]: [[ppl[m, s][i] for s in steps]
                                            for i in range(len(seeds))] for m in methods},
               ylabel='gen-PPL (judge, per char)', xlabel='sampling steps S',
               title='samples under the AR judge', floor=floor_ppl, logx=True)
  axes[0].set_yscale('log')
  axes[0].set_xticks(steps, [str(s) for s in steps])
  axes[0].xaxis.set_minor_formatter(ticker.NullFormatter())
  plots.bars(axes[1], {like_labels[k].split(',')[0].split(' (')[0]: bits[k]
                       for k in ('mdlm', 'edlm_ar', 'edlm_nce', 'ar_exact')},
             ylabel='bits/char', title='validation likelihood',
             floor=float(np.mean(bits['unigram'])), floor_label='unigram')
  plot_name = plots.save(fig, out / 'gen_ppl.png', len(seeds))
  notes = [
      'Verdicts: paired 95% t intervals over seeds (common.stats). A sampler counts as beyond '
      f'the floor when its seed-mean gen-PPL is {FLOOR_MARGIN:.0%} below that of unigram-drawn '
      f'text under the same judge; a stage counts as converged when its eval loss fell by at '
      f'most {TOL} nats over the last 20% of training; otherwise the claim is not tested.',
      f'k = {config.sample.candidates} candidates, importance sampling in the first '
      f'{config.sample.window:.0%} of the steps (nearest t = 1), temperature 1; every method '
      'at one S uses the same random key.',
  ] + [f'{LABELS[m]} S={steps[-1]}, seed {seeds[0]}: {runs["eval"][0].metrics[f"example/{m}"]!r}'
       for m in ('mdlm', 'edlm_ar', 'edlm_nce')]
  return {'claims': claims, 'tables': tables, 'plots': [plot_name], 'notes': notes}


def main(argv=None) -> dict:
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv)


if __name__ == '__main__':
  main()
