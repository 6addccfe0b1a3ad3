"""The PROPS reproduction through the shared sweep: one quick arm in-process equals its
`common.main` command bit for bit, the quick reproduction writes judged claims and its runs
rerun to the same numbers, and vmapped seeds equal seeds trained one by one."""

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

from common import experiment, stats, sweep
from common.config import ConfigError
from common.metrics import read_metrics, without_perf
from papers.props import reproduce
from tests.testutil import ROOT, run_main, xla_flags


@pytest.mark.slow
def test_quick_arm_in_process_equals_common_main(tmp_path):
  """The Hopper PROPS smoke arm (2 vmapped seeds) through `run_sweep` and through its command."""
  arm = next(a for a in reproduce.arms(quick=True) if a.name == 'hopper_props')
  runs = sweep.run_sweep([arm], [0, 1], str(tmp_path / 'sweep'))['hopper_props']
  assert [r.seed for r in runs] == [0, 1] and runs[0].workdir == runs[1].workdir
  args = shlex.split(runs[0].command)[3:]  # after 'python -m common.main'
  workdir = tmp_path / 'main'
  proc = run_main(*[a for a in args if not a.startswith('--workdir=')], f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  ours, theirs = experiment.read_result(runs[0].workdir), experiment.read_result(str(workdir))
  assert ours['config'] == theirs['config'] and ours['metrics'] == theirs['metrics']
  assert without_perf(read_metrics(runs[0].workdir)) == without_perf(read_metrics(workdir))
  assert [r.metrics for r in runs] == ours['metrics']['per_seed']
  se_keys = {f'{r}sampling_error{h}' for r in ('', 'reference_') for h in ('', '_half')}
  assert set(runs[0].metrics) == {'initial_return', 'auc', 'final_return', *se_keys,
                                  *{f'final_{k}' for k in se_keys}}


def _reproduce_quick(tmp_path, name: str) -> dict:
  env = {**os.environ, 'XLA_FLAGS': xla_flags(1)}
  proc = subprocess.run([sys.executable, '-m', 'papers.props.reproduce', '--quick',
                         f'--workdir={tmp_path / name}', f'--out={tmp_path / name / "out"}'],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads((tmp_path / name / 'out' / 'results.json').read_text())


@pytest.mark.slow
def test_reproduce_quick_writes_judged_claims_and_reruns_identically(tmp_path):
  """A quick reproduction writes judged claims; rerun in a fresh workdir, an expert and the
  fixed-target arm that depends on it give the same numbers, bit for bit."""
  results = _reproduce_quick(tmp_path, 'first')
  assert len(results['claims']) == 12
  assert {c['verdict'] for c in results['claims']} <= set(stats.VERDICTS)
  auc = [c for c in results['claims'] if 'return-curve area' in c['claim']]
  assert all(c['floor'] is not None and c['converged'] for c in auc)
  assert set(results['runs']) == {a.name for a in reproduce.arms(quick=True)}
  assert all(len(v) == 5 for v in results['runs'].values())  # the default seeds
  assert (tmp_path / 'first' / 'out' / 'props.png').stat().st_size > 10_000
  rerun = [a for a in reproduce.arms(quick=True) if a.name in ('acrobot_ppo', 'fixed_props')]
  again = sweep.run_sweep(rerun, results['provenance']['seeds'], str(tmp_path / 'second'))
  for arm in again:
    assert [r.metrics for r in again[arm]] == [r['metrics'] for r in results['runs'][arm]]


@pytest.mark.slow
def test_vmapped_seeds_equal_seeds_trained_one_by_one(tmp_path):
  """Two CartPole PROPS seeds in one vmapped run == each seed run alone (float tolerance:
  vmapped matmuls may sum in another order)."""
  spec = 'configs/props/cartpole.py:smoke'
  together = sweep.run_sweep([sweep.Arm('props', spec, vmap_seeds=True)], [0, 1],
                             str(tmp_path / 'together'))['props']
  alone = sweep.run_sweep([sweep.Arm('props', spec, {'num_seeds': 1})], [0, 1],
                          str(tmp_path / 'alone'))['props']
  for a, b in zip(together, alone, strict=True):
    assert a.seed == b.seed and a.metrics.keys() == b.metrics.keys()
    for key in a.metrics:
      np.testing.assert_allclose(a.metrics[key], b.metrics[key], rtol=1e-4, atol=1e-5,
                                 err_msg=f'seed {a.seed}: {key}')
  assert together[0].metrics != together[1].metrics  # the two seeds differ


def test_an_arm_runs_its_own_seeds(tmp_path):
  """`Arm.seeds` replaces the sweep's seeds for that arm (vmapped or not)."""
  spec = 'configs/props/bandit.py:smoke'
  runs = sweep.run_sweep([sweep.Arm('default', spec, vmap_seeds=True),
                          sweep.Arm('own', spec, vmap_seeds=True, seeds=(3, 4, 5)),
                          sweep.Arm('own_single', spec, seeds=(7,))], [0, 1], str(tmp_path))
  assert [r.seed for r in runs['default']] == [0, 1]
  assert [r.seed for r in runs['own']] == [3, 4, 5] and runs['own'][0].workdir.endswith('3-5')
  assert [r.seed for r in runs['own_single']] == [7]
  with pytest.raises(ConfigError, match='consecutive'):
    sweep.run_sweep([sweep.Arm('gap', spec, vmap_seeds=True, seeds=(0, 2))], [0], str(tmp_path))
