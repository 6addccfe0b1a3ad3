"""ATSS reproduction on MNIST digits on 64x64 canvases: ATSS vs RetinaNet's IoU assignment vs
FCOS's spatial + scale assignment on the same network, ATSS with 9 anchors per location, and
ATSS at topk 3 and 15; every detector starts from a backbone pretrained as a digit classifier.

    PAPERS_DATA_DIR=/work/shared/data python -m papers.atss.reproduce --jobs=2
    PAPERS_DATA_DIR=/work/shared/data python -m papers.atss.reproduce --quick  # smoke configs

Stages, each a `common.sweep` of `python -m common.main` runs (results.json lists every command;
a rerun with the same --workdir skips finished runs):
1. `pretrain` (every seed): the backbone as a digit classifier (configs/atss/mnist_backbone.py).
2. Pilot (`PILOT_SEED`, in `<workdir>/pilot`): ATSS and IoU at constant lr for
   `mnist_canvas.PILOT_STEPS` steps, evaluated on the pilot's own validation canvases; the
   main-run length is the later of their plateau steps (`common.detection.results.choose_steps`).
3. Main arms (`SEEDS`, paired by seed: the same pretrained backbone, head initialisation and
   batches), that length with the COCO 1x schedule's shape, COCO AP of the 1000 validation
   canvases every fifth of training.

Claims come from `common.stats`: an AP claim needs its arms beyond the floor (AP of the
validation gt boxes with random classes and scores, `common.detection.floors`) by FLOOR_MARGIN
and flat AP curves (CONVERGENCE_TOL).
"""

from __future__ import annotations

import pathlib

from common import results as res
from common import stats, sweep
from common.detection import evaluation, floors, schedule
from common.detection import results as detres
from papers.atss import experiment

PAPER, TITLE = 'atss', 'ATSS: Adaptive Training Sample Selection'
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)  # --quick: one seed, every stage (claims are then not tested)
PILOT_SEED = 0
CONFIG = 'configs/atss/mnist_canvas.py'
BACKBONE = 'configs/atss/mnist_backbone.py'
FLOOR_MARGIN = 1.0  # AP points an arm must beat the random-class floor by
EQUIVALENCE_MARGIN = 1.0  # AP points: "no difference" (topk 15 vs 9, 9 vs 1 anchors) within this
CONVERGENCE_TOL = 0.5  # AP points of seed-mean improvement allowed over the last 20% of steps
PLATEAU_TOL = 0.5  # AP points: the pilot's plateau (see `schedule.plateau_step`)
ARMS = {  # name -> (label, config argument, overrides)
    'atss': ('ATSS, k = 9', '', {}),
    'iou': ('IoU 0.5 / 0.4 + in-gt', 'iou', {}),
    'fcos': ('FCOS spatial + scale', 'fcos', {}),
    'atss_a9': ('ATSS, k = 9, 9 anchors', 'anchors9', {}),
    'atss_k3': ('ATSS, k = 3', '', {'assigner.topk': 3}),
    'atss_k15': ('ATSS, k = 15', '', {'assigner.topk': 15}),
}
PILOT_ARMS = ('atss', 'iou')
LABELS = {name: label for name, (label, _, _) in ARMS.items()}
# COCO minival, R-50-FPN 1x, one anchor per location: Table 2 (IoU 37.0, spatial + scale 37.8)
# and the ATSS result 39.3; Tables 3 and 7 give k and #A without a single headline number here.
PAPER_AP = {'atss': '39.3', 'iou': '37.0', 'fcos': '37.8', 'atss_a9': '~ #A = 1 (Table 7)',
            'atss_k3': 'below k = 9 (Table 3)', 'atss_k15': '~ k = 9 (Table 3)'}


def spec(quick: bool, *args: str) -> str:
  return sweep.spec(CONFIG, *args, smoke=quick)


def pretrain_arm(quick: bool) -> sweep.Arm:
  return sweep.Arm('pretrain', sweep.spec(BACKBONE, smoke=quick))


def pilot_arms(quick: bool, backbone: sweep.After) -> list[sweep.Arm]:
  """ATSS and IoU at constant lr, from the pretrained backbone (the pilot's `pretrain` run)."""
  return [sweep.Arm(name, spec(quick, ','.join(a for a in (ARMS[name][1], 'pilot') if a)),
                    {**ARMS[name][2], 'detector.backbone_init': backbone})
          for name in PILOT_ARMS]


def arms(quick: bool, choice: dict | None = None) -> list[sweep.Arm]:
  """The pretraining arm and the detector arms; with the pilot's `choice` they train its
  `steps` with the 1x schedule's shape (`schedule.one_x`), else the config's STEPS."""
  length = schedule.one_x(choice['steps']) if choice else {}
  return [pretrain_arm(quick)] + [
      sweep.Arm(name, spec(quick, arg),
                {**overrides, **length, 'detector.backbone_init': sweep.After('pretrain')})
      for name, (_, arg, overrides) in ARMS.items()]


def size_spread(metrics: dict) -> float:
  """max / min positives per gt over the size bins (1 = the same count for every size)."""
  v = [metrics[f'pos_per_gt_{b}'] for b in experiment.SIZE_BINS]
  return max(v) / max(min(v), 1e-9)


