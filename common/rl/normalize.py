"""Running observation and reward normalisation as pure state (gymnasium's NormalizeObservation
and NormalizeReward wrappers, with the CleanRL clip of 10)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-8
CLIP = 10.0


def rms_init(shape: tuple[int, ...] = ()) -> dict[str, jax.Array]:
  return {'mean': jnp.zeros(shape), 'var': jnp.ones(shape), 'count': jnp.asarray(1e-4)}


def rms_update(rms: dict, x: jax.Array) -> dict:
  """Merges a batch x (leading axis = samples) into the running mean / variance."""
  b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
  delta = b_mean - rms['mean']
  tot = rms['count'] + b_count
  mean = rms['mean'] + delta * b_count / tot
  m2 = rms['var'] * rms['count'] + b_var * b_count + delta ** 2 * rms['count'] * b_count / tot
  return {'mean': mean, 'var': m2 / tot, 'count': tot}


def normalize_obs(rms: dict, obs: jax.Array) -> jax.Array:
  return jnp.clip((obs - rms['mean']) / jnp.sqrt(rms['var'] + EPS), -CLIP, CLIP)


def normalize_reward(ret_rms: dict, reward: jax.Array) -> jax.Array:
  return jnp.clip(reward / jnp.sqrt(ret_rms['var'] + EPS), -CLIP, CLIP)


def reward_stats_update(ret_rms: dict, ret: jax.Array, reward: jax.Array, done: jax.Array,
                        gamma: float) -> tuple[dict, jax.Array]:
  """Discounted return accumulator -> running variance (NormalizeReward); resets on done."""
  ret = ret * gamma + reward
  ret_rms = rms_update(ret_rms, jnp.reshape(ret, (-1,)))
  return ret_rms, ret * (1.0 - done)
