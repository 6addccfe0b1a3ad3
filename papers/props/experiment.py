"""One PROPS / PPO / PPO-buffer run of `num_seeds` vmapped seeds: the `common.main` entry point.

    python -m common.main --config=configs/props/cartpole.py --workdir=/tmp/props
    python -m common.main --config=configs/props/hopper.py --workdir=/tmp/hopper

Both backends run in blocks of `loop.eval_every` PPO updates, each followed by an evaluation of
the target policy, through `common.rl.run.run_blocks` (checkpoints, resume, SIGTERM, metrics,
progress bar, watchdog): gymnax environments as one jitted block with the seeds vmapped
(`common.rl.loop.Runner`), gymnasium MuJoCo environments through the host loop (one environment
per seed, updates jitted and vmapped: `common.rl.host.HostRunner`). A killed run resumes from its
newest checkpoint bit-identically (what each backend's carry holds is in those modules).

Final metrics, per seed (`per_seed`) and as seed means, from the logged evaluation curve:
`initial_return` (the untrained policy, step 0: the floor of the return claims), `auc` (the
mean of the curve including step 0: the area under the return curve per evaluation),
`final_return`; with `props.se_steps > 0` also `sampling_error` (mean over the PPO updates,
measured before each) and `final_sampling_error` (mean over the last block's updates).
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from common import config as cfglib
from common import metrics as metricslib
from common.rl import loop as looplib
from common.rl import ppo as ppolib
from common.rl import run as runlib
from papers.props import props as P

BACKENDS = ('gymnax', 'gymnasium')


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  del num_devices  # seeds are vmapped on one device
  cfglib.check_choice(config, 'arm', P.ARMS)
  cfglib.check_choice(config, 'backend', BACKENDS)
  cfglib.check_positive_int(config, 'num_seeds', 'b', 'loop.n', 'loop.total_steps',
                            'loop.eval_every', 'loop.eval_episodes', 'checkpoint_every',
                            'keep_checkpoints')
  cfglib.check_nonneg_int(config, 'seed', 'loop.m', 'props.se_steps')
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
    se = [r[f'se/sampling_error/seed{i}'] for r in rows if f'se/sampling_error/seed{i}' in r]
    if se:
      m.update(sampling_error=float(np.mean(se)), final_sampling_error=se[-1])
    per_seed.append(m)
  means = {k: float(np.mean([m[k] for m in per_seed])) for k in per_seed[0]}
  return {'arm': config.arm, 'env': config.env, 'per_seed': per_seed, **means}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  base, cfg = settings(config)
  seeds = list(range(config.seed, config.seed + config.num_seeds))
  if config.backend == 'gymnax':
    import gymnax
    env, env_params = gymnax.make(config.env)
    runner = P.make_runner(env, env_params, config.arm, base, cfg, b=config.b)
    carry = runner.init_seeds([jax.random.key(s) for s in seeds])
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
