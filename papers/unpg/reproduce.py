"""UNPG on Omniglot open-set verification (train: 136 characters of 5 alphabets, verify: the
106 characters of 3 alphabets training never sees).

    python -m papers.unpg.reproduce            # full (about 26 minutes on 2 CPU cores)
    python -m papers.unpg.reproduce --quick    # smoke configs, same code path

Two stages, each a `common.sweep` of `configs/unpg/omniglot.py` runs:

1. Pilot (`PILOT_SEEDS`, in `<workdir>/pilot`): the plain ArcFace and CosFace heads on the
   validation split (trained without the Balinese alphabet, verified on it) for every (scale,
   margin, learning rate) of `PILOT_GRID`. For each head the setting with the highest seed-mean
   validation TAR@FAR=1e-3 is chosen (ties: the first in grid order); UNPG arms use their
   head's setting, as the paper adds UNPG to a head without retuning it.
2. Main arms (`SEEDS`, paired: at one seed every arm starts from the same initialisation and
   sees the same batches): ArcFace, ArcFace + UNPG, ArcFace + UNPG without the box-and-whisker
   filter (r = inf), CosFace, CosFace + UNPG, on the test split with the chosen settings.

Primary metric: TAR@FAR=1e-3 on all pairs of the test characters; also the partial AUC up to
FAR 1e-2 and the 10-fold accuracy. Verdicts: `common.stats` over paired seeds. Beside them, a
bootstrap over the test characters (200 resamples, the same for every run): the 95% interval of
the seed-mean paired difference when the characters tested are resampled. Floors, computed
here with the experiment's functions on the same images and pairs: raw pixels (cosine
similarity) and the untrained embedder of each seed.
"""

from __future__ import annotations

import pathlib

import numpy as np

from common import plots, results, stats, sweep
from papers.unpg import omniglot

PAPER = 'unpg'
TITLE = 'UNPG (BMVC 2022) on Omniglot open-set verification'
CONFIG = 'configs/unpg/omniglot.py'
SEEDS = (0, 1, 2, 3, 4, 5)
QUICK_SEEDS = (0, 1, 2)
PILOT_SEEDS = (0,)
HEADS = {'arcface': 'ArcFace', 'cosface': 'CosFace'}
# (scale s, margin m, learning rate): the official s = 64 with the paper's margins, and smaller
# scales and margins at two learning rates (--quick: the first of each head)
PILOT_GRID = {
    'arcface': [(64.0, 0.5, 2e-3), (32.0, 0.3, 2e-3), (16.0, 0.3, 2e-3), (16.0, 0.3, 5e-3)],
    'cosface': [(64.0, 0.35, 2e-3), (32.0, 0.2, 2e-3), (16.0, 0.2, 2e-3), (16.0, 0.2, 5e-3)],
}
CHOICE_KEYS = ('loss.scale', 'loss.margin', 'optim.lr')
ARMS = {  # arm -> (config argument, label)
    'arcface': ('arcface', 'ArcFace'),
    'arcface_unpg': ('arcface,unpg', 'ArcFace+UNPG'),
    'arcface_unpg_nofilter': ('arcface,unpg,nofilter', 'ArcFace+UNPG r=inf (no filter)'),
    'cosface': ('cosface', 'CosFace'),
    'cosface_unpg': ('cosface,unpg', 'CosFace+UNPG'),
}
TAR = 'tar@far=0.001'  # the primary metric: TAR@FAR=1e-3 on all pairs of the test characters
TAR_NAME = 'TAR@FAR=1e-3'
PAUC = 'pauc@far=0.01'
BOOT = f'bootstrap/{TAR}'
FARS = {'tar@far=0.0001': 'TAR@FAR=1e-4', TAR: TAR_NAME, 'tar@far=0.01': 'TAR@FAR=1e-2'}
NAMES = {**FARS, PAUC: 'pAUC(FAR<=1e-2)', 'accuracy': '10-fold accuracy'}
# An arm counts as trained when its seed mean beats the larger of the two floors (raw pixels,
# untrained embedder) by MARGIN[metric]; as converged when its seed-mean eval curve rose by at
# most TOL[metric] over the last 20% of training.
MARGIN = {TAR: 0.02, PAUC: 0.02, 'accuracy': 0.02}
TOL = {TAR: 0.01, PAUC: 0.01, 'accuracy': 0.01}
NONINFERIORITY_MARGIN = 0.01  # 10-fold accuracy: "no worse" within 1 point
PAPER_TAR = {'arcface': 'IJB-C TAR@FAR=1e-5: 93.93', 'arcface_unpg': 'IJB-C TAR@FAR=1e-5: 94.47'}


