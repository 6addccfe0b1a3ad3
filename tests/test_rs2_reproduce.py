"""RS2 reproduction: one quick arm through the sweep == the same command through common.main,
time to the target on hand-made eval curves, the arms as configs."""

import json

import pytest

from common import sweep
from papers.rs2 import reproduce
from tests.testutil import assert_sweep_run_equals_its_command


def fake_run(tmp_path, name, evals, pretrain_steps=0):
  workdir = tmp_path / name
  workdir.mkdir()
  with open(workdir / 'metrics.jsonl', 'w') as f:
    for step, acc in evals:
      f.write(json.dumps({'step': step, 'eval/accuracy': acc}) + '\n')
  return sweep.Run(name, 0, str(workdir), '', {'pretrain_steps': pretrain_steps})


def test_steps_to_target_counts_pretraining(tmp_path):
  run = fake_run(tmp_path, 'el2n', [(50, 0.5), (100, 0.91), (150, 0.9), (200, 0.95)], 500)
  assert reproduce.steps_to(run, 0.9) == 600  # first eval at or above 0.9, plus pre-training
  assert reproduce.steps_to(run, 0.95) == 700
  assert reproduce.steps_to(run, 0.96) is None
  plain = fake_run(tmp_path, 'rs2', [(50, 0.9)])
  assert reproduce.steps_to(plain, 0.9) == 50


def test_arms_are_configs_and_pruning_arms_start_from_pretraining():
  arms = {a.name: a for a in reproduce.arms(quick=False)}
  assert set(arms) == {'pretrain', 'full'} | {f'{m}_{b}' for m in reproduce.METHODS
                                              for b in reproduce.BUDGETS}
  assert list(arms)[0] == 'pretrain'
  for budget, fraction in reproduce.BUDGETS.items():
    for method in reproduce.METHODS:
      arm = arms[f'{method}_{budget}']
      config = sweep.load_config(arm.config)
      assert config.data.sampler.fraction == fraction
      if method in reproduce.PRUNING:
        assert arm.overrides['selection.pretrained_workdir'] == sweep.After('pretrain')
        assert config.selection.method == method and config.data.sampler.mode == 'static'
      else:
        assert config.data.sampler.mode == method and config.selection.method == 'none'
  assert sweep.load_config(arms['full'].config).data.sampler.mode == 'full'


@pytest.mark.slow
def test_sweep_run_equals_common_main(tmp_path):
  arm = next(a for a in reproduce.arms(quick=True) if a.name == 'rs2_r10')
  run = assert_sweep_run_equals_its_command(arm, 1, tmp_path)
  assert 0 <= run.metrics['accuracy'] <= 1