def claims_of(ap: dict, runs: dict, floor: stats.Floor, conv: dict) -> list[dict]:
  def has(*names):
    return all(n in runs for n in names)

  def on(*names) -> dict:  # the arms a claim compares: their AP, floor and convergence
    return dict(per_seed={n: ap[n] for n in names}, metric='AP', fmt='.3g', floor=floor,
                converged={n: conv[n] for n in names})

  m = EQUIVALENCE_MARGIN
  claims = []
  if has('atss', 'iou'):
    claims.append(stats.compare(
        'ATSS beats RetinaNet IoU assignment (with the in-gt step) with the same network (COCO '
        'AP, one anchor per location)', '37.0 -> 39.3 (+2.3)', a='atss', b='iou',
        direction='a>b', **on('atss', 'iou')))
  if has('fcos', 'iou'):
    claims.append(stats.compare(
        "The RetinaNet-FCOS gap is the assignment: FCOS's spatial + scale assignment beats IoU "
        'assignment on the same network', '37.0 -> 37.8 (Table 2)', a='fcos', b='iou',
        direction='a>b', **on('fcos', 'iou')))
  if has('atss', 'fcos'):
    claims.append(stats.compare(
        "ATSS beats FCOS's spatial + scale assignment on the same network",
        '37.8 -> 39.3 (Tables 2, 5)', a='atss', b='fcos', direction='a>b',
        **on('atss', 'fcos')))
  if has('atss_a9', 'atss'):
    claims.append(stats.equivalent(
        f'With ATSS, 9 anchors per location give the same AP as one: |AP(#A = 9) - AP(#A = 1)| '
        f'< {m:g} AP', 'roughly equal (Table 7)', a='atss_a9', b='atss', margin=m,
        **on('atss_a9', 'atss')))
  if has('atss_k15', 'atss'):
    claims.append(stats.equivalent(
        f"ATSS AP is robust to topk within the paper's robust range: |AP(k = 15) - AP(k = 9)| < "
        f'{m:g} AP', 'robust for k = 7..17 (Table 3)', a='atss_k15', b='atss', margin=m,
        **on('atss_k15', 'atss')))
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
  return claims


def analyse(runs: dict[str, list[sweep.Run]], quick: bool, out: pathlib.Path,
            pilot: dict[str, list[sweep.Run]] | None = None, choice: dict | None = None
            ) -> dict:
  pretrained = runs.get('pretrain', [])
  runs = {n: rs for n, rs in runs.items() if n in ARMS}
  ap = sweep.metric(runs, 'AP')
  config = sweep.load_config(spec(quick))
  fl = floors.ap_floors(config)
  floor = stats.Floor('AP of the val gt boxes with random classes and scores',
                      fl['random class']['AP'], FLOOR_MARGIN)
  conv = {a: stats.convergence(sweep.curves(rs, detres.CURVE)[1], CONVERGENCE_TOL)
          for a, rs in runs.items()}
  claims = claims_of(ap, runs, floor, conv)
  n_seeds = len(next(iter(runs.values())))
  length = choice['steps'] if choice else config.train.steps
  pilot = detres.detectors(pilot or {})
  rows = [detres.metrics_row(LABELS[n], ap[n], rs)
          + [PAPER_AP.get(n, ''), round(conv[n]['improvement'], 2) + 0.0]
          for n, rs in runs.items()]
  rows += detres.floor_rows(fl, 2)
  bins = experiment.SIZE_BINS
  tables = [
      res.table(f'COCO metrics on the {config.data.num_val} validation canvases after {length} '
                f'steps: seed mean, 95% interval half-width, per seed ({n_seeds} seeds); '
                f'paper: COCO minival AP',
                ['arm', 'AP', '+-95%', 'AP per seed', *evaluation.METRICS[1:], 'paper AP',
                 'AP gain, last 20% of steps'], rows),
      res.table('Positives per validation gt by size (sqrt area < 16 / 16-32 / > 32 px); a '
                'function of the anchors and gts, the same on every seed',
                ['arm', *bins, 'all', 'gts with no positive', 'max / min over sizes'],
                [[LABELS[n], *(round(rs[0].metrics[f'pos_per_gt_{b}'], 2) for b in bins),
                  round(rs[0].metrics['pos_per_gt'], 2), round(rs[0].metrics['no_pos_share'], 3),
                  round(size_spread(rs[0].metrics), 3)] for n, rs in runs.items()]),
  ]
  if pilot:
    tables.append(detres.pilot_table(pilot, choice['plateau_steps'], length, LABELS, PLATEAU_TOL))
  plot = detres.figure(out / 'atss.png', ap, runs, pilot, LABELS, floor.value, length)
  t = config.train
  notes = [
      f'Floor: COCO AP of the validation gt boxes detected with a uniformly random class and '
      f'score (mean of 5 draws); an AP claim is tested only when both arms beat it by '
      f'{FLOOR_MARGIN:g} AP. The every-class row (each gt box once per class, one score) is '
      'perfect localisation without class knowledge, for scale.',
      detres.convergence_note(CONVERGENCE_TOL),
      detres.acceptance(runs, conv, LABELS),
      detres.pretraining_note(pretrained),
      f'Scale: 64x64 canvases of 1-4 MNIST digits, {config.data.num_train} training / '
      f'{config.data.num_val} validation images, {length} SGD steps of batch {t.batch_size}, '
      'strides 4/8/16 with one anchor of 4x the stride per location (9 in the #A = 9 arm), '
      'a GroupNorm convnet backbone pretrained as a digit classifier; see the README '
      'deviations.',
  ]
  if pilot:
    notes.insert(3, detres.pilot_note(pilot, LABELS, PLATEAU_TOL, length))
  if quick:
    notes.append('QUICK MODE: smoke configs, numbers meaningless.')
  return {'claims': claims, 'tables': tables, 'plots': [plot], 'notes': notes}


def main(argv=None) -> dict:
  """Pretraining (every seed), the pilot, then the main arms at the pilot's length."""
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv, QUICK_SEEDS,
                    detres.pilot(pretrain_arm, pilot_arms, PLATEAU_TOL))


if __name__ == '__main__':
  main()
