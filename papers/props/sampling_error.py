"""Sampling error: how far the empirical (maximum-likelihood) policy of a buffer is from the
target policy (paper Section 3, measured as in the official code).

Tabular: pi_D(a) = count(a) / N and SE = KL(pi_D || pi). With a network policy, pi_D is a copy of
the target whose first two layers are frozen and whose output layer (and log-std) Adam fits to
maximum likelihood on the buffer; SE = mean over buffer states of KL(pi_D(.|s) || pi(.|s))
(unweighted by the actions), measured before the PPO update.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from common.rl import networks


def tabular_sampling_error(actions: jax.Array, probs: jax.Array,
                           weights: jax.Array | None = None) -> jax.Array:
  """KL(counts / N || probs) for one state; 0 log 0 = 0. actions (N,), probs (K,)."""
  w = jnp.ones(actions.shape) if weights is None else weights
  counts = jnp.zeros(probs.shape).at[actions].add(w)
  p_d = counts / jnp.maximum(jnp.sum(w), 1e-12)
  return jnp.sum(jnp.where(p_d > 0, p_d * (jnp.log(jnp.where(p_d > 0, p_d, 1.0))
                                           - jnp.log(probs)), 0.0))


def policy_kl(discrete: bool, out_p, out_q) -> jax.Array:
  """KL(p || q) per state: exact for categoricals, closed form (summed over dims) for
  diagonal Gaussians."""
  if discrete:
    lp, lq = jax.nn.log_softmax(out_p), jax.nn.log_softmax(out_q)
    return jnp.sum(jnp.exp(lp) * (lp - lq), -1)
  (mp, sp), (mq, sq) = out_p, out_q
  return jnp.sum(sq - sp + (jnp.exp(2 * sp) + (mp - mq) ** 2) / (2 * jnp.exp(2 * sq)) - 0.5, -1)


FROZEN = ('hidden_0', 'hidden_1')


def empirical_policy(apply: Callable, discrete: bool, actor_params: dict, obs: jax.Array,
                     actions: jax.Array, mask: jax.Array, steps: int = 200, lr: float = 1e-3
                     ) -> dict:
  """Maximum-likelihood fit of the output layer (first two layers frozen), full batch Adam."""
  tx = optax.adam(lr)
  trainable = jax.tree_util.tree_map_with_path(
      lambda path, _: not any(getattr(k, 'key', None) in FROZEN for k in path), actor_params)

  def nll(p):
    logp = networks.log_prob(discrete, apply(p, obs), actions)
    return -jnp.sum(logp * mask) / jnp.maximum(jnp.sum(mask), 1.0)

  def step(carry, _):
    p, s = carry
    g = jax.tree.map(lambda x, t: x if t else jnp.zeros_like(x), jax.grad(nll)(p), trainable)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.lax.scan(step, (actor_params, tx.init(actor_params)), None, length=steps)
  return params


def network_sampling_error(apply: Callable, discrete: bool, actor_params: dict, obs: jax.Array,
                           actions: jax.Array, mask: jax.Array, steps: int = 200,
                           lr: float = 1e-3) -> jax.Array:
  """mean_s KL(pi_D(.|s) || pi(.|s)) over the valid buffer states."""
  emp = empirical_policy(apply, discrete, actor_params, obs, actions, mask, steps, lr)
  kl = policy_kl(discrete, apply(emp, obs), apply(actor_params, obs))
  return jnp.sum(kl * mask) / jnp.maximum(jnp.sum(mask), 1.0)