# --- stage 1: the pilot on the validation split -------------------------------------------------

def pilot_name(head: str, setting: tuple[float, float, float]) -> str:
  s, m, lr = setting
  return f'{head}_s{s:g}_m{m:g}_lr{lr:g}'


def pilot_grid(quick: bool) -> dict[str, list[tuple[float, float, float]]]:
  return {head: grid[:1] if quick else grid for head, grid in PILOT_GRID.items()}


def pilot_arms(quick: bool) -> list[sweep.Arm]:
  every = {'train.eval_every': 1} if quick else {}  # the smoke runs' 3 steps: an eval each
  return [sweep.Arm(pilot_name(head, setting), sweep.spec(CONFIG, head, 'validation', smoke=quick),
                    {**dict(zip(CHOICE_KEYS, setting, strict=True)), **every})
          for head, grid in pilot_grid(quick).items() for setting in grid]


def choose(pilot: dict[str, list[sweep.Run]], quick: bool = False
           ) -> dict[str, dict[str, float]]:
  """{head: {config key: value}}: the setting of the highest seed-mean validation TAR."""
  out = {}
  for head, grid in pilot_grid(quick).items():
    scores = [np.mean([r.metrics[TAR] for r in pilot[pilot_name(head, g)]]) for g in grid]
    out[head] = dict(zip(CHOICE_KEYS, grid[int(np.argmax(scores))], strict=True))
  return out


# --- stage 2: the main arms on the test split ----------------------------------------------------

def arms(quick: bool, choice: dict[str, dict[str, float]] | None = None) -> list[sweep.Arm]:
  """The main arms; `choice` ({head: overrides}, the pilot's) defaults to the config's own
  settings."""
  every = {'train.eval_every': 1} if quick else {}  # the smoke runs' 3 steps: an eval each
  choice = choice or {}
  return [sweep.Arm(name, sweep.spec(CONFIG, arg, smoke=quick),
                    {**choice.get(arg.split(',')[0], {}), **every})
          for name, (arg, _) in ARMS.items()]


def curve(run: sweep.Run, key: str) -> tuple[list[int], list[float]]:
  return run.history(f'eval/{key}')


def converged(runs: dict, key: str, *names: str) -> dict[str, dict]:
  return {n: stats.convergence([curve(r, key)[1] for r in runs[n]], TOL[key]) for n in names}


def floors(runs: dict, quick: bool) -> dict[str, dict[str, list]]:
  """{'raw_pixels' | 'untrained': {metric: [value per seed]}}, by `omniglot.floor_metrics` on
  the configs of the runs (the same data functions, images and pairs as the experiment)."""
  seeds = [r.seed for r in next(iter(runs.values()))]
  spec = sweep.spec(CONFIG, 'arcface', smoke=quick)
  out: dict[str, dict[str, list]] = {'raw_pixels': {}, 'untrained': {}}
  for seed in seeds:
    for name, metrics in omniglot.floor_metrics(sweep.load_config(spec, {'seed': seed})).items():
      for k, v in metrics.items():
        out[name].setdefault(k, []).append(v)
  return out


def floor_for(floor: dict, key: str) -> stats.Floor:
  raw, untrained = np.mean(floor['raw_pixels'][key]), np.mean(floor['untrained'][key])
  name = 'raw pixels' if raw >= untrained else 'untrained embedder'
  return stats.Floor(f'{name} ({NAMES[key]}, same pairs)', float(max(raw, untrained)),
                     MARGIN[key])


