"""RS2 reproduction: one quick arm through the sweep == the same command through common.main,
time to the target and the stopping point on hand-made eval curves, the arms as configs."""

import dataclasses
import json
import shlex

import jax
import pytest

from common import experiment, sweep
from papers.rs2 import reproduce
from tests.testutil import run_main


def fake_run(tmp_path, name, evals, pretrain_steps=0, seed=0, first_seed=0):
  """A run of `seed`, member seed - first_seed of a vmapped run with those eval curves."""
  workdir = tmp_path / name
  workdir.mkdir()
  (workdir / 'config.json').write_text(json.dumps({'seed': first_seed}))
  key = f'eval/accuracy/seed{seed - first_seed}'
  with open(workdir / 'metrics.jsonl', 'w') as f:
    for step, acc in evals:
      f.write(json.dumps({'step': step, key: acc, 'eval/accuracy/seed9': 0.0}) + '\n')
  return sweep.Run(name, seed, str(workdir), '', {'pretrain_steps': pretrain_steps})


def test_steps_to_target_counts_pretraining(tmp_path):
  run = fake_run(tmp_path, 'el2n', [(50, 0.5), (100, 0.91), (150, 0.9), (200, 0.95)], 500)
  assert reproduce.steps_to(run, 0.9) == 600  # first eval at or above 0.9, plus pre-training
  assert reproduce.steps_to(run, 0.95) == 700
  assert reproduce.steps_to(run, 0.96) is None
  plain = fake_run(tmp_path, 'rs2', [(50, 0.9)], seed=3, first_seed=2)  # member seed1
  assert reproduce.steps_to(plain, 0.9) == 50


def test_stopping_point_reads_the_long_run_at_the_budget(tmp_path):
  run = fake_run(tmp_path, 'full_long', [(200, 0.5), (400, 0.7), (600, 0.8)])
  assert reproduce.accuracy_at(run, 400) == 0.7
  with pytest.raises(ValueError, match='no evaluation at step 500'):
    reproduce.accuracy_at(run, 500)


def test_pilots_choose_the_lr_of_each_budget_and_the_arms_are_configs():
  pilots = reproduce.pilot_arms(quick=False)
  assert [a.name for a in pilots] == [reproduce.pilot_name(b, lr) for b in ('r10', 'r2')
                                      for lr in reproduce.LR_GRID]
  for arm in pilots:
    assert arm.vmap_seeds
    pilot = sweep.load_config(arm.config, arm.overrides)
    budget = arm.name.split('_')[1]
    assert pilot.data.num_val > 0 and pilot.optim.lr == arm.overrides['optim.lr']
    assert pilot.data.sampler.fraction == reproduce.BUDGETS[budget]
    assert pilot.data.sampler.mode == 'full'
  choice = {'r2': 0.05, 'r10': 0.025}
  arms = {a.name: a for a in reproduce.arms(quick=False, choice=choice)}
  assert set(arms) == {'pretrain', 'full_long'} | {
      f'{m}_{b}' for m in reproduce.METHODS for b in reproduce.BUDGETS}
  assert list(arms)[:3] == ['pretrain', 'el2n_r2', 'full_long']  # the longest run starts early
  assert all(a.vmap_seeds for a in arms.values())
  for budget, fraction in reproduce.BUDGETS.items():
    for method in reproduce.METHODS:
      arm = arms[f'{method}_{budget}']
      config = sweep.load_config(arm.config, arm.overrides | {
          'selection.pretrained_workdir': '/pre'} if method in reproduce.PRUNING else
          arm.overrides)
      assert config.data.sampler.fraction == fraction and config.data.num_val == 0
      assert config.optim.lr == choice[budget]
      if method in reproduce.PRUNING:
        assert arm.overrides['selection.pretrained_workdir'] == sweep.After('pretrain')
        assert config.selection.method == method and config.data.sampler.mode == 'static'
      else:
        mode = {'rs2': 'without_replacement', 'rs2_replacement': 'with_replacement'}.get(method,
                                                                                     method)
        assert config.data.sampler.mode == mode and config.selection.method == 'none'
  assert arms['full_long'].overrides == {'optim.lr': choice['r10']}
  # DeepCore's selection training at its own fixed lr (the official per-example step)
  assert not arms['pretrain'].overrides
  for name in ('full_long', 'pretrain'):
    assert sweep.load_config(arms[name].config).data.sampler.mode == 'full'
  assert sweep.load_config(arms['pretrain'].config).selection.record_train_correct


def test_choose_takes_the_best_seed_mean_validation_accuracy():
  def runs(lr, accs):
    return [sweep.Run('p', s, '', '', {'lr': lr, 'accuracy': a}) for s, a in enumerate(accs)]

  pilot = {reproduce.pilot_name('r2', 0.01): runs(0.01, [0.8, 0.9]),
           reproduce.pilot_name('r2', 0.02): runs(0.02, [0.95, 0.7]),
           reproduce.pilot_name('r2', 0.04): runs(0.04, [0.86, 0.86]),
           reproduce.pilot_name('r10', 0.01): runs(0.01, [0.9, 0.9]),
           reproduce.pilot_name('r10', 0.02): runs(0.02, [0.9, 0.9])}  # a tie: the smaller lr
  assert reproduce.choose(pilot) == {'r2': 0.04, 'r10': 0.01}
  assert reproduce.pilot_grid(pilot, 'r2') == {0.01: [0.8, 0.9], 0.02: [0.95, 0.7],
                                               0.04: [0.86, 0.86]}


@pytest.mark.slow
def test_sweep_run_equals_common_main(tmp_path):
  """A vmapped quick arm through the sweep == its recorded command through common.main."""
  arm = next(a for a in reproduce.arms(quick=True) if a.name == 'rs2_r10')
  arm = dataclasses.replace(arm, overrides={})  # at the config's lr, without its pilot
  run = sweep.run_sweep([arm], [1], str(tmp_path / 'sweep'))[arm.name][0]
  assert '--config.num_seeds=1' in run.command and '--config.seed=1' in run.command
  args = [a for a in shlex.split(run.command)[3:] if not a.startswith('--workdir=')]
  proc = run_main(*args, f'--workdir={tmp_path / "main"}', devices=jax.device_count())
  assert proc.returncode == 0, proc.stderr[-3000:]
  here, there = experiment.read_result(run.workdir), experiment.read_result(tmp_path / 'main')
  assert here == there and here['metrics']['per_seed'] == [run.metrics]
  assert 0 <= run.metrics['accuracy'] <= 1
