"""Fixed-target sampling error on a K-armed bandit (one state): on-policy sampling vs PROPS.

The behaviour policy is a logits vector; every m samples it is reset to the target logits and
updated with the PROPS loss on all samples so far (the buffer never evicts here).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
