"""ATSS reproduction: a quick detector arm (from its pretrained backbone) run by the sweep runner
equals the same command run by `python -m common.main` (bit-identical result.json, COCO AP
logged at every eval), the arms' configs, and the analysis of hand-made runs."""

import json
import shlex

import jax
import pytest

from common import experiment, sweep
from common.detection import evaluation
from papers.atss import experiment as atss_experiment
from papers.atss import reproduce
from tests.testutil import run_main


@pytest.mark.slow
def test_sweep_run_equals_common_main(tmp_path):
  arms = {a.name: a for a in reproduce.arms(quick=True, choice={'steps': 5})}
  runs = sweep.run_sweep([arms['pretrain'], arms['iou']], [1], str(tmp_path / 'sweep'))
  pre, run = runs['pretrain'][0], runs['iou'][0]
  assert 0 <= pre.metrics['accuracy'] <= 1
  assert f'--config.detector.backbone_init={pre.workdir}' in run.command
  assert '--config.train.steps=5' in run.command and '--config.seed=1' in run.command
  args = [a for a in shlex.split(run.command)[3:] if not a.startswith('--workdir=')]
  proc = run_main(*args, f'--workdir={tmp_path / "main"}', devices=jax.device_count())
  assert proc.returncode == 0, proc.stderr[-3000:]
  here, there = experiment.read_result(run.workdir), experiment.read_result(tmp_path / 'main')
  assert here == there and here['metrics'] == run.metrics
  steps, ap = run.history('eval/AP')
  assert steps == [1, 2, 3, 4, 5] and ap[-1] == run.metrics['AP']
  assert {f'pos_per_gt_{b}' for b in atss_experiment.SIZE_BINS} <= set(run.metrics)


def test_arm_configs():
  arms = {a.name: a for a in reproduce.arms(quick=False, choice={'steps': 1800})}
  assert list(arms) == ['pretrain', *reproduce.ARMS]
  for name, arm in list(arms.items())[1:]:
    assert arm.overrides['detector.backbone_init'] == sweep.After('pretrain')
    config = sweep.load_config(arm.config, {**arm.overrides, 'detector.backbone_init': ''})
    assert config.train.steps == 1800 and config.optim.decay_steps == (1200, 1600)
    assert config.data.num_train == 20_000 and config.data.num_val == 1000
    a = len(config.detector.aspect_ratios) * len(config.detector.scales)
    assert (a == 9) == (name == 'atss_a9')
  names = {n: sweep.load_config(arms[n].config, {**arms[n].overrides,
                                                 'detector.backbone_init': ''}).assigner
           for n in reproduce.ARMS}
  assert names['iou'].name == 'iou' and names['iou'].in_gt
  assert names['fcos'].name == 'fcos' and names['atss_k3'].topk == 3
  pilot = reproduce.pilot_arms(False, '/b')
  assert [p.name for p in pilot] == list(reproduce.PILOT_ARMS)
  assert all(sweep.load_config(p.config, p.overrides).optim.schedule == 'constant'
             for p in pilot)


def _run(tmp_path, arm, seed, ap, curve_gain, pos, root='main'):
  """A finished run as the analysis reads it: final metrics and an AP curve in metrics.jsonl."""
  workdir = tmp_path / root / arm / f'seed_{seed}'
  workdir.mkdir(parents=True)
  curve = [ap - 3 * curve_gain, ap - curve_gain, ap]
  workdir.joinpath('metrics.jsonl').write_text(
      ''.join(json.dumps({'step': 2 * (i + 1), 'eval/AP': v}) + '\n' for i, v in enumerate(curve)))
  metrics = {k: ap for k in evaluation.METRICS}
  metrics.update({f'pos_per_gt_{b}': p for b, p in zip(atss_experiment.SIZE_BINS, pos,
                                                        strict=True)},
                 pos_per_gt=sum(pos) / 3, no_pos_share=0.0)
  return sweep.Run(arm, seed, str(workdir), 'python -m common.main ...', metrics)


def test_analysis_of_hand_made_runs(tmp_path):
  ap = {'atss': [50.0, 51.0, 52.0], 'iou': [48.0, 49.0, 50.5],  # ATSS ahead by 2, 2, 1.5
        'fcos': [49.0, 50.0, 51.0],  # FCOS between: 1 above IoU (0.5 on seed 2), 1 below ATSS
        'atss_a9': [50.2, 50.8, 52.1],  # within 0.2 of #A = 1
        'atss_k15': [50.1, 50.9, 52.05],  # within 0.1 of k = 9
        'atss_k3': [48.0, 48.5, 50.2]}  # k = 9 ahead by 2, 2.5, 1.8
  pos = {'atss': (4.0, 4.5, 5.0), 'iou': (3.0, 3.5, 4.5), 'fcos': (2.0, 4.0, 8.0),
         'atss_a9': (5.0, 5.0, 5.0), 'atss_k15': (6.0, 6.0, 6.0), 'atss_k3': (2.0, 2.0, 2.0)}
  gain = dict.fromkeys(ap, 0.1) | {'atss_k3': 2.0}  # k = 3 still improving
  runs = {a: [_run(tmp_path, a, s, v, gain[a], pos[a]) for s, v in enumerate(values)]
          for a, values in ap.items()}
  runs['pretrain'] = [sweep.Run('pretrain', s, '', '', {'accuracy': 0.98}) for s in range(3)]
  pilot = {'atss': [_run(tmp_path, 'atss', 0, 40.0, 0.0, pos['atss'], 'pilot')],
           'iou': [_run(tmp_path, 'iou', 0, 38.0, 0.0, pos['iou'], 'pilot')]}
  out = reproduce.analyse(runs, quick=True, out=tmp_path, pilot=pilot,
                          choice={'steps': 5, 'plateau_steps': {'atss': 2, 'iou': 2}})
  verdicts = {c['claim'].split(':')[0].split(' (')[0]: c['verdict'] for c in out['claims']}
  assert verdicts == {
      'ATSS beats RetinaNet IoU assignment': 'reproduced',
      'The RetinaNet-FCOS gap is the assignment': 'reproduced',
      "ATSS beats FCOS's spatial + scale assignment on the same network": 'reproduced',
      'With ATSS, 9 anchors per location give the same AP as one': 'reproduced',
      "ATSS AP is robust to topk within the paper's robust range": 'reproduced',
      'Too small a topk lowers ATSS AP': 'not tested',
      'ATSS gives a flatter number of positives per gt over object sizes than IoU assignment':
          'reproduced'}
  k3 = next(c for c in out['claims'] if c['claim'].startswith('Too small'))
  assert any('atss_k3 still improving' in r for r in k3['reasons'])
  floor = out['claims'][0]['floor']
  assert floor['ok'] and 0 < floor['value'] < 40 and floor['margin'] == reproduce.FLOOR_MARGIN
  assert (tmp_path / out['plots'][0]).stat().st_size > 1000
  rows = {r[0]: r for r in out['tables'][0]['rows']}
  assert rows['ATSS, k = 9'][1] == 51.0 and rows['ATSS, k = 9'][-2] == '39.3'
  assert out['tables'][2]['rows'][0][:2] == ['ATSS, k = 9', 2]  # the pilot table
  acceptance = next(n for n in out['notes'] if n.startswith('Acceptance'))
  assert 'NOT met' in acceptance and 'ATSS, k = 3: AP50 48.9 (below 50)' in acceptance
  assert any('98.0%' in n for n in out['notes'])
