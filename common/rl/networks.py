"""Separate 64-64 tanh actor and critic (orthogonal init) and their action distributions.

A policy output `out` is the logits (discrete) or a `(mean, log_std)` pair (continuous). The
continuous mean is tanh-squashed and the log-std is a state-independent parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2 * math.pi)


class Actor(nn.Module):
  """pi(a|s): two tanh hidden layers (`hidden_0`, `hidden_1`), output layer `out`."""
  action_dim: int
  discrete: bool
  hidden: Sequence[int] = (64, 64)

  @nn.compact
  def __call__(self, obs: jax.Array):
    x = obs
    for i, h in enumerate(self.hidden):
      x = jnp.tanh(nn.Dense(h, kernel_init=nn.initializers.orthogonal(math.sqrt(2)),
                            name=f'hidden_{i}')(x))
    out = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01), name='out')(x)
    if self.discrete:
      return out
    log_std = self.param('log_std', nn.initializers.zeros, (self.action_dim,))
    return jnp.tanh(out), jnp.broadcast_to(log_std, out.shape)


class Critic(nn.Module):
  """V(s): two tanh hidden layers, scalar output."""
  hidden: Sequence[int] = (64, 64)

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    x = obs
    for i, h in enumerate(self.hidden):
      x = jnp.tanh(nn.Dense(h, kernel_init=nn.initializers.orthogonal(math.sqrt(2)),
                            name=f'hidden_{i}')(x))
    return nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0), name='out')(x)[..., 0]


def log_prob(discrete: bool, out, action: jax.Array) -> jax.Array:
  """log pi(a|s); a continuous log-prob sums over action dimensions."""
  if discrete:
    logp = jax.nn.log_softmax(out)
    return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), -1)[..., 0]
  mean, log_std = out
  z = (action - mean) * jnp.exp(-log_std)
  return jnp.sum(-0.5 * z ** 2 - log_std - 0.5 * _LOG_2PI, -1)


def entropy(discrete: bool, out) -> jax.Array:
  if discrete:
    logp = jax.nn.log_softmax(out)
    return -jnp.sum(jnp.exp(logp) * logp, -1)
  _, log_std = out
  return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), -1)


def sample(discrete: bool, out, key: jax.Array) -> jax.Array:
  if discrete:
    return jax.random.categorical(key, out)
  mean, log_std = out
  return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def mode(discrete: bool, out) -> jax.Array:
  return jnp.argmax(out, -1) if discrete else out[0]