def bootstrap_interval(per_arm: dict[str, list[list[float]]], a: str, b: str | None = None
                       ) -> tuple[float, float]:
  """95% percentile interval, over resamples of the test characters, of the seed mean of
  a (or of a - b, paired by seed and resample)."""
  va = np.asarray(per_arm[a], np.float64)  # [seeds, resamples]
  d = va - np.asarray(per_arm[b], np.float64) if b else va
  lo, hi = np.nanpercentile(d.mean(0), [2.5, 97.5])
  return float(lo), float(hi)


def plot(path: pathlib.Path, runs: dict, floor: stats.Floor) -> str:
  fig, axes = plots.figure(2)
  first = next(iter(runs.values()))[0]
  plots.curves(axes[0], first.metrics['roc_far'],
               {ARMS[n][1]: [r.metrics['roc_tar'] for r in rs] for n, rs in runs.items()},
               ylabel='TAR', xlabel='FAR (all pairs of the test characters)', logx=True,
               title='ROC at the end of training')
  steps = curve(first, TAR)[0]
  plots.curves(axes[1], steps, {ARMS[n][1]: [curve(r, TAR)[1] for r in rs]
                                for n, rs in runs.items()},
               ylabel=TAR_NAME, title=f'{TAR_NAME} during training (floor: larger of raw '
               'pixels, untrained)', floor=floor.value)
  return plots.save(fig, path, len(next(iter(runs.values()))))


def fmt_seeds(values) -> str:
  return ' / '.join(f'{x:.4f}' for x in values)


def pilot_table(pilot: dict[str, list[sweep.Run]], choice: dict, quick: bool) -> dict:
  spec = sweep.spec(CONFIG, 'arcface', 'validation', smoke=quick)
  seeds = [r.seed for r in next(iter(pilot.values()))]
  floor = {}  # the floors on the validation split, seed mean
  for seed in seeds:
    for name, m in omniglot.floor_metrics(sweep.load_config(spec, {'seed': seed})).items():
      for k in (TAR, PAUC, 'accuracy'):
        floor.setdefault(name, {}).setdefault(k, []).append(m[k])
  rows = [[f'floor: {name.replace("_", " ")}', '', '', '', f'{np.mean(f[TAR]):.4f}',
           f'{np.mean(f[PAUC]):.4f}', f'{np.mean(f["accuracy"]):.4f}', '', '']
          for name, f in floor.items()]
  for head, grid in pilot_grid(quick).items():
    for g in grid:
      rs = pilot[pilot_name(head, g)]
      c = stats.convergence([curve(r, TAR)[1] for r in rs], TOL[TAR])
      chosen = dict(zip(CHOICE_KEYS, g, strict=True)) == choice[head]
      rows.append([HEADS[head], f'{g[0]:g}', f'{g[1]:g}', f'{g[2]:g}',
                   fmt_seeds([r.metrics[TAR] for r in rs]),
                   f'{np.mean([r.metrics[PAUC] for r in rs]):.4f}',
                   f'{np.mean([r.metrics["accuracy"] for r in rs]):.4f}',
                   f'{c["improvement"]:+.4f}', 'chosen' if chosen else ''])
  first = next(iter(pilot.values()))
  val_alphabet = sweep.load_config(f'{CONFIG}:arcface,validation').data.val_alphabet
  return results.table(
      f'Pilot on the validation split (trained without the {val_alphabet} alphabet, verified on '
      f'its {first[0].metrics["num_positive_pairs"]} positive / '
      f'{first[0].metrics["num_negative_pairs"]} negative pairs; seeds '
      f'{[r.seed for r in first]}): the setting of the highest validation {TAR_NAME} is chosen '
      'per head',
      ['head', 's', 'm', 'lr', f'val {TAR_NAME} per seed', 'val pAUC(FAR<=1e-2)',
       'val 10-fold acc', f'val {TAR_NAME} last-20% change', ''], rows)


