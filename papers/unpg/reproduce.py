"""UNPG on Omniglot open-set verification (train: 136 characters, verify: 156 unseen ones).

    python -m papers.unpg.reproduce            # full (about 6 minutes on 2 CPU cores)
    python -m papers.unpg.reproduce --quick    # smoke configs, same code path

Arms (each a `configs/unpg/omniglot.py` run, 4 paired seeds: at one seed every arm starts from
the same embedder initialisation and sees the same batches): ArcFace, ArcFace + UNPG, ArcFace +
UNPG without the box-and-whisker filter (r = inf), CosFace, CosFace + UNPG. The experiment
evaluates TAR@FAR=1e-3 on all pairs of the unseen characters and the 10-fold accuracy every
`train.eval_every` steps. Floors, computed here on the same images and pairs: raw pixels
compared by cosine similarity, and the untrained embedder of each seed.
"""

from __future__ import annotations

import pathlib

import numpy as np

from common import plots, results, stats, sweep
from papers.unpg import omniglot

PAPER = 'unpg'
TITLE = 'UNPG (BMVC 2022) on Omniglot open-set verification'
CONFIG = 'configs/unpg/omniglot.py'
SEEDS = (0, 1, 2, 3)  # 5 would take about 7.6 minutes, too close to the 8-minute budget
QUICK_SEEDS = (0, 1, 2)
ARMS = {  # arm -> (config argument, label)
    'arcface': ('arcface', 'ArcFace'),
    'arcface_unpg': ('arcface,unpg', 'ArcFace+UNPG'),
    'arcface_unpg_nofilter': ('arcface,unpg,nofilter', 'ArcFace+UNPG r=inf (no filter)'),
    'cosface': ('cosface', 'CosFace'),
    'cosface_unpg': ('cosface,unpg', 'CosFace+UNPG'),
}
TAR = 'tar@far=0.001'  # the primary metric: TAR@FAR=1e-3 on all pairs of the unseen characters
TAR_NAME = 'TAR@FAR=1e-3'
FARS = {'tar@far=0.0001': 'TAR@FAR=1e-4', TAR: TAR_NAME, 'tar@far=0.01': 'TAR@FAR=1e-2'}
# An arm counts as trained when its seed mean beats the larger of the two floors (raw pixels,
# untrained embedder) by MARGIN[metric]; as converged when its seed-mean eval curve rose by at
# most TOL[metric] over the last 20% of training.
MARGIN = {TAR: 0.01, 'accuracy': 0.02}
TOL = {TAR: 0.01, 'accuracy': 0.01}
NONINFERIORITY_MARGIN = 0.01  # 10-fold accuracy: "no worse" within 1 point
PAPER_TAR = {'arcface': 'IJB-C TAR@FAR=1e-5: 93.93', 'arcface_unpg': 'IJB-C TAR@FAR=1e-5: 94.47'}


def arms(quick: bool) -> list[sweep.Arm]:
  smoke = ',smoke' if quick else ''
  every = {'train.eval_every': 1} if quick else {}  # the smoke runs' 3 steps: an eval each
  return [sweep.Arm(name, f'{CONFIG}:{arg}{smoke}', every) for name, (arg, _) in ARMS.items()]


def curve(run: sweep.Run, key: str) -> tuple[list[int], list[float]]:
  return run.history(f'eval/{key}')


def converged(runs: dict, key: str, *names: str) -> dict[str, dict]:
  return {n: stats.convergence([curve(r, key)[1] for r in runs[n]], TOL[key]) for n in names}


def floors(runs: dict, quick: bool) -> dict[str, dict[str, list[float]]]:
  """{'raw_pixels' | 'untrained': {metric: [value per seed]}}, by `omniglot.floor_metrics` on
  the configs of the runs (the same data functions, images and pairs as the experiment)."""
  seeds = [r.seed for r in next(iter(runs.values()))]
  spec = f'{CONFIG}:arcface' + (',smoke' if quick else '')
  out: dict[str, dict[str, list[float]]] = {'raw_pixels': {}, 'untrained': {}}
  for seed in seeds:
    for name, metrics in omniglot.floor_metrics(sweep.load_config(spec, {'seed': seed})).items():
      for k, v in metrics.items():
        out[name].setdefault(k, []).append(float(v))
  return out


def floor_for(floor: dict, key: str) -> stats.Floor:
  raw, untrained = np.mean(floor['raw_pixels'][key]), np.mean(floor['untrained'][key])
  name = 'raw pixels' if raw >= untrained else 'untrained embedder'
  return stats.Floor(f'{name} ({FARS.get(key, "10-fold accuracy")}, same pairs)',
                     float(max(raw, untrained)), MARGIN[key])


def plot(path: pathlib.Path, runs: dict, floor: stats.Floor) -> str:
  fig, axes = plots.figure(2)
  first = next(iter(runs.values()))[0]
  plots.curves(axes[0], first.metrics['roc_far'],
               {ARMS[n][1]: [r.metrics['roc_tar'] for r in rs] for n, rs in runs.items()},
               ylabel='TAR', xlabel='FAR (all pairs of the unseen characters)', logx=True,
               title='ROC at the end of training')
  steps = curve(first, TAR)[0]
  plots.curves(axes[1], steps, {ARMS[n][1]: [curve(r, TAR)[1] for r in rs]
                                for n, rs in runs.items()},
               ylabel=TAR_NAME, title=f'{TAR_NAME} during training (floor: larger of raw '
               'pixels, untrained)',
               floor=floor.value)
  return plots.save(fig, path, len(next(iter(runs.values()))))


