"""PROPS experiment pieces on hand-checkable cases: per-seed block metrics, final metrics from
the eval curve, config validation, the bandit's theory value, the frozen expert target."""

import json

import jax
import numpy as np
import pytest

from common import checkpoint
from common import experiment as run_path
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
  tasks = ('swimmer', 'hopper', 'halfcheetah', 'walker2d', 'ant', 'humanoid')
  specs = ['cartpole.py', 'cartpole.py:smoke', 'acrobot.py', 'acrobot.py:smoke', 'acrobot.py:fixed',
           'acrobot.py:fixed,smoke', 'paper_mujoco.py:hopper,props,smoke']
  specs += [f'paper_mujoco.py:{t},{a}{s}' for t in tasks for a in ('ppo', 'ppo_buffer', 'props')
            for s in ('', ',short')]
  for spec in specs:
    experiment.validate(load_config(f'configs/props/{spec}'), 1)
  bandit.validate(load_config('configs/props/bandit.py'), 1)


@pytest.mark.parametrize('spec, n, m, lr, props_lr, props_kl, lam, mb, total, anneal', [
    # the run files of the paper's return figure (NicholasCorrado/PPOROS, PROPS/plotting/neurips)
    ('hopper,props', 2048, 256, 1e-3, 1e-3, 0.05, 0.3, 16, 983_040, 1_000_000),
    ('hopper,ppo', 2048, 0, 1e-3, None, None, None, None, 983_040, 1_000_000),
    ('hopper,ppo_buffer', 1024, 0, 1e-4, None, None, None, None, 993_280, 1_000_000),
    ('swimmer,props', 2048, 1024, 1e-3, 1e-5, 0.03, 0.1, 16, 983_040, 1_000_000),
    ('swimmer,ppo', 4096, 0, 1e-3, None, None, None, None, 983_040, 1_000_000),
    ('walker2d,props', 2048, 256, 1e-3, 1e-3, 0.1, 0.3, 32, 1_986_560, 2_000_000),
    ('walker2d,ppo', 4096, 0, 1e-3, None, None, None, None, 1_966_080, 2_000_000),
    ('halfcheetah,ppo_buffer', 4096, 0, 1e-3, None, None, None, None, 1_966_080, 2_000_000),
    ('ant,props', 1024, 256, 1e-4, 1e-3, 0.03, 0.3, 16, 3_993_600, 4_000_000),
    ('humanoid,props', 8192, 256, 1e-4, 1e-4, 0.1, 0.1, 32, 5_980_160, 6_000_000)])
def test_paper_mujoco_matches_the_plotted_run_files(spec, n, m, lr, props_lr, props_kl, lam, mb,
                                                    total, anneal):
  c = load_config(f'configs/props/paper_mujoco.py:{spec}')
  assert (c.loop.n, c.loop.m, c.ppo.lr, c.loop.total_steps, c.loop.anneal_steps) == (
      n, m, lr, total, anneal)
  assert c.ppo.anneal_lr and c.ppo.ent_coef == 0.01 and c.ppo.target_kl == 0.03
  assert (c.loop.eval_every, c.loop.eval_episodes, c.env.endswith('-v4')) == (10, 20, True)
  if props_lr is not None:
    p = c.props
    assert (p.lr, p.target_kl, p.kl_coef, p.minibatches, p.epochs, p.clip_eps) == (
        props_lr, props_kl, lam, mb, 16, 0.3)
  short = load_config(f'configs/props/paper_mujoco.py:{spec},short')
  every = short.loop.n * short.loop.eval_every
  assert short.loop.total_steps == 5 * every and every == -(-20_480 // n) * n
  assert short.loop.anneal_steps == anneal and short.ppo.lr == lr


def test_bandit_theory_and_target():
  assert bandit.theory(10, 512) == 9 / 1024
  np.testing.assert_allclose(bandit.target_logits(3), [-1.0, 0.0, 1.0])


@pytest.mark.parametrize('override, setting', [
    ({'ppo.lr': 1e-3}, 'ppo.lr=0'), ({'backend': 'gymnasium'}, 'backend=gymnax')])
def test_an_expert_target_must_stay_frozen(override, setting):
  config = load_config('configs/props/acrobot.py:fixed', {'expert': '/x', **override})
  with pytest.raises(ConfigError, match=setting):
    experiment.validate(config, 1)


def test_expert_target_is_the_frozen_final_policy_of_another_run(tmp_path):
  """`config.expert`: each seed's target (and behaviour start) and observation statistics are
  the expert run's final ones, and stay so (PPO learning rate 0, statistics not updated), while
  PROPS moves the behaviour policy; an expert on another task or with too few seeds is refused."""
  expert = str(tmp_path / 'expert')
  run_path.train_and_evaluate(load_config('configs/props/acrobot.py:smoke', {'arm': 'ppo'}),
                              expert)
  fixed = str(tmp_path / 'fixed')
  out = run_path.train_and_evaluate(
      load_config('configs/props/acrobot.py:fixed,smoke', {'expert': expert}), fixed)
  saved, frozen = (checkpoint.restore_state(w)['state'] for w in (expert, fixed))
  for x, y in zip(jax.tree.leaves((saved['params']['actor'], saved['obs_rms'])),
                  jax.tree.leaves((frozen['params']['actor'], frozen['obs_rms'])), strict=True):
    np.testing.assert_array_equal(x, y)
  moved = jax.tree.map(lambda x, y: np.abs(x - y).max(), frozen['behavior'],
                       frozen['params']['actor'])
  assert max(jax.tree.leaves(moved)) > 0 and len(out['per_seed']) == 2
  with pytest.raises(ConfigError, match='CartPole-v1'):
    run_path.train_and_evaluate(load_config('configs/props/acrobot.py:fixed,smoke', {
        'expert': expert, 'env': 'CartPole-v1'}), str(tmp_path / 'other_task'))
  with pytest.raises(ConfigError, match='holds 2 seeds'):
    run_path.train_and_evaluate(load_config('configs/props/acrobot.py:fixed,smoke', {
        'expert': expert, 'num_seeds': 3}), str(tmp_path / 'more_seeds'))
