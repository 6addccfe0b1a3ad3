"""One PROPS / PPO run on a gymnax environment (seeds vmapped), the `common.main` entry point.

    python -m common.main --config=configs/props/cartpole.py --workdir=/tmp/props
"""

from __future__ import annotations

import json
import os
import time

import gymnax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import config as cfglib
from common.rl import loop as looplib
from common.rl import ppo as ppolib
from papers.props import props as P


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  del num_devices  # seeds are vmapped on one device
  if config.arm not in P.ARMS:
    raise cfglib.ConfigError(f'config.arm={config.arm!r}: use one of {P.ARMS}')
  n, m = config.loop.n, config.loop.m or config.loop.n
  if n % m or config.loop.total_steps % (n * config.loop.eval_every):
    raise cfglib.ConfigError('need loop.n % loop.m == 0 and loop.total_steps % '
                             '(loop.n * loop.eval_every) == 0')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  env, env_params = gymnax.make(config.env)
  base = looplib.LoopConfig(ppo=ppolib.PPOConfig(**config.ppo), **config.loop)
  cfg = P.PROPSConfig(**config.props)
  train, _ = P.make_train(env, env_params, config.arm, base, cfg, b=config.b)
  keys = jnp.stack([jax.random.key(config.seed + i) for i in range(config.num_seeds)])
  start = time.time()
  fn = jax.jit(train)  # seeds in sequence: the vmapped loop can hang in XLA CPU (README)
  runs = [jax.block_until_ready(fn(k)) for k in keys]
  metrics = jax.tree.map(lambda *x: np.stack([np.asarray(v) for v in x]), *runs)
  seconds = time.time() - start
  summary = {'arm': config.arm, 'env': config.env,
             'eval_return': metrics['eval_return'].mean(0).tolist(),
             'auc': float(metrics['eval_return'].mean()),
             'env_steps_per_s_end_to_end': config.num_seeds * base.total_steps / seconds}
  if 'se/sampling_error' in metrics:
    summary['sampling_error'] = metrics['se/sampling_error'].mean(0).tolist()
  with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
    json.dump(summary, f)
  print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list)}))
  return summary
