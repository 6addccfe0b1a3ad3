"""One PROPS / PPO / PPO-buffer run of `num_seeds` vmapped seeds: the `common.main` entry point.

    python -m common.main --config=configs/props/cartpole.py --workdir=/tmp/props
    python -m common.main --config=configs/props/acrobot.py --workdir=/tmp/acrobot
    python -m common.main --config=configs/props/paper_mujoco.py:hopper,props,short --workdir=/tmp/h

Both backends run in blocks of `loop.eval_every` PPO updates, each followed by an evaluation of
the target policy, through `common.rl.run.run_blocks` (checkpoints, resume, SIGTERM, metrics,
progress bar, watchdog): gymnax environments as one jitted block with the seeds vmapped
(`common.rl.loop.Runner`), gymnasium MuJoCo environments through the host loop (one environment
per seed, updates jitted and vmapped: `common.rl.host.HostRunner`). A killed run resumes from its
newest checkpoint bit-identically (what each backend's carry holds is in those modules).

Final metrics, per seed (`per_seed`) and as seed means, from the logged evaluation curve:
`initial_return` (the untrained policy, step 0: the floor of the return claims), `auc` (the
mean of the curve including step 0: the area under the return curve per evaluation),
`final_return`; with `props.se_steps > 0`, for each measurement in `SE_KEYS` (the buffer's
sampling error, the same after half the maximum-likelihood fit, and with `loop.reference` those
of the on-policy reference buffer sampled from the same target sequence) its mean over the
measurements (each before a PPO update, every `loop.measure_every`-th) and `final_<key>` (the
mean over the last block's measurements).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import checkpoint
from common import config as cfglib
from common import metrics as metricslib
from common.rl import loop as looplib
from common.rl import ppo as ppolib
from common.rl import run as runlib
from papers.props import props as P

BACKENDS = ('gymnax', 'gymnasium')
SE_KEYS = ('sampling_error', 'sampling_error_half', 'reference_sampling_error',
           'reference_sampling_error_half')


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  del num_devices  # seeds are vmapped on one device
  cfglib.check_choice(config, 'arm', P.ARMS)
  cfglib.check_choice(config, 'backend', BACKENDS)
  cfglib.check_positive_int(config, 'num_seeds', 'b', 'loop.n', 'loop.total_steps',
                            'loop.eval_every', 'loop.eval_episodes', 'checkpoint_every',
                            'keep_checkpoints')
  cfglib.check_nonneg_int(config, 'seed', 'loop.m', 'props.se_steps')
  if config.get('expert') and (config.backend != 'gymnax' or config.ppo.lr != 0):
    raise cfglib.ConfigError('config.expert (a frozen expert target) needs backend=gymnax and '
                             f'ppo.lr=0, got {config.backend} and {config.ppo.lr}')
  n, m = config.loop.n, config.loop.m or config.loop.n
  if n % m or config.loop.total_steps % (n * config.loop.eval_every):
    raise cfglib.ConfigError(
        f'config.loop: n={n} must be a multiple of m={m} and total_steps='
        f'{config.loop.total_steps} a multiple of n * eval_every={n * config.loop.eval_every}')


def settings(config: ml_collections.ConfigDict) -> tuple[looplib.LoopConfig, P.PROPSConfig]:
  """The loop (before the arm's b / m) and PROPS settings of a config."""
  base = looplib.LoopConfig(ppo=ppolib.PPOConfig(**config.ppo), **config.loop)
  return base, P.PROPSConfig(**config.props)


def final_metrics(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Per-seed and seed-mean final metrics from the run's metrics.jsonl (see the docstring)."""
  rows = metricslib.read_metrics(workdir)
  per_seed = []
  for i in range(config.num_seeds):
    curve = [r[f'eval_return/seed{i}'] for r in rows]
    m = {'initial_return': curve[0], 'auc': float(np.mean(curve)), 'final_return': curve[-1]}
    for key in SE_KEYS:
      se = [r[f'se/{key}/seed{i}'] for r in rows if f'se/{key}/seed{i}' in r]
      if se:
        m.update({key: float(np.mean(se)), f'final_{key}': se[-1]})
    per_seed.append(m)
  means = {k: float(np.mean([m[k] for m in per_seed])) for k in per_seed[0]}
  return {'arm': config.arm, 'env': config.env, 'per_seed': per_seed, **means}


def with_expert(carry: dict, expert_workdir: str, env: str, num_seeds: int) -> dict:
  """`carry` (stacked seeds) with seed i's target, behaviour policy and observation statistics
  replaced by the final target actor and statistics of seed i of the finished gymnax run in
  `expert_workdir` (the fixed expert target of the paper's fixed-target experiment)."""
  with open(os.path.join(expert_workdir, 'config.json')) as f:
    expert_env = json.load(f)['env']
  if expert_env != env:
    raise cfglib.ConfigError(f'config.expert: {expert_workdir} trained on {expert_env}, this run '
                             f'is on {env}; point it at a run on {env}')
  saved = checkpoint.restore_state(expert_workdir)['state']
  actor, obs_rms = saved['params']['actor'], saved['obs_rms']
  have = len(jax.tree.leaves(obs_rms)[0])
  if have < num_seeds:
    raise cfglib.ConfigError(f'config.expert: {expert_workdir} holds {have} seeds, this run needs '
                             f'{num_seeds}; lower num_seeds or train more expert seeds')
  def fresh(tree):  # a device copy of its own for each use (the block donates its carry)
    return jax.tree.map(lambda x: jnp.array(x[:num_seeds]), tree)

  state = dict(carry['state'], params=dict(carry['state']['params'], actor=fresh(actor)),
               behavior=fresh(actor), pre_actor=fresh(actor), obs_rms=fresh(obs_rms))
  return dict(carry, state=state)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  base, cfg = settings(config)
  seeds = list(range(config.seed, config.seed + config.num_seeds))
  if config.backend == 'gymnax':
    import gymnax
    env, env_params = gymnax.make(config.env)
    runner = P.make_runner(env, env_params, config.arm, base, cfg, b=config.b)
    carry = runner.init_seeds([jax.random.key(s) for s in seeds])
    if config.get('expert'):
      carry = with_expert(carry, config.expert, config.env, config.num_seeds)
    block = jax.jit(jax.vmap(runner.block), donate_argnums=0)
    evaluate = jax.jit(jax.vmap(runner.evaluate_initial))
    steps_per_block = base.n * base.eval_every
  else:
    import gymnasium as gym
    runner = P.make_host_runner(lambda: gym.make(config.env), config.num_seeds, config.arm,
                                base, cfg, b=config.b)
    carry = runner.init(seeds)
    block, evaluate, steps_per_block = runner.block, runner.evaluate, runner.steps_per_block
  out = runlib.run_blocks(
      workdir, carry, block, evaluate, blocks=runner.blocks, steps_per_block=steps_per_block,
      num_seeds=config.num_seeds, checkpoint_every=config.checkpoint_every,
      keep=config.keep_checkpoints, config_json=config.to_json_best_effort(),
      strict=not config.get('force_resume', False))
  if out.preempted:
    return {'preempted': True}
  return final_metrics(config, workdir)
