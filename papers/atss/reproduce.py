"""ATSS reproduction: the same detector trained with ATSS (topk 3, 9, 15) and with RetinaNet's
IoU assignment (one anchor per location), 3 seeds each, on MNIST digits on 64x64 canvases.

    PAPERS_DATA_DIR=/work/shared/data python -m papers.atss.reproduce          # ~8 min, 2 cores
    PAPERS_DATA_DIR=/work/shared/data python -m papers.atss.reproduce --quick  # < 1 min

Every run is `python -m common.main --config=configs/atss/mnist_canvas.py[:smoke]` with the arm's
overrides (results.json lists each command). Claims come from `common.stats`: COCO AP claims
need both arms beyond the floor (AP of the validation gt boxes with random classes and scores,
`common.detection.floors`) by FLOOR_MARGIN and flat AP curves (CONVERGENCE_TOL).
"""

from __future__ import annotations

import pathlib

import numpy as np

from common import plots, stats, sweep
from common import results as res
from common.detection import evaluation, floors
from papers.atss import experiment

PAPER, TITLE = 'atss', 'ATSS: Adaptive Training Sample Selection'
SEEDS = (0, 1, 2)
CONFIG = 'configs/atss/mnist_canvas.py'
FLOOR_MARGIN = 1.0  # AP points an arm must beat the random-class floor by
TOPK_MARGIN = 1.0  # AP points: "robust to k" = |AP(k) - AP(k=9)| below this
CONVERGENCE_TOL = 0.5  # AP points of seed-mean improvement allowed over the last 20% of steps
ARMS = {'atss': ('ATSS, k = 9', {}),
        'iou': ('IoU 0.5 / 0.4', {'assigner.name': 'iou'}),
        'atss_k3': ('ATSS, k = 3', {'assigner.topk': 3}),
        'atss_k15': ('ATSS, k = 15', {'assigner.topk': 15})}
PAPER_AP = {'atss': 39.3, 'iou': 37.0}  # COCO minival, R-50-FPN 1x, one anchor per location


def spec(quick: bool) -> str:
  return CONFIG + (':smoke' if quick else '')


def arms(quick: bool) -> list[sweep.Arm]:
  return [sweep.Arm(name, spec(quick), overrides) for name, (_, overrides) in ARMS.items()]


def size_spread(metrics: dict) -> float:
  """max / min positives per gt over the size bins (1 = the same count for every size)."""
  v = [metrics[f'pos_per_gt_{b}'] for b in experiment.SIZE_BINS]
  return max(v) / max(min(v), 1e-9)


