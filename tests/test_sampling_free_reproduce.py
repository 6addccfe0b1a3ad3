"""Sampling-Free reproduction: a quick arm run by the sweep runner equals the same command run
by `python -m common.main` (bit-identical result.json), and the analysis turns hand-made runs
into the expected verdicts."""

import json

import pytest

from common import sweep
from common.detection import evaluation
from papers.sampling_free import reproduce
from tests.testutil import assert_sweep_run_equals_its_command


@pytest.mark.slow
def test_sweep_run_equals_common_main(tmp_path):
  arm = next(a for a in reproduce.arms(quick=True) if a.name == 'sampling_free')
  run = assert_sweep_run_equals_its_command(arm, 0, tmp_path)
  assert '--config.arm=sampling_free' in run.command
  steps, ap = run.history('eval/AP')
  assert steps == [2, 4] and ap[-1] == run.metrics['AP'] and 'AP_thr005' in run.metrics


def _run(tmp_path, arm, seed, ap, ablation_ap):
  workdir = tmp_path / arm / f'seed_{seed}'
  workdir.mkdir(parents=True)
  curve = [ap / 2, ap - 0.1, ap]
  workdir.joinpath('metrics.jsonl').write_text(
      ''.join(json.dumps({'step': 2 * (i + 1), 'eval/AP': v}) + '\n' for i, v in enumerate(curve)))
  metrics = {k: ap for k in evaluation.METRICS}
  metrics.update({k + '_thr005': ablation_ap for k in evaluation.METRICS},
                 prior=1e-3, threshold=1.1e-2, grad_ratio_step0=1.0, grad_ratio_final=1.0)
  return sweep.Run(arm, seed, str(workdir), 'python -m common.main ...', metrics)


def test_analysis_of_hand_made_runs(tmp_path):
  ap = {'focal': [40.0, 41.0, 42.0], 'bce': [0.0, 0.0, 0.0],
        'sampling_free': [40.2, 40.9, 42.3]}  # focal + 0.2, -0.1, 0.3
  runs = {a: [_run(tmp_path, a, s, v, v - 5.0) for s, v in enumerate(values)]
          for a, values in ap.items()}
  out = reproduce.analyse(runs, quick=True, out=tmp_path)
  assert [c['verdict'] for c in out['claims']] == ['reproduced'] * 3
  noninferior, bce, threshold = out['claims']
  assert noninferior['kind'] == 'noninferiority' and noninferior['margin'] == 1.0
  assert '1 AP below' in noninferior['claim']
  assert bce['reference'] == pytest.approx(out['claims'][0]['floor']['value'])
  assert threshold['per_seed'][reproduce.ABLATION] == pytest.approx([35.2, 35.9, 37.3])
  assert (tmp_path / out['plots'][0]).stat().st_size > 1000


def test_bce_collapse_is_not_tested_when_focal_loss_does_not_train_either(tmp_path):
  runs = {a: [_run(tmp_path, a, s, 0.0, 0.0) for s in range(3)]
          for a in ('focal', 'bce', 'sampling_free')}
  out = reproduce.analyse(runs, quick=True, out=tmp_path)
  assert [c['verdict'] for c in out['claims']] == ['not tested'] * 3
  assert 'focal loss is not beyond the floor' in out['claims'][1]['ours']