def analyse(runs: dict[str, list[sweep.Run]], *, quick: bool, out: pathlib.Path) -> dict:
  floor = floors(runs, quick)
  tar, acc = sweep.metric(runs, TAR), sweep.metric(runs, 'accuracy')
  tar_floor, acc_floor = floor_for(floor, TAR), floor_for(floor, 'accuracy')
  claims = []

  def compare(text: str, paper: str, a: str, b: str) -> None:
    if a in runs and b in runs:
      claims.append(stats.compare(text, paper, {a: tar[a], b: tar[b]}, a, b, 'a>b',
                                  metric=TAR_NAME, fmt='.4f', floor=tar_floor,
                                  converged=converged(runs, TAR, a, b)))

  def noninferior(text: str, paper: str, a: str, b: str) -> None:
    if a in runs and b in runs:
      claims.append(stats.noninferior(text, paper, {a: acc[a], b: acc[b]}, a, b,
                                      NONINFERIORITY_MARGIN, metric='10-fold accuracy',
                                      fmt='.4f', floor=acc_floor,
                                      converged=converged(runs, 'accuracy', a, b)))

  compare(f'UNPG raises {TAR_NAME} over plain ArcFace', 'IJB-C TAR@FAR=1e-5: 93.93 -> 94.47',
          'arcface_unpg', 'arcface')
  compare(f'UNPG raises {TAR_NAME} over plain CosFace',
          'higher with UNPG (same tables, CosFace head)', 'cosface_unpg', 'cosface')
  compare(f'The box-and-whisker filter matters: ArcFace+UNPG with r = 1.5 beats r = inf '
          f'(every negative pair kept) on {TAR_NAME}', 'filtered > unfiltered (ablation on r)',
          'arcface_unpg', 'arcface_unpg_nofilter')
  for head in ('arcface', 'cosface'):
    noninferior(f'{ARMS[head][1]}+UNPG is no worse than {ARMS[head][1]} on 10-fold accuracy '
                f'(margin {NONINFERIORITY_MARGIN:.2f})',
                'LFW-type sets: equal or higher (near saturation)', f'{head}_unpg', head)

  # --- tables ------------------------------------------------------------------------------------
  keys = list(FARS)
  fmt_seeds = lambda v: ' / '.join(f'{x:.4f}' for x in v)  # noqa: E731
  rows = [[f'floor: {name.replace("_", " ")}', '', *(f'{np.mean(floor[name][k]):.4f}'
                                                      for k in (TAR, 'accuracy')),
           '', '', *(f'{np.mean(floor[name][k]):.4f}' for k in keys if k != TAR), '']
          for name in ('raw_pixels', 'untrained')]
  for name, rs in runs.items():
    c = converged(runs, TAR, name)[name]
    rows.append([ARMS[name][1], PAPER_TAR.get(name, ''), f'{np.mean(tar[name]):.4f}',
                 f'{np.mean(acc[name]):.4f}', fmt_seeds(tar[name]), fmt_seeds(acc[name]),
                 *(f'{np.mean([r.metrics[k] for r in rs]):.4f}' for k in keys if k != TAR),
                 f'{c["improvement"]:+.4f}' + ('' if c['ok'] else ' (still improving)')])
  first = next(iter(runs.values()))[0].metrics
  tables = [results.table(
      f'Verification of the unseen characters (seed mean; per seed in seed order '
      f'{[r.seed for r in next(iter(runs.values()))]}); TAR on all '
      f'{first["num_positive_pairs"]} positive / {first["num_negative_pairs"]} negative pairs '
      f'({first["negatives@far=0.001"]} false accepts at FAR=1e-3)',
      ['arm', 'paper', TAR_NAME, '10-fold acc', f'{TAR_NAME} per seed', '10-fold acc per seed',
       *(FARS[k] for k in keys if k != TAR), f'{TAR_NAME} last-20% change'], rows)]
  plot_name = plot(out / 'roc.png', runs, tar_floor)
  config = sweep.load_config(f'{CONFIG}:arcface' + (',smoke' if quick else ''))
  notes = [
      f'{len(runs)} arms x {len(tar[next(iter(runs))])} seeds; each run {config.train.steps} '
      f'steps of {config.train.batch_size} images of {config.data.image_size}x'
      f'{config.data.image_size} ({config.train.classes_per_batch} characters x '
      f'{config.train.batch_size // config.train.classes_per_batch} drawers), evaluated every '
      f'{config.train.eval_every or 1} steps; the 10-fold accuracy uses a fixed list of '
      f'{config.data.num_pairs // 2} + {config.data.num_pairs // 2} pairs.',
      f'Verdicts: paired 95% t intervals over seeds (common.stats). An arm counts as trained '
      f'when its seed mean beats the larger floor by {MARGIN[TAR]} ({TAR_NAME}) or '
      f'{MARGIN["accuracy"]} (10-fold accuracy), and as converged when its seed-mean eval curve '
      f'rose by at most {TOL[TAR]} over the last 20% of training; otherwise not tested. The '
      f'accuracy claims are non-inferiority tests (one-sided 5%) with margin '
      f'{NONINFERIORITY_MARGIN}.',
  ]
  if quick:
    notes.append('QUICK MODE: smoke configs, numbers meaningless.')
  return {'claims': claims, 'tables': tables, 'plots': [plot_name], 'notes': notes}


def main(argv=None) -> dict:
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv, quick_seeds=QUICK_SEEDS)


if __name__ == '__main__':
  main()
