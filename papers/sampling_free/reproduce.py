"""Sampling-Free reproduction on MNIST digits on 64x64 canvases: focal loss at RetinaNet's
official settings vs Sampling-Free (BCE + optimal bias + guided loss scaling + adaptive
threshold) and its ablation (plain BCE; BCE + optimal bias); every detector starts from a
backbone pretrained as a digit classifier.

    PAPERS_DATA_DIR=/work/shared/data python -m papers.sampling_free.reproduce --jobs=2
    PAPERS_DATA_DIR=/work/shared/data python -m papers.sampling_free.reproduce --quick

Stages, each a `common.sweep` of `python -m common.main` runs (results.json lists every command;
a rerun with the same --workdir skips finished runs):
1. `pretrain` (every seed): the backbone as a digit classifier
   (configs/sampling_free/mnist_backbone.py).
2. Pilot (the first seed, in `<workdir>/pilot`): focal loss and Sampling-Free at constant lr for
   `mnist_canvas.PILOT_STEPS` steps on the pilot's own validation canvases; the main-run length
   is the later of their plateau steps (`common.detection.results.choose_steps`).
3. Main arms (`SEEDS`, paired by seed), that length with the COCO 1x schedule's shape, COCO AP
   of the 1000 validation canvases every fifth of training. The Sampling-Free weights are also
   scored at threshold 0.05 (an eval-only ablation: the arm "BCE + bias + guided scaling").

Claims come from `common.stats`: an AP claim needs its arms beyond the floor (AP of the
validation gt boxes with random classes and scores, `common.detection.floors`) by FLOOR_MARGIN
and flat AP curves (CONVERGENCE_TOL).
"""

from __future__ import annotations

import pathlib

import numpy as np

from common import results as res
from common import stats, sweep
from common.detection import evaluation, floors, schedule
from common.detection import results as detres

PAPER = 'sampling_free'
TITLE = 'Is Heuristic Sampling Necessary in Training Deep Object Detectors?'
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)  # --quick: one seed, every stage (claims are then not tested)
CONFIG = 'configs/sampling_free/mnist_canvas.py'
BACKBONE = 'configs/sampling_free/mnist_backbone.py'
FLOOR_MARGIN = 1.0  # AP points an arm must beat the random-class floor by
NONINFERIORITY_MARGIN = 1.0  # AP points Sampling-Free may lose to focal loss and still "match"
CONVERGENCE_TOL = 0.5  # AP points of seed-mean improvement allowed over the last 20% of steps
PLATEAU_TOL = 0.5  # AP points: the pilot's plateau (see `schedule.plateau_step`)
ARMS = {  # name -> label; each arm is the config argument of the same name
    'focal': 'focal loss (prior 0.01, threshold 0.05, NMS 0.4)',
    'bce': 'plain BCE (zero bias, threshold 0.05)',
    'bce_bias': 'BCE + optimal bias (threshold 0.05)',
    'sampling_free': 'Sampling-Free (+ guided scaling, adaptive threshold)',
}
PILOT_ARMS = ('focal', 'sampling_free')
GLS = 'bce_bias_gls'  # the Sampling-Free weights scored at threshold 0.05 (eval only)
LABELS = {**ARMS, GLS: 'BCE + optimal bias + guided scaling (threshold 0.05; the Sampling-Free '
          'weights, eval only)'}
SHORT = {'focal': 'focal', 'bce': 'BCE', 'bce_bias': 'BCE + bias',
         'sampling_free': 'Sampling-Free', GLS: 'BCE + bias + GLS'}
PAPER_AP = {'focal': '36.4', 'sampling_free': '36.8', 'bce': 'collapses'}  # RetinaNet R-50 1x


def spec(quick: bool, *args: str) -> str:
  return sweep.spec(CONFIG, *args, smoke=quick)


def pretrain_arm(quick: bool) -> sweep.Arm:
  return sweep.Arm('pretrain', sweep.spec(BACKBONE, smoke=quick))