def analyse(runs: dict[str, list[sweep.Run]], *, quick: bool, out: pathlib.Path,
            pilot: dict[str, list[sweep.Run]] | None = None, choice: dict | None = None
            ) -> dict:
  floor = floors(runs, quick)
  tar, pauc, acc = (sweep.metric(runs, k) for k in (TAR, PAUC, 'accuracy'))
  boot = {n: [r.metrics[BOOT] for r in rs] for n, rs in runs.items()}
  floor_of = {k: floor_for(floor, k) for k in (TAR, PAUC, 'accuracy')}
  claims, diffs = [], []

  def compare(text: str, paper: str, a: str, b: str) -> None:
    if a not in runs or b not in runs:
      return
    for key, values in ((TAR, tar), (PAUC, pauc)):
      primary = key == TAR
      claim = stats.compare(
          (text if primary else text.replace(TAR_NAME, NAMES[key])) +
          ('' if primary else ' (secondary metric)'), paper, {a: values[a], b: values[b]}, a, b,
          'a>b', metric=NAMES[key], fmt='.4f', floor=floor_of[key],
          converged=converged(runs, key, a, b))
      claims.append(claim)
      if primary:
        lo, hi = bootstrap_interval(boot, a, b)
        diffs.append([f'{ARMS[a][1]} - {ARMS[b][1]}', f'{claim["mean_diff"]:+.4f}',
                      f'[{claim["ci95"][0]:+.4f}, {claim["ci95"][1]:+.4f}]',
                      f'[{lo:+.4f}, {hi:+.4f}]', fmt_seeds(np.subtract(tar[a], tar[b])),
                      claim['verdict']])

  def noninferior(text: str, paper: str, a: str, b: str) -> None:
    if a in runs and b in runs:
      claims.append(stats.noninferior(text, paper, {a: acc[a], b: acc[b]}, a, b,
                                      NONINFERIORITY_MARGIN, metric='10-fold accuracy',
                                      fmt='.4f', floor=floor_of['accuracy'],
                                      converged=converged(runs, 'accuracy', a, b)))

  compare(f'UNPG raises {TAR_NAME} over plain ArcFace', 'IJB-C TAR@FAR=1e-5: 93.93 -> 94.47',
          'arcface_unpg', 'arcface')
  compare(f'UNPG raises {TAR_NAME} over plain CosFace',
          'higher with UNPG (same tables, CosFace head)', 'cosface_unpg', 'cosface')
  compare(f'The box-and-whisker filter matters: ArcFace+UNPG with r = 1.5 beats r = inf '
          f'(every negative pair kept) on {TAR_NAME}', 'filtered > unfiltered (ablation on r)',
          'arcface_unpg', 'arcface_unpg_nofilter')
  for head in HEADS:
    noninferior(f'{HEADS[head]}+UNPG is no worse than {HEADS[head]} on 10-fold accuracy '
                f'(margin {NONINFERIORITY_MARGIN:.2f})',
                'LFW-type sets: equal or higher (near saturation)', f'{head}_unpg', head)

  # --- tables --------------------------------------------------------------------------------
  others = [k for k in FARS if k != TAR]
  pixels = float(np.mean(floor['raw_pixels'][TAR]))  # the acceptance asks >= 2x this
  rows = []
  for name in ('raw_pixels', 'untrained'):
    f = floor[name]
    lo, hi = bootstrap_interval({name: f[BOOT]}, name)
    rows.append([f'floor: {name.replace("_", " ")}', '', f'{np.mean(f[TAR]):.4f}',
                 f'{np.mean(f[TAR]) / pixels:.2f}', f'[{lo:.4f}, {hi:.4f}]', '',
                 f'{np.mean(f[PAUC]):.4f}', f'{np.mean(f["accuracy"]):.4f}',
                 *(f'{np.mean(f[k]):.4f}' for k in others), ''])
  for name, rs in runs.items():
    c = converged(runs, TAR, name)[name]
    lo, hi = bootstrap_interval(boot, name)
    rows.append([ARMS[name][1], PAPER_TAR.get(name, ''), f'{np.mean(tar[name]):.4f}',
                 f'{np.mean(tar[name]) / pixels:.2f}', f'[{lo:.4f}, {hi:.4f}]',
                 fmt_seeds(tar[name]), f'{np.mean(pauc[name]):.4f}',
                 f'{np.mean(acc[name]):.4f}',
                 *(f'{np.mean([r.metrics[k] for r in rs]):.4f}' for k in others),
                 f'{c["improvement"]:+.4f}' + ('' if c['ok'] else ' (still improving)')])
  first = next(iter(runs.values()))[0].metrics
  seeds = [r.seed for r in next(iter(runs.values()))]
  tables = [results.table(
      f'Verification of the test characters (seed mean; per seed in seed order {seeds}); TAR '
      f'on all {first["num_positive_pairs"]} positive / {first["num_negative_pairs"]} negative '
      f'pairs ({first["negatives@far=0.001"]} false accepts at FAR=1e-3); character bootstrap: '
      f'95% interval of the seed mean over {len(first[BOOT])} resamples of the test characters',
      ['arm', 'paper', TAR_NAME, f'{TAR_NAME} / raw pixels', f'{TAR_NAME} character bootstrap',
       f'{TAR_NAME} per seed',
       'pAUC(FAR<=1e-2)', '10-fold acc', *(FARS[k] for k in others),
       f'{TAR_NAME} last-20% change'], rows)]
  if diffs:
    tables.append(results.table(
        f'Paired differences of {TAR_NAME} (a - b): 95% t interval over seeds (the verdict, '
        'common.stats) and 95% interval over resamples of the test characters (seed mean of '
        'the paired difference, same resamples for both arms); both arms must beat the floor '
        f'{floor_of[TAR].name} {floor_of[TAR].value:.4f} by {MARGIN[TAR]}',
        ['a - b', 'mean', 'seed t interval', 'character bootstrap', 'per seed', 'verdict'],
        diffs))
  if pilot:
    tables.insert(0, pilot_table(pilot, choice, quick))
  plot_name = plot(out / 'roc.png', runs, floor_of[TAR])
  config = sweep.load_config(sweep.spec(CONFIG, 'arcface', smoke=quick))
  t = config.train
  notes = [
      f'{len(runs)} arms x {len(seeds)} seeds; each run {t.steps} steps of {t.batch_size} '
      f'images of {config.data.image_size}x{config.data.image_size} (shuffled, one permutation '
      f'of the training images per epoch, as the official loader), evaluated every '
      f'{t.eval_every or 1} steps; the 10-fold accuracy uses a fixed list of '
      f'{config.data.num_pairs // 2} + {config.data.num_pairs // 2} pairs.',
      'Chosen on the validation split (pilot): ' + '; '.join(
          f'{HEADS[h]} s={c["loss.scale"]:g}, m={c["loss.margin"]:g}, lr={c["optim.lr"]:g}'
          for h, c in (choice or {}).items()) + '.',
      f'Verdicts: paired 95% t intervals over seeds (common.stats). An arm counts as trained '
      f'when its seed mean beats the larger floor by {MARGIN[TAR]} ({TAR_NAME}, pAUC) or '
      f'{MARGIN["accuracy"]} (10-fold accuracy), and as converged when its seed-mean eval curve '
      f'rose by at most {TOL[TAR]} over the last 20% of training; otherwise not tested. The '
      f'accuracy claims are non-inferiority tests (one-sided 5%) with margin '
      f'{NONINFERIORITY_MARGIN}.',
  ]
  if quick:
    notes.append('QUICK MODE: smoke configs, numbers meaningless.')
  return {'claims': claims, 'tables': tables, 'plots': [plot_name], 'notes': notes}


def main(argv=None) -> dict:
  """The pilot sweep (its runs under `<workdir>/pilot`), its choice, then the main sweep."""
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv, quick_seeds=QUICK_SEEDS,
                    pilot=sweep.Pilot(pilot_arms, choose, PILOT_SEEDS))


if __name__ == '__main__':
  main()
