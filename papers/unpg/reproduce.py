"""Reproduction: CosFace / ArcFace with and without UNPG (+ the unfiltered ablation), 3 seeds,
open-set verification on 156 unseen Omniglot characters.

    python -m papers.unpg.reproduce            # full (<= 10 min on 2 CPU cores)
    python -m papers.unpg.reproduce --quick    # same code path in seconds (writes to a temp dir)

Writes papers/unpg/results.json and papers/unpg/roc.png (full mode only); then run
`python -m common.report` to fill the README.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import shutil
import tempfile
import time

import numpy as np

from common import results, verification
from configs.unpg import omniglot as cfgmod
from papers.unpg import omniglot

HERE = pathlib.Path(__file__).resolve().parent
# arm name -> config argument
ARMS = {
    'CosFace': 'cosface',
    'CosFace+UNPG': 'cosface,unpg',
    'ArcFace': 'arcface',
    'ArcFace+UNPG': 'arcface,unpg',
    'ArcFace+UNPG r=inf': 'arcface,unpg,nofilter',
}
QUICK_ARMS = ('ArcFace', 'ArcFace+UNPG')
FARS = verification.DEFAULT_FARS
TAR_KEYS = [f'tar@far={f:g}' for f in FARS]


def arm_config(arm: str, seed: int, quick: bool):
  config = cfgmod.get_config(ARMS[arm] + (',smoke' if quick else ''))
  config.seed = seed
  config.num_devices = 1
  return config


def run_arm(arm: str, seed: int, quick: bool, root: pathlib.Path) -> dict:
  workdir = root / arm.replace(' ', '_').replace('=', '') / f'seed{seed}'
  shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, never a resume
  workdir.mkdir(parents=True)
  result = omniglot.train_and_evaluate(arm_config(arm, seed, quick), str(workdir))
  metrics = dict(result.eval_metrics)
  metrics['seconds'] = result.seconds
  metrics['embeddings'] = str(workdir / 'test_embeddings.npy')
  return metrics


def mean_se(xs) -> tuple[float, float]:
  xs = np.asarray(xs, np.float64)
  se = xs.std(ddof=1) / math.sqrt(len(xs)) if len(xs) > 1 else float('nan')
  return float(xs.mean()), float(se)


def effect(runs: dict, better: str, worse: str, key: str) -> tuple[float, float]:
  """Mean paired difference over seeds and its noise (2 standard errors)."""
  diff = [a[key] - b[key] for a, b in zip(runs[better], runs[worse], strict=True)]
  m, se = mean_se(diff)
  return m, 2 * se if not math.isnan(se) else float('inf')


def pct(x: float) -> str:
  return f'{100 * x:.2f}'


def plot_roc(runs: dict, labels: np.ndarray, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4.5))
  for arm, seeds in runs.items():
    curves = []
    for run in seeds:
      sims, same = verification.all_pair_scores(np.load(run['embeddings']), labels)
      far, tar = verification.roc_curve(sims, same, np.logspace(-4, 0, 60))
      curves.append(tar)
    ax.plot(far, 100 * np.mean(curves, 0), label=arm,
            linestyle='--' if 'inf' in arm else '-')
  ax.set_xscale('log')
  ax.set_xlabel('FAR (all pairs of the 156 unseen characters)')
  ax.set_ylabel('TAR (%)')
  ax.set_title(f'Omniglot open-set verification, mean ROC over {len(seeds)} seed(s)')
  ax.grid(alpha=0.3, which='both')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='2 arms, 1 seed, 3 steps')
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--out', default='', help='where results.json and roc.png go '
                      '(default: papers/unpg, or a temp dir with --quick)')
  parser.add_argument('--workdir', default='', help='run directories (default: a temp dir)')
  args = parser.parse_args()
  os.environ.setdefault('PAPERS_DATA_DIR', str(HERE.parents[2] / 'shared' / 'data'))
  started = time.time()
  seeds = list(range(1 if args.quick else args.seeds))
  arms = QUICK_ARMS if args.quick else tuple(ARMS)
  out = pathlib.Path(args.out or (tempfile.mkdtemp(prefix='unpg_quick_') if args.quick
                                  else HERE))
  out.mkdir(parents=True, exist_ok=True)
  root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix='unpg_runs_'))
  runs = {arm: [] for arm in arms}
  for seed in seeds:
    for arm in arms:
      runs[arm].append(run_arm(arm, seed, args.quick, root))
      print(f'{arm} seed {seed}: ' + ', '.join(
          f'{k} {runs[arm][-1][k]:.4f}' for k in ['accuracy', *TAR_KEYS]), flush=True)

  # --- tables -------------------------------------------------------------------------------
  first = runs[arms[0]][0]
  negatives = {k: first[f'negatives@far={f:g}'] for k, f in zip(TAR_KEYS, FARS, strict=True)}
  columns = ['method', '10-fold acc (%)'] + [
      f'TAR@FAR={f:g} (%) [{negatives[k]} neg. pairs]' for k, f in zip(TAR_KEYS, FARS,
                                                                          strict=True)]
  rows = []
  for arm in arms:
    row = [arm]
    for key in ['accuracy', *TAR_KEYS]:
      m, se = mean_se([r[key] for r in runs[arm]])
      row.append(f'{100 * m:.2f} ± {100 * se:.2f}' if not math.isnan(se) else pct(m))
    rows.append(row)
  per_seed = [[arm, seed, pct(r['accuracy'])] + [pct(r[k]) for k in TAR_KEYS]
              + [round(r['seconds'], 1)]
              for arm in arms for seed, r in zip(seeds, runs[arm], strict=True)]

  # --- claims -------------------------------------------------------------------------------
  claims = []
  key = TAR_KEYS[0]  # the lowest FAR the negatives resolve with hundreds of pairs

  def add(text: str, paper: str, better: str, worse: str, k: str = key) -> None:
    if better not in runs or worse not in runs:
      return
    e, noise = effect(runs, better, worse, k)
    ours = (f'{pct(np.mean([r[k] for r in runs[worse]]))} -> '
            f'{pct(np.mean([r[k] for r in runs[better]]))} ({k}; diff {100 * e:+.2f} ± '
            f'{100 * noise:.2f})')
    claims.append(results.claim(text, paper, ours, results.verdict(e, noise)))

  add('UNPG raises TAR at low FAR over plain ArcFace',
      'IJB-C TAR@FAR=1e-5: 93.93 -> 94.47', 'ArcFace+UNPG', 'ArcFace')
  add('UNPG raises TAR at low FAR over plain CosFace',
      'higher with UNPG (same tables, CosFace head)', 'CosFace+UNPG', 'CosFace')
  add('The box-and-whisker filter matters (r = 1.5 beats keeping every pair)',
      'filtered > unfiltered (ablation on r)', 'ArcFace+UNPG', 'ArcFace+UNPG r=inf')
  add('UNPG raises the 10-fold verification accuracy (ArcFace)',
      'LFW-type sets: equal or higher (near saturation)', 'ArcFace+UNPG', 'ArcFace',
      'accuracy')

  plot_roc(runs, omniglot.load_data(arm_config(arms[0], 0, args.quick))[3], out / 'roc.png')
  wall = time.time() - started
  cfg = arm_config(arms[0], 0, args.quick)
  notes = [
      f'{len(arms)} arms x {len(seeds)} seed(s); each run {cfg.train.steps} steps of '
      f'{cfg.train.batch_size} images of {cfg.data.image_size}x{cfg.data.image_size} '
      f'({cfg.train.classes_per_batch} characters x '
      f'{cfg.train.batch_size // cfg.train.classes_per_batch} drawers); '
      'verification on all 3,120 images of the 156 unseen characters '
      f'({first["num_positive_pairs"]} positive / {first["num_negative_pairs"]} negative '
      'pairs); the 10-fold accuracy uses a fixed list of 3000 + 3000 pairs.',
      'Verdicts: effect = mean paired difference over seeds, noise = 2 standard errors of '
      'that difference (common.results.verdict).',
  ]
  results.write_results(
      out / 'results.json', paper='unpg',
      title='UNPG (BMVC 2022) on Omniglot open-set verification',
      claims=claims,
      tables=[results.table('Unseen-character verification (mean ± s.e. over seeds)',
                            columns, rows),
              results.table('Per seed', ['method', 'seed', 'acc (%)'] +
                            [f'{k} (%)' for k in TAR_KEYS] + ['train s'], per_seed)],
      plots=['roc.png'], notes=notes, seeds=seeds, wall_time_s=wall,
      command='python -m papers.unpg.reproduce' + (' --quick' if args.quick else ''))
  print(f'wrote {out / "results.json"} and {out / "roc.png"} in {wall:.0f} s')


if __name__ == '__main__':
  main()