def pilot_arms(quick: bool, backbone: sweep.After) -> list[sweep.Arm]:
  """Focal loss and Sampling-Free at constant lr, from the pilot's `pretrain` run."""
  return [sweep.Arm(name, spec(quick, f'{name},pilot'), {'detector.backbone_init': backbone})
          for name in PILOT_ARMS]


def arms(quick: bool, choice: dict | None = None) -> list[sweep.Arm]:
  """The pretraining arm and the detector arms; with the pilot's `choice` they train its
  `steps` with the 1x schedule's shape (`schedule.one_x`), else the config's STEPS."""
  length = schedule.one_x(choice['steps']) if choice else {}
  return [pretrain_arm(quick)] + [
      sweep.Arm(name, spec(quick, name),
                {**length, 'detector.backbone_init': sweep.After('pretrain')})
      for name in ARMS]


def claims_of(ap: dict, runs: dict, floor: stats.Floor, conv: dict) -> list[dict]:
  def on(*names) -> dict:  # the arms a claim compares: their AP, floor and convergence
    return dict(per_seed={n: ap[n] for n in names}, metric='AP', fmt='.3g', floor=floor,
                converged={n: conv[n] for n in names if n in conv})

  claims = []
  if 'sampling_free' in runs and 'focal' in runs:
    claims.append(stats.noninferior(
        f'Sampling-Free matches focal loss at its official settings: its COCO AP is no more '
        f'than {NONINFERIORITY_MARGIN:g} AP below focal loss\'s', 'RetinaNet R-50: 36.4 -> 36.8',
        a='sampling_free', b='focal', margin=NONINFERIORITY_MARGIN,
        **on('sampling_free', 'focal')))
  collapse = ('Naive training without heuristics (plain BCE, zero bias) collapses: its AP stays '
              'below the floor (val gt boxes with random classes and scores) where focal loss '
              'trains beyond it')
  if 'bce' in runs and 'focal' in runs and not floor.check({'focal': ap['focal']})['ok']:
    claims.append(stats.not_tested(collapse, 'collapses without sampling heuristics',
                                   'focal loss is not beyond the floor either'))
  elif 'bce' in runs and 'focal' in runs:  # the floor is the reference: no floor check of BCE
    claims.append(stats.compare(
        collapse, 'collapses without sampling heuristics', a='bce', b='floor', direction='a<b',
        reference=floor.value, **(on('bce') | {'floor': None})))
  bias = 'The optimal bias initialisation alone makes BCE train: AP(BCE + bias) > AP(plain BCE)'
  if 'bce_bias' in runs and 'bce' in runs and not floor.check({'x': ap['bce_bias']})['ok']:
    claims.append(stats.not_tested(bias, 'component 1 of the method (Sec. III-B)',
                                   'BCE + bias is not beyond the floor either'))
  elif 'bce_bias' in runs and 'bce' in runs:  # plain BCE may sit at the floor: no floor check
    claims.append(stats.compare(bias, 'component 1 of the method (Sec. III-B)', a='bce_bias',
                                b='bce', direction='a>b',
                                **(on('bce_bias', 'bce') | {'floor': None})))
  if GLS in ap and 'bce_bias' in runs:
    claims.append(stats.compare(
        'Guided loss scaling adds AP on top of the optimal bias (both at threshold 0.05)',
        'component 2 of the method (Sec. III-C)', a=GLS, b='bce_bias', direction='a>b',
        **on(GLS, 'bce_bias')))
  if GLS in ap:  # the same weights: the convergence of the trained arm
    claims.append(stats.compare(
        'The adaptive test threshold (prior x (C + 1)) scores the Sampling-Free weights higher '
        'than the fixed threshold 0.05', 'component 3 of the method (Sec. III-D)',
        a='sampling_free', b=GLS, direction='a>b', **on('sampling_free', GLS)))
  return claims


