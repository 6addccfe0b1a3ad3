"""The benchmark script's quick form runs every entry (it asserts nothing about speed)."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.testutil import ROOT

PAPER_ENTRIES = ('parscale', 'edlm', 'redi', 'rs2', 'atss', 'sampling_free', 'unpg')
FIELDS = ('entry', 'shape', 'compile_s', 'step_s', 'flops', 'flop_per_s', 'roofline_fraction',
          'loader_s', 'loader_fraction', 'torch_step_s', 'jax_speedup_over_torch',
          'dp8_over_dp1')


def test_quick_benchmark_runs_every_entry(tmp_path):
  pytest.importorskip('torch', reason='compares with PyTorch: pip install -e .[bench]')
  out = tmp_path / 'bench.json'
  env = dict(os.environ, XLA_FLAGS='')  # the machine's own devices, as the benchmark runs
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.run', '--paper=all', '--quick',
                         f'--out={out}'], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  from benchmarks.run import ENTRIES
  names = [r['entry'] for r in result['rows']]
  assert names == list(ENTRIES)
  assert {'lm', 'convnet', *PAPER_ENTRIES} <= set(names)
  assert result['roofline_flop_per_s'] > 0
  for row in result['rows']:  # one supervised training step per entry
    missing = [f for f in FIELDS if f not in row]
    assert not missing, f'{row["entry"]} lacks {missing}'
    assert row['flops'] > 0 and row['step_s'] > 0 and row['roofline_fraction'] > 0, row
    assert row['compile_s'] > 0 and row['loader_s'] > 0, row
    if row['torch_step_s'] is not None:  # PyTorch (the `bench` extra) is installed
      assert row['torch_step_s'] > 0 and row['jax_speedup_over_torch'] > 0, row
  assert [r['entry'] for r in result['rl_rows']] == ['props/ppo', 'props/props']
  for row in result['rl_rows']:  # PROPS/PPO: JAX 1 seed, vmapped (subprocess), PyTorch
    assert row['jax_env_steps_per_s'] > 0 and row['torch_env_steps_per_s'] > 0
    assert row['jax_grad_steps'] == row['torch_grad_steps'] > 0  # same work, no early stop
    assert row['vmap_status'] in ('ok', 'hang'), row


def test_unknown_entry_is_refused():
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.run', '--paper=nope', '--quick'],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and '--paper=nope' in proc.stderr


def test_one_paper_run_merges_into_existing_results(tmp_path):
  from benchmarks.run import merge_results
  path = tmp_path / 'results.json'
  path.write_text(json.dumps({'command': 'all', 'date': 'd0', 'roofline_flop_per_s': 1.0, 'rows': [
      {'entry': 'lm', 'step_s': 1.0}, {'entry': 'convnet', 'step_s': 2.0}]}))
  new = {'command': 'props', 'date': 'd1', 'rows': [{'entry': 'convnet', 'step_s': 3.0}],
         'rl_rows': [{'entry': 'props/ppo'}]}
  merged = merge_results(path, new)
  assert [(r['entry'], r['step_s'], r['command'], r['date']) for r in merged['rows']] == [
      ('lm', 1.0, 'all', 'd0'), ('convnet', 3.0, 'props', 'd1')]
  assert [(r['entry'], r['command']) for r in merged['rl_rows']] == [('props/ppo', 'props')]
  assert merged['command'] == 'props'
  rl_only = merge_results(path, {'command': 'rl', 'date': 'd2', 'roofline_flop_per_s': 2.0,
                                 'rows': [], 'rl_rows': [{'entry': 'props/ppo'}]})
  assert (rl_only['command'], rl_only['date'], rl_only['roofline_flop_per_s']) == ('all', 'd0', 1.0)
  assert [r['command'] for r in rl_only['rl_rows']] == ['rl']


def test_interleaved_medians_time_every_contender_in_turns():
  from benchmarks import harness
  calls = []
  fns = {'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')}
  turns = []
  medians = harness.interleaved_medians(fns, repeats=4, rounds=2, before=turns.append)
  assert set(medians) == {'a', 'b'} and all(m >= 0 for m in medians.values())
  assert turns == ['a', 'b', 'a', 'b']  # a turn each per round, `before` ahead of each
  # round 1: 2 warm-up + 2 timed calls each; round 2: 1 warm-up + 2 timed
  assert calls == ['a'] * 4 + ['b'] * 4 + ['a'] * 3 + ['b'] * 3


def test_seeds_benchmark_picks_the_largest_block_the_arm_allows():
  from benchmarks import seeds
  from common import sweep
  # log every 50, eval 100, checkpoint 400 -> 10 steps per dispatch; logging every 5 -> 5;
  # a block of 3 -> 1; an arm without `train.steps_per_dispatch` -> 1
  every = {'train.log_every': 50, 'train.eval_every': 100, 'train.checkpoint_every': 400}
  lm = 'configs/parscale/char_lm.py'
  assert seeds._block(sweep.Arm('p', lm, every), 10) == 10
  assert seeds._block(sweep.Arm('r', lm, every | {'train.log_every': 5}), 10) == 5
  assert seeds._block(sweep.Arm('r', lm, every), 3) == 1
  assert seeds._block(sweep.Arm('b', 'configs/props/bandit.py'), 10) == 1


def test_seeds_table_shows_every_measured_way():
  from common import report
  row = {'paper': 'x', 'arm': 'a', 'seeds': 2, 'best': 'k steps per dispatch', 'block': 5,
         'one after another': {'wall_s': 60.0, 'seeds_per_min': 2.0, 'load_before': 0.5},
         'side by side': {'wall_s': 40.0, 'seeds_per_min': 3.0, 'load_before': None},
         'k steps per dispatch': {'wall_s': 30.0, 'seeds_per_min': 4.0, 'load_before': 1.0}}
  text = report.seeds_table({'commands': ['c'], 'date': 'd', 'machine': 'm', 'rows': [row]})
  assert '| x | a | 2 | 2.00 (60 s, load 0.5) | 3.00 (40 s, load n/a) |  | 4.00 (30 s, load 1.0, ' \
         'k=5) | k steps per dispatch |' in text


def test_vmapped_and_per_device_seeds_equal_each_seed_stepped_alone():
  """The throughput benchmark's vmapped and one-seed-per-device ways run the same computation as
  one seed at a time."""
  import jax
  import numpy as np
  from jax.sharding import Mesh

  from benchmarks import throughput
  from benchmarks.run import ENTRIES
  workload = ENTRIES['rs2'](True)
  step, state = workload.step_and_state()
  state2, batches = throughput.stacked(state, 2), throughput.seed_batches(workload, 2)
  vmapped, _ = jax.jit(jax.vmap(step))(state2, batches)
  mesh = Mesh(np.array(jax.devices()[:2]), ('seed',))
  sharded, _ = jax.jit(throughput.per_device(step, mesh))(state2, batches)
  for i in range(2):
    alone, _ = jax.jit(step)(state, workload.loader(i))
    leaves = (jax.tree.leaves(t.params) for t in (alone, vmapped, sharded))
    for a, v, s in zip(*leaves, strict=True):
      np.testing.assert_allclose(np.asarray(v[i]), np.asarray(a), rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(np.asarray(s[i]), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_quick_throughput_benchmark_times_every_way(tmp_path):
  pytest.importorskip('torch', reason='compares with PyTorch: pip install -e .[bench]')
  out = tmp_path / 'throughput.json'
  env = dict(os.environ, XLA_FLAGS='')
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.throughput', '--paper=rs2', '--quick',
                         '--seeds=2', f'--out={out}'], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  (row,) = result['rows']
  assert set(row['jax']) == {'one seed', 'vmapped', 'one seed per device', 'process per core',
                             'process per core, pinned'}
  assert set(row['torch']) == {'one process', 'process per core'}
  assert set(row['hlo']) == {'one seed', 'vmapped', 'one seed per device'}
  hlo = row['hlo']  # rs2's conv net: vmapping seeds makes every convolution a grouped one
  assert hlo['one seed']['grouped_convolutions'] == 0 < hlo['one seed']['convolutions']
  assert hlo['vmapped']['grouped_convolutions'] == hlo['vmapped']['convolutions']
  for way in [*row['jax'].values(), *row['torch'].values()]:  # seeds/min from the step time
    assert way['seeds_per_min'] == pytest.approx(
        60 * way['seeds'] / way['step_s'] / row['steps_per_seed'])
  assert row['best_ratio'] == pytest.approx(row['jax'][row['jax_best']]['seeds_per_min']
                                            / row['torch'][row['torch_best']]['seeds_per_min'])
  from common import report
  text = report.throughput_tables(result, {})
  assert '| rs2 |' in text and 'JAX one seed per device' in text and 'grouped' in text


def test_workers_released_together_or_ended_with_one_line():
  from benchmarks.throughput import release_together

  def workers(*codes):
    return [subprocess.Popen([sys.executable, '-c', c], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for c in codes]

  echo = "print('ready', flush=True); print(input() + ' {}', flush=True)"
  chatty = "print('notice: a line before ready'); " + echo.format(2)
  assert release_together(workers(echo.format(1), chatty), 'w', 30) == ['go 1', 'go 2']
  with pytest.raises(RuntimeError, match='^w failed: ValueError: boom$'):
    release_together(workers(echo.format(1), "raise ValueError('boom')"), 'w', 30)
  hung = workers(echo.format(1), 'import time; time.sleep(60)')  # never ready
  t = time.monotonic()
  with pytest.raises(RuntimeError, match=r'^w made no progress in 2 s'):
    release_together(hung, 'w', 2)
  assert time.monotonic() - t < 10 and all(p.wait(5) is not None for p in hung)  # killed
  stuck = workers("print('ready', flush=True); input(); import time; time.sleep(60)")
  with pytest.raises(RuntimeError, match='made no progress'):  # hangs after 'go'
    release_together(stuck, 'w', 2)


def test_profile_categories_of_xla_cpu_kernels():
  from benchmarks import profile
  assert profile.op_kind('transpose_copy_fusion.12') == 'transpose_copy_fusion'
  assert [profile.category(k) for k in (
      'convolution', 'conv_general_dilated', 'ynn_fusion', 'bitcast_reduce_fusion',
      'wrapped_reduce', 'transpose_copy_fusion', 'copy', 'add_maximum_fusion')] == [
      'matmul / conv', 'matmul / conv', 'matmul / conv', 'reduction', 'reduction',
      'layout copy', 'layout copy', 'elementwise / other']


def test_props_row_counts_env_steps_as_steps():
  from benchmarks import throughput
  rl = {'total_steps': 600, 'vmap_seeds': 3, 'load_avg_1min_start': 0.5, 'shape': 'CartPole',
        'jax_compile_s': 2.0, 'jax_env_steps_per_s': 100.0, 'torch_env_steps_per_s': 20.0,
        'torch_threads': 1, 'vmap_status': 'ok', 'vmap_env_steps_per_s': 240.0}
  row = throughput.props_row(rl)
  # a seed is 600 env steps: 100 steps/s -> 10 seeds/min; vmapped 240 steps/s of 3 seeds -> 24
  assert row['jax']['one seed']['seeds_per_min'] == pytest.approx(10.0)
  assert row['jax']['vmapped']['seeds_per_min'] == pytest.approx(24.0)
  assert row['torch']['one process']['seeds_per_min'] == pytest.approx(2.0)
  assert (row['jax_best'], row['torch_best']) == ('vmapped', 'one process')
  assert row['step_ratio'] == pytest.approx(5.0) and row['best_ratio'] == pytest.approx(12.0)


def test_hlo_counts_by_hand():
  from benchmarks import harness
  hlo = '\n'.join([
      '  %c.1 = f32[8,14,14,2] convolution(%a, %b), window={size=3x3}, dim_labels=b01f_01io->b01f',
      '  %c.2 = f32[8,14,14,4] convolution(%a, %w), dim_labels=b01f_01io->b01f, '
      'feature_group_count=2',
      '  %c.3 = f32[3,3,1,16] convolution(%x, %y), batch_group_count=16',
      '  %t = f32[2,8] transpose(%z), dimensions={1,0}',
      '  %k = f32[2,8] copy(%t)'])
  assert harness.hlo_counts(hlo) == {'convolutions': 3, 'grouped_convolutions': 2,
                                     'transposes': 1, 'copies': 1}
