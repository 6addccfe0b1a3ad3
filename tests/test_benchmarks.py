"""The benchmark script's quick form runs (it asserts nothing about speed)."""

import json
import subprocess
import sys

from tests.testutil import ROOT


def test_quick_benchmark_runs_every_entry(tmp_path):
  out = tmp_path / 'bench.json'
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.run', '--paper=all', '--quick',
                         f'--out={out}'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  from benchmarks.run import ENTRIES
  assert [r['entry'] for r in result['rows']] == list(ENTRIES)
  for row in result['rows']:
    assert row['flops'] > 0 and row['step_s'] > 0 and row['roofline_fraction'] > 0
  assert [r['entry'] for r in result['rl_rows']] == ['props/ppo', 'props/props']
  for row in result['rl_rows']:  # PROPS/PPO: JAX 1 seed, vmapped (subprocess), PyTorch
    assert row['jax_env_steps_per_s'] > 0 and row['torch_env_steps_per_s'] > 0
    assert row['jax_grad_steps'] == row['torch_grad_steps'] > 0  # same work, no early stop
    assert row['vmap_status'] in ('ok', 'hang'), row


def test_one_paper_run_merges_into_existing_results(tmp_path):
  from benchmarks.run import merge_results
  path = tmp_path / 'results.json'
  path.write_text(json.dumps({'command': 'all', 'date': 'd0', 'rows': [
      {'entry': 'lm', 'step_s': 1.0}, {'entry': 'convnet', 'step_s': 2.0}]}))
  new = {'command': 'props', 'date': 'd1', 'rows': [{'entry': 'convnet', 'step_s': 3.0}],
         'rl_rows': [{'entry': 'props/ppo'}]}
  merged = merge_results(path, new)
  assert [(r['entry'], r['step_s'], r['command'], r['date']) for r in merged['rows']] == [
      ('lm', 1.0, 'all', 'd0'), ('convnet', 3.0, 'props', 'd1')]
  assert [(r['entry'], r['command']) for r in merged['rl_rows']] == [('props/ppo', 'props')]