def analyse(runs: dict[str, list[sweep.Run]], quick: bool, out: pathlib.Path,
            pilot: dict[str, list[sweep.Run]] | None = None, choice: dict | None = None
            ) -> dict:
  pretrained = runs.get('pretrain', [])
  runs = {n: rs for n, rs in runs.items() if n in ARMS}
  ap = sweep.metric(runs, 'AP')
  if 'sampling_free' in runs:
    ap[GLS] = [r.metrics['AP_thr005'] for r in runs['sampling_free']]
  config = sweep.load_config(spec(quick))
  fl = floors.ap_floors(config)
  floor = stats.Floor('AP of the val gt boxes with random classes and scores',
                      fl['random class']['AP'], FLOOR_MARGIN)
  conv = {a: stats.convergence(sweep.curves(rs, detres.CURVE)[1], CONVERGENCE_TOL)
          for a, rs in runs.items()}
  if 'sampling_free' in conv:
    conv[GLS] = conv['sampling_free']  # the same weights
  claims = claims_of(ap, runs, floor, conv)
  length = choice['steps'] if choice else config.train.steps
  pilot = detres.detectors(pilot or {})
  rows = []
  for name in ap:
    rs = runs['sampling_free' if name == GLS else name]
    first = rs[0].metrics
    rows.append(detres.metrics_row(LABELS[name], ap[name], rs, '_thr005' if name == GLS else '')
                + [f'{first["prior"]:.3g}', f'{0.05 if name == GLS else first["threshold"]:.3g}',
                   PAPER_AP.get(name, '')])
  rows += detres.floor_rows(fl, 3)
  grad = [[LABELS[n], f'{np.mean([r.metrics["grad_ratio_step0"] for r in rs]):.3g}',
           f'{np.mean([r.metrics["grad_ratio_final"] for r in rs]):.3g}',
           round(conv[n]['improvement'], 2) + 0.0] for n, rs in runs.items()]
  n_seeds = len(next(iter(runs.values())))
  tables = [
      res.table(f'COCO metrics on the {config.data.num_val} validation canvases after {length} '
                f'steps: seed mean, 95% interval half-width, per seed ({n_seeds} seeds); '
                f'paper: COCO AP',
                ['arm', 'AP', '+-95%', 'AP per seed', *evaluation.METRICS[1:],
                 'prior (initial bias)', 'test threshold', 'paper AP'], rows),
      res.table('|grad L_cls| / |grad L_reg| (global norms, L_cls after guided scaling where '
                'used; seed mean) and the AP gain over the last 20% of steps',
                ['arm', 'step 0', 'end', 'AP gain, last 20%'], grad),
  ]
  if pilot:
    tables.append(detres.pilot_table(pilot, choice['plateau_steps'], length, ARMS, PLATEAU_TOL))
  plot = detres.figure(out / 'sampling_free.png', ap, runs, pilot, SHORT, floor.value, length)
  notes = [
      f'Floor: COCO AP of the validation gt boxes detected with a uniformly random class and '
      f'score (mean of 5 draws); an AP claim is tested only when its arms beat it by '
      f'{FLOOR_MARGIN:g} AP (the plain-BCE arm is exempt: the collapse claim asks for AP below '
      'the floor). The every-class row (each gt box once per class, one score) is perfect '
      'localisation without class knowledge, for scale.',
      detres.convergence_note(CONVERGENCE_TOL),
      detres.acceptance(runs, conv, ARMS),
      detres.pretraining_note(pretrained),
      f'Scale: 64x64 canvases of 1-4 MNIST digits, {config.data.num_train} training / '
      f'{config.data.num_val} validation images, {length} SGD steps of batch '
      f'{config.train.batch_size}, 9 anchors per location at strides 4/8/16, a GroupNorm '
      'convnet backbone pretrained as a digit classifier, no two-stage detector; see the '
      'README deviations.',
  ]
  if pilot:
    notes.insert(3, detres.pilot_note(pilot, ARMS, PLATEAU_TOL, length))
  if quick:
    notes.append('QUICK MODE: smoke configs, numbers meaningless.')
  return {'claims': claims, 'tables': tables, 'plots': [plot], 'notes': notes}


def main(argv=None) -> dict:
  """Pretraining (every seed), the pilot, then the main arms at the pilot's length."""
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv, QUICK_SEEDS,
                    detres.pilot(pretrain_arm, pilot_arms, PLATEAU_TOL))


if __name__ == '__main__':
  main()
