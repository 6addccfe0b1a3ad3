"""PROPS experiment pieces on hand-checkable cases: per-seed block metrics, final metrics from
the eval curve, config validation, the bandit's theory value."""

import json

import numpy as np
import pytest

from common.config import ConfigError
from common.rl import run as runlib
from common.sweep import load_config
from papers.props import bandit, experiment


def test_block_scalars_seed_means_and_per_seed_keys():
  metrics = {'eval_return': np.array([10.0, 30.0]),
             'se/sampling_error': np.array([[1.0, 3.0], [5.0, 7.0]]),  # (seeds, updates)
             'ppo/approx_kl': np.array([[0.1, 0.3], [0.5, 0.7]])}
  out = runlib.block_scalars(metrics, num_seeds=2)
  assert out['eval_return'] == 20.0 and out['se/sampling_error'] == 4.0
  assert out['eval_return/seed0'] == 10.0 and out['eval_return/seed1'] == 30.0
  assert out['se/sampling_error/seed0'] == 2.0 and out['se/sampling_error/seed1'] == 6.0
  assert 'ppo/approx_kl/seed0' not in out and out['ppo/approx_kl'] == pytest.approx(0.4)


def test_final_metrics_from_the_eval_curve(tmp_path):
  rows = [{'step': 0, 'eval_return/seed0': 10.0, 'eval_return/seed1': 20.0},
          {'step': 256, 'eval_return/seed0': 40.0, 'eval_return/seed1': 20.0,
           'se/sampling_error/seed0': 0.5, 'se/sampling_error/seed1': 0.25},
          {'step': 512, 'eval_return/seed0': 70.0, 'eval_return/seed1': 50.0,
           'se/sampling_error/seed0': 0.25, 'se/sampling_error/seed1': 0.75}]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  config = load_config('configs/props/cartpole.py:smoke', {'arm': 'ppo_buffer'})
  out = experiment.final_metrics(config, str(tmp_path))
  assert out['per_seed'] == [
      {'initial_return': 10.0, 'auc': 40.0, 'final_return': 70.0, 'sampling_error': 0.375,
       'final_sampling_error': 0.25},
      {'initial_return': 20.0, 'auc': 30.0, 'final_return': 50.0, 'sampling_error': 0.5,
       'final_sampling_error': 0.75}]
  assert out['auc'] == 35.0 and out['arm'] == 'ppo_buffer' and out['env'] == 'CartPole-v1'


@pytest.mark.parametrize('override, setting', [
    ({'arm': 'sac'}, 'config.arm'), ({'loop.m': 48}, 'config.loop'),
    ({'loop.total_steps': 500}, 'config.loop'), ({'backend': 'brax'}, 'config.backend')])
def test_validate_names_the_setting(override, setting):
  config = load_config('configs/props/cartpole.py', override)
  with pytest.raises(ConfigError, match=setting):
    experiment.validate(config, 1)


def test_configs_validate():
  for spec in ('cartpole.py', 'cartpole.py:fixed', 'cartpole.py:fixed,smoke', 'hopper.py',
               'hopper.py:smoke', 'paper_mujoco.py:walker2d,ppo'):
    experiment.validate(load_config(f'configs/props/{spec}'), 1)
  bandit.validate(load_config('configs/props/bandit.py'), 1)


def test_bandit_theory_and_target():
  assert bandit.theory(10, 512) == 9 / 1024
  np.testing.assert_allclose(bandit.target_logits(3), [-1.0, 0.0, 1.0])
