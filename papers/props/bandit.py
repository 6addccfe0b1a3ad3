"""Fixed-target sampling error on a K-armed bandit (one state): on-policy sampling vs PROPS.

The behaviour policy is a logits vector; every m samples it is reset to the target logits and
updated with the PROPS loss on all samples so far (the buffer never evicts here). The target is
fixed, so this is a seeded measurement, not training: `train_and_evaluate` (config
`configs/props/bandit.py`) runs it through the one run path with the seeds vmapped.

    python -m common.main --config=configs/props/bandit.py --workdir=/tmp/bandit
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import config as cfglib
from common import metrics as metricslib
from common import watchdog
from common.rl import ppo as ppolib
from papers.props import losses
from papers.props.sampling_error import tabular_sampling_error


def run_bandit(key: jax.Array, target_logits: jax.Array, n_max: int, m: int, props: bool,
               lr: float = 1e-2, epochs: int = 16, minibatches: int = 4, clip_eps: float = 0.3,
               kl_coef: float = 0.3, target_kl: float = 0.05) -> jax.Array:
  """Sampling error after each of n_max samples, shape (n_max,), for one trial."""
  probs = jax.nn.softmax(target_logits)
  tx = ppolib.optimizer(lr, 0.5)

  def loss_fn(logits_b, mb, w):
    lb = jnp.broadcast_to(logits_b, (mb.shape[0],) + target_logits.shape)
    lt = jnp.broadcast_to(target_logits, lb.shape)
    loss, metrics = losses.behavior_loss_categorical(lb, lt, mb, clip_eps, kl_coef, w)
    return loss, {k: v for k, v in metrics.items() if k != 'ratio'}

  def block(carry, key):
    behavior, opt, actions, count = carry
    k_sample, k_update = jax.random.split(key)
    new = jax.random.categorical(k_sample, behavior, shape=(m,))
    idx = count + jnp.arange(m)
    actions = actions.at[idx].set(new)
    count = count + m
    mask = (jnp.arange(n_max) < count).astype(jnp.float32)
    se = jax.vmap(lambda c: tabular_sampling_error(
        actions, probs, (jnp.arange(n_max) < c).astype(jnp.float32)))(idx + 1)
    if props:
      behavior, opt, _ = ppolib.minibatch_epochs(loss_fn, target_logits, opt, tx, actions,
                                                 mask, k_update, epochs, minibatches, target_kl)
    return (behavior, opt, actions, count), se

  carry = (target_logits, tx.init(target_logits), jnp.zeros(n_max, jnp.int32),
           jnp.asarray(0, jnp.int32))
  _, se = jax.lax.scan(block, carry, jax.random.split(key, n_max // m))
  return se.reshape(-1)


def target_logits(k: int) -> jax.Array:
  """The fixed, non-uniform K-armed target: logits evenly spaced in [-1, 1]."""
  return jnp.linspace(-1.0, 1.0, k)


def theory(k: int, n: int) -> float:
  """On-policy sampling error of n samples for large n: E KL(counts / n || pi) = (K-1) / 2n."""
  return (k - 1) / (2 * n)


ARMS = ('on_policy', 'props')


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  del num_devices
  cfglib.check_choice(config, 'arm', ARMS)
  cfglib.check_positive_int(config, 'num_seeds', 'k', 'n', 'm', 'trials', 'behavior.epochs',
                            'behavior.minibatches')
  cfglib.check_nonneg_int(config, 'seed')
  cfglib.check_divisible(config, 'n', config.m, 'config.m')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Sampling error of `trials` bandit trials per seed (seed s: trials keyed by key(s)), seeds
  vmapped. Logs, every m samples, the trial mean per seed (`sampling_error/seed<i>`) and
  (K-1)/2N; returns per seed the sampling error after n samples and its theory value."""
  k, n = config.k, config.n
  target = target_logits(k)
  props = config.arm == 'props'

  def seed_trials(key):
    keys = jax.random.split(key, config.trials)
    return jax.vmap(lambda kk: run_bandit(kk, target, n, config.m, props,
                                          **config.behavior))(keys).mean(0)

  keys = jnp.stack([jax.random.key(s) for s in range(config.seed,
                                                      config.seed + config.num_seeds)])
  watchdog.beat('bandit trials', 0)
  se = np.asarray(jax.jit(jax.vmap(seed_trials))(keys), np.float64)  # (seeds, n)
  writer = metricslib.MetricWriter(workdir)
  for count in range(config.m, n + 1, config.m):
    writer.write_scalars(count, {'sampling_error': float(se[:, count - 1].mean()),
                                 'theory': theory(k, count),
                                 **{f'sampling_error/seed{i}': float(v)
                                    for i, v in enumerate(se[:, count - 1])}})
  writer.close()
  per_seed = [{'sampling_error': float(v), 'theory': theory(k, n)} for v in se[:, -1]]
  return {'arm': config.arm, 'per_seed': per_seed,
          'sampling_error': float(se[:, -1].mean()), 'theory': theory(k, n)}
