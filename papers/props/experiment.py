"""One PROPS / PPO / PPO-buffer run (seeds vmapped), the `common.main` entry point.

    python -m common.main --config=configs/props/cartpole.py --workdir=/tmp/props
    python -m common.main --config=configs/props/paper_mujoco.py:hopper --workdir=/tmp/hopper

gymnax environments run as jitted blocks of `loop.eval_every` PPO updates (all seeds vmapped);
between blocks the host writes metrics and checkpoints the whole carry (agent, optimiser and
behaviour states, buffer, environment state, PRNG), so SIGTERM checkpoints and exits cleanly and
a killed run resumes bit-identically. gymnasium (MuJoCo) environments run through the host loop
`common.rl.loop.train_host` (no checkpoints).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import checkpoint
from common import config as cfglib
from common import metrics as metricslib
from common import train as trainlib
from common.rl import loop as looplib
from common.rl import ppo as ppolib
from papers.props import props as P


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  del num_devices  # seeds are vmapped on one device
  if config.arm not in P.ARMS:
    raise cfglib.ConfigError(f'config.arm={config.arm!r}: use one of {", ".join(P.ARMS)}')
  if config.get('backend', 'gymnax') not in ('gymnax', 'gymnasium'):
    raise cfglib.ConfigError(f'config.backend={config.backend!r}: use gymnax (jitted, '
                             'checkpointed) or gymnasium (MuJoCo host loop)')
  cfglib.check_positive_int(config, 'num_seeds', 'loop.n', 'loop.total_steps', 'loop.eval_every',
                         'checkpoint_every')
  n, m = config.loop.n, config.loop.m or config.loop.n
  if n % m or config.loop.total_steps % (n * config.loop.eval_every):
    raise cfglib.ConfigError(
        f'config.loop: n={n} must be a multiple of m={m} and total_steps='
        f'{config.loop.total_steps} a multiple of n * eval_every={n * config.loop.eval_every}')


def _configs(config) -> tuple[looplib.LoopConfig, P.PROPSConfig]:
  base = looplib.LoopConfig(ppo=ppolib.PPOConfig(**config.ppo), **config.loop)
  return base, P.PROPSConfig(**config.props)


def _summary(config, eval_return: np.ndarray, se: np.ndarray | None, seconds: float,
             steps_done: int, workdir: str, **extra) -> dict:
  """metrics.json: the seed-mean eval curve, its area, sampling error and speed."""
  summary = {'arm': config.arm, 'env': config.env, 'seeds': config.num_seeds,
             'eval_return': eval_return.mean(0).tolist(), 'auc': float(eval_return.mean()),
             'env_steps_per_s_end_to_end': config.num_seeds * steps_done / max(seconds, 1e-9),
             **extra}
  if se is not None:
    summary['sampling_error'] = se.mean(0).tolist()
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, 'metrics.json.tmp')
    with open(tmp, 'w') as f:
      json.dump(summary, f)
    os.replace(tmp, os.path.join(workdir, 'metrics.json'))
  print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list)}))
  return summary


def _block_scalars(metrics: dict) -> dict:
  """Seed means of one block's metrics (mean over its PPO updates), per-seed eval returns."""
  out = {k: float(np.mean(v)) for k, v in metrics.items()}
  out.update({f'eval_return/seed{i}': float(r) for i, r in enumerate(metrics['eval_return'])})
  return out


def train_gymnax(config: ml_collections.ConfigDict, workdir: str) -> dict:
  import gymnax
  env, env_params = gymnax.make(config.env)
  base, cfg = _configs(config)
  runner = P.make_runner(env, env_params, config.arm, base, cfg, b=config.b)
  steps_per_block = base.n * base.eval_every
  keys = jnp.stack([jax.random.key(config.seed + i) for i in range(config.num_seeds)])
  started = time.time()
  carry = runner.init_seeds(keys)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), config.keep_checkpoints,
                                 config.to_json_best_effort(),
                                 strict=not config.get('force_resume', False))
  carry, start = ckpt.restore_latest(carry)
  writer = metricslib.MetricWriter(workdir, resume_step=start)
  if start == 0:
    first = jax.jit(jax.vmap(runner.evaluate_initial))(carry)
    writer.write_scalars(0, _block_scalars({'eval_return': np.asarray(first)}))
  block = jax.jit(jax.vmap(runner.block), donate_argnums=0)
  preempted, steps_run = False, 0
  with trainlib.Preemption() as preemption:
    for b in range(start // steps_per_block, runner.blocks):
      carry, metrics = block(carry)
      done = (b + 1) * steps_per_block
      scalars = _block_scalars(jax.device_get(metrics))
      bad = metricslib.nonfinite(scalars)
      if bad:
        ckpt.wait()
        raise trainlib.NonFiniteError(f'env step {done}: {bad} is {scalars[bad]}; stopped, the '
                                      'last good checkpoint is kept (lower ppo.lr / props.lr)')
      writer.write_scalars(done, scalars)
      steps_run += steps_per_block
      if ((b + 1) % config.checkpoint_every == 0 or b + 1 == runner.blocks
          or preemption.requested):
        ckpt.save(done, carry)
      if preemption.requested:
        preempted = True
        break
  ckpt.wait()
  writer.close()
  rows = metricslib.read_metrics(workdir)
  evals = np.array([[r[f'eval_return/seed{i}'] for i in range(config.num_seeds)] for r in rows])
  se = [r['se/sampling_error'] for r in rows if 'se/sampling_error' in r]
  return _summary(config, evals.T, np.array([se]) if se else None, time.time() - started,
                  steps_run, workdir, preempted=preempted, resumed_from=start)


def train_gymnasium(config: ml_collections.ConfigDict, workdir: str) -> dict:
  import gymnasium as gym
  base, cfg = _configs(config)
  started = time.time()
  out = P.train_host(lambda: gym.make(config.env), list(range(config.seed,
                                                              config.seed + config.num_seeds)),
                     config.arm, base, cfg, b=config.b, eval_episodes=config.loop.eval_episodes)
  writer = metricslib.MetricWriter(workdir)
  per_block = base.n * base.eval_every
  for i in range(out['eval_return'].shape[1]):
    writer.write_scalars(i * per_block, {
        'eval_return': float(out['eval_return'][:, i].mean()),
        **{f'eval_return/seed{s}': float(r) for s, r in enumerate(out['eval_return'][:, i])}})
  writer.close()
  return _summary(config, out['eval_return'], out.get('se/sampling_error'),
                  time.time() - started, base.total_steps, workdir,
                  env_steps_per_s_run=float(out['env_steps_per_s']))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  return (train_gymnasium if config.get('backend', 'gymnax') == 'gymnasium'
          else train_gymnax)(config, workdir)