def analyse(runs: dict[str, list[sweep.Run]], quick: bool, out: pathlib.Path) -> dict:
  ap = sweep.metric(runs, 'AP')
  fl = floors.ap_floors(sweep.load_config(spec(quick)))
  floor = stats.Floor('AP of the val gt boxes with random classes and scores',
                      fl['random class']['AP'], FLOOR_MARGIN)
  conv = {a: stats.convergence(sweep.curves(rs, 'eval/AP')[1], CONVERGENCE_TOL)
          for a, rs in runs.items()}
  claims = []

  def has(*names):
    return all(n in runs for n in names)

  def on(*names) -> dict:  # the arms a claim compares: their AP, floor and convergence
    return dict(per_seed={n: ap[n] for n in names}, metric='AP', fmt='.3g', floor=floor,
                converged={n: conv[n] for n in names})

  if has('atss', 'iou'):
    claims.append(stats.compare(
        'ATSS beats RetinaNet IoU assignment with the same network (COCO AP, one anchor per '
        'location)', '37.0 -> 39.3 (+2.3)', a='atss', b='iou', direction='a>b',
        **on('atss', 'iou')))
  if has('atss_k15', 'atss'):
    claims.append(stats.equivalent(
        f'ATSS AP is robust to topk within the paper\'s robust range: |AP(k = 15) - AP(k = 9)| < '
        f'{TOPK_MARGIN:g} AP', 'robust for k = 7..17 (Table 3)', a='atss_k15', b='atss',
        margin=TOPK_MARGIN, **on('atss_k15', 'atss')))
  if has('atss', 'atss_k3'):
    claims.append(stats.compare(
        'Too small a topk lowers ATSS AP: AP(k = 9) > AP(k = 3)',
        'k = 3 "causes a noticeable drop" (Table 3)', a='atss', b='atss_k3', direction='a>b',
        **on('atss', 'atss_k3')))
  if has('atss', 'iou'):  # seed-independent: the validation gts and anchors are fixed data
    claims.append(stats.deterministic(
        'ATSS gives a flatter number of positives per gt over object sizes than IoU assignment '
        '(max / min positives per validation gt over the small / medium / large bins)',
        'qualitative (Sec. 3.3)', {'atss': size_spread(runs['atss'][0].metrics),
                                   'iou': size_spread(runs['iou'][0].metrics)},
        'atss', 'iou', 'a<b', metric='positives-per-gt spread', fmt='.3g'))

  config = sweep.load_config(spec(quick))
  steps, n_seeds = config.train.steps, len(next(iter(runs.values())))
  rows = []
  for name, rs in runs.items():
    mean, half = plots.mean_ci(np.asarray(ap[name]))
    m = {k: float(np.mean([r.metrics[k] for r in rs])) for k in evaluation.METRICS}
    rows.append([ARMS[name][0], round(float(mean), 2), round(float(half), 2),
                 ', '.join(f'{x:.2f}' for x in ap[name])]
                + [round(m[k], 2) for k in evaluation.METRICS[1:]]
                + [PAPER_AP.get(name, ''), round(conv[name]['improvement'], 2) + 0.0])
  for name, f in fl.items():
    rows.append([f'floor: val gt boxes, {name}' + (' (5 draws)' if name == 'random class' else
                                                   ' at one score'),
                 round(f['AP'], 2), '', ''] + [round(f[k], 2) for k in evaluation.METRICS[1:]]
                + ['', ''])
  bins = experiment.SIZE_BINS
  tables = [
      res.table(f'COCO metrics on the validation canvases after {steps} steps: seed mean, '
                f'95% interval half-width, per seed ({n_seeds} seeds)',
                ['arm', 'AP', '+-95%', 'AP per seed', *evaluation.METRICS[1:],
                 'paper AP (COCO)', 'AP gain, last 20% of steps'], rows),
      res.table('Positives per validation gt by size (sqrt area < 16 / 16-32 / > 32 px); a '
                'function of the anchors and gts, the same on every seed',
                ['arm', *bins, 'all', 'gts with no positive', 'max / min over sizes'],
                [[ARMS[n][0], *(round(rs[0].metrics[f'pos_per_gt_{b}'], 2) for b in bins),
                  round(rs[0].metrics['pos_per_gt'], 2), round(rs[0].metrics['no_pos_share'], 3),
                  round(size_spread(rs[0].metrics), 3)] for n, rs in runs.items()]),
  ]
  fig, axes = plots.figure(2)
  plots.bars(axes[0], {ARMS[n][0]: ap[n] for n in runs}, ylabel='COCO AP (val)',
             title=f'After {steps} steps', floor=floor.value, floor_label='random-class floor')
  x, _ = sweep.curves(next(iter(runs.values())), 'eval/AP')
  plots.curves(axes[1], x, {ARMS[n][0]: sweep.curves(rs, 'eval/AP')[1] for n, rs in runs.items()},
               ylabel='COCO AP (val)', title='AP during training', floor=floor.value)
  plot = plots.save(fig, out / 'atss.png', n_seeds)
  notes = [
      f'Floor: COCO AP of the validation gt boxes detected with a uniformly random class and '
      f'score (mean of 5 draws); an AP claim is tested only when both arms beat it by '
      f'{FLOOR_MARGIN:g} AP. The every-class row (each gt box once per class, one score) is '
      'perfect localisation without class knowledge, for scale.',
      f'Convergence: an arm counts as flat when its seed-mean AP rose by at most '
      f'{CONVERGENCE_TOL:g} AP over the last 20% of its evaluations (every '
      f'{config.train.eval_every} steps); the cosine schedule ends at lr 0.',
      'Scale: 64x64 canvases of 1-4 MNIST digits, 2000 training / 200 validation images, '
      f'{steps} SGD steps of batch {config.train.batch_size}, strides 4/8/16 with one anchor '
      'of 4x the stride per location, 2-conv towers; see the README deviations.',
  ]
  return {'claims': claims, 'tables': tables, 'plots': [plot], 'notes': notes}


def main(argv=None) -> dict:
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv)


if __name__ == '__main__':
  main()
