"""ATSS reproduction: a quick arm run by the sweep runner equals the same command run by
`python -m common.main` (bit-identical result.json, COCO AP logged at every eval), and the
analysis turns hand-made runs into the expected verdicts."""

import json

import pytest

from common import sweep
from common.detection import evaluation
from papers.atss import experiment as atss_experiment
from papers.atss import reproduce
from tests.testutil import assert_sweep_run_equals_its_command


@pytest.mark.slow
def test_sweep_run_equals_common_main(tmp_path):
  arm = next(a for a in reproduce.arms(quick=True) if a.name == 'iou')  # one with an override
  run = assert_sweep_run_equals_its_command(arm, 1, tmp_path)
  assert '--config.assigner.name=iou --config.seed=1' in run.command
  steps, ap = run.history('eval/AP')
  assert steps == [2, 4] and ap[-1] == run.metrics['AP']
  assert {f'pos_per_gt_{b}' for b in atss_experiment.SIZE_BINS} <= set(run.metrics)


def _run(tmp_path, arm, seed, ap, curve_gain, pos):
  """A finished run as the analysis reads it: final metrics and an AP curve in metrics.jsonl."""
  workdir = tmp_path / arm / f'seed_{seed}'
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
        'atss_k15': [50.1, 50.9, 52.05],  # within 0.1 of k = 9
        'atss_k3': [48.0, 48.5, 50.2]}  # k = 9 ahead by 2, 2.5, 1.8
  pos = {'atss': (4.0, 4.5, 5.0), 'iou': (3.0, 3.5, 4.5), 'atss_k15': (6.0, 6.0, 6.0),
         'atss_k3': (2.0, 2.0, 2.0)}
  gain = {'atss': 0.1, 'iou': 0.1, 'atss_k15': 0.1, 'atss_k3': 2.0}  # k = 3 still improving
  runs = {a: [_run(tmp_path, a, s, v, gain[a], pos[a]) for s, v in enumerate(values)]
          for a, values in ap.items()}
  out = reproduce.analyse(runs, quick=True, out=tmp_path)
  verdicts = {c['claim'].split(':')[0].split(' (')[0]: c['verdict'] for c in out['claims']}
  assert verdicts == {
      'ATSS beats RetinaNet IoU assignment with the same network': 'reproduced',
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
  assert rows['ATSS, k = 9'][1] == 51.0 and rows['ATSS, k = 9'][-2] == 39.3
