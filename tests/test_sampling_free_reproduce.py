"""Sampling-Free reproduction: a quick arm (from its pretrained backbone) run by the sweep runner
equals the same command run by `python -m common.main` (bit-identical result.json), the arms'
configs, and the analysis of hand-made runs."""

import json
import shlex

import jax
import pytest

from common import experiment, sweep
from common.detection import evaluation
from papers.sampling_free import reproduce
from tests.testutil import run_main


@pytest.mark.slow
def test_sweep_run_equals_common_main(tmp_path):
  arms = {a.name: a for a in reproduce.arms(quick=True, choice={'steps': 5})}
  runs = sweep.run_sweep([arms['pretrain'], arms['sampling_free']], [0],
                         str(tmp_path / 'sweep'))
  pre, run = runs['pretrain'][0], runs['sampling_free'][0]
  assert f'--config.detector.backbone_init={pre.workdir}' in run.command
  assert run.command.split()[3].endswith('mnist_canvas.py:sampling_free,smoke')
  args = [a for a in shlex.split(run.command)[3:] if not a.startswith('--workdir=')]
  proc = run_main(*args, f'--workdir={tmp_path / "main"}', devices=jax.device_count())
  assert proc.returncode == 0, proc.stderr[-3000:]
  here, there = experiment.read_result(run.workdir), experiment.read_result(tmp_path / 'main')
  diff = {k: (v, there['metrics'].get(k)) for k, v in here['metrics'].items()
          if there['metrics'].get(k) != v}
  assert not diff
  assert here == there and here['metrics'] == run.metrics
  steps, ap = run.history('eval/AP')
  assert steps == [1, 2, 3, 4, 5] and ap[-1] == run.metrics['AP'] and 'AP_thr005' in run.metrics


def test_arm_configs():
  arms = {a.name: a for a in reproduce.arms(quick=False, choice={'steps': 900})}
  assert list(arms) == ['pretrain', *reproduce.ARMS]
  configs = {n: sweep.load_config(a.config, {**a.overrides, 'detector.backbone_init': ''})
             for n, a in arms.items() if n != 'pretrain'}
  m = {n: c.method for n, c in configs.items()}
  assert (m['focal'].loss, m['focal'].bias, m['focal'].threshold) == ('focal', 'prior', 'fixed')
  assert configs['focal'].post.nms_threshold == 0.4
  assert (m['bce'].loss, m['bce'].bias, m['bce'].guided_scaling) == ('bce', 'zero', False)
  assert (m['bce_bias'].bias, m['bce_bias'].guided_scaling) == ('optimal', False)
  assert (m['sampling_free'].guided_scaling, m['sampling_free'].threshold) == (True, 'adaptive')
  assert all(c.post.nms_threshold == 0.55 for n, c in configs.items() if n != 'focal')
  assert all(c.train.steps == 900 and c.data.num_train == 20_000 for c in configs.values())


def _run(tmp_path, arm, seed, ap, ablation_ap, root='main'):
  workdir = tmp_path / root / arm / f'seed_{seed}'
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
        'bce_bias': [30.0, 31.0, 33.0],
        'sampling_free': [40.2, 40.9, 42.3]}  # focal + 0.2, -0.1, 0.3
  ablation = {'sampling_free': [35.0, 36.0, 37.5]}  # GLS at 0.05: 5, 5, 4.5 above BCE + bias
  runs = {a: [_run(tmp_path, a, s, v, ablation.get(a, [0] * 3)[s]) for s, v in enumerate(vals)]
          for a, vals in ap.items()}
  runs['pretrain'] = [sweep.Run('pretrain', s, '', '', {'accuracy': 0.97}) for s in range(3)]
  pilot = {n: [_run(tmp_path, n, 0, 30.0, 0.0, 'pilot')] for n in reproduce.PILOT_ARMS}
  out = reproduce.analyse(runs, quick=True, out=tmp_path, pilot=pilot,
                          choice={'steps': 5, 'plateau_steps': {'focal': 2, 'sampling_free': 4}})
  assert [c['verdict'] for c in out['claims']] == ['reproduced'] * 5
  noninferior, bce, bias, gls, threshold = out['claims']
  assert noninferior['kind'] == 'noninferiority' and noninferior['margin'] == 1.0
  assert '1 AP below' in noninferior['claim']
  assert bce['reference'] == pytest.approx(noninferior['floor']['value'])
  assert bias['a'] == 'bce_bias' and bias['floor'] is None
  assert gls['per_seed'][reproduce.GLS] == pytest.approx([35.0, 36.0, 37.5])
  assert threshold['b'] == reproduce.GLS
  assert (tmp_path / out['plots'][0]).stat().st_size > 1000
  assert out['tables'][2]['rows'][1][:2] == [reproduce.ARMS['sampling_free'], 4]


def test_collapse_and_bias_not_tested_when_nothing_trains(tmp_path):
  runs = {a: [_run(tmp_path, a, s, 0.0, 0.0) for s in range(3)] for a in reproduce.ARMS}
  out = reproduce.analyse(runs, quick=True, out=tmp_path)
  assert [c['verdict'] for c in out['claims']] == ['not tested'] * 5
  assert 'focal loss is not beyond the floor' in out['claims'][1]['ours']
  assert 'BCE + bias is not beyond the floor' in out['claims'][2]['ours']
