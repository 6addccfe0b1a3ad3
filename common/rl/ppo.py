"""PPO (CleanRL): GAE with the dones convention, clipped surrogate and value losses, entropy
bonus, per-minibatch advantage normalisation, KL early stop checked before each step, and
optionally CleanRL's linear learning-rate annealing (`PPOConfig.anneal_lr`).

Every update takes a row `mask` so a partly filled buffer keeps static shapes: masked rows get
zero weight in every mean, and a minibatch without valid rows makes no step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from common.rl import networks


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  lr: float = 3e-4
  epochs: int = 10
  minibatches: int = 32
  clip_coef: float = 0.2
  clip_vloss: bool = True
  ent_coef: float = 0.0
  vf_coef: float = 0.5
  max_grad_norm: float = 0.5
  target_kl: float = float('inf')  # early stop when approx KL of a minibatch exceeds it
  norm_adv: bool = True
  gamma: float = 0.99
  gae_lambda: float = 0.95
  anneal_lr: bool = False  # lr of update k (0-based) of K: lr * (1 - k / K), CleanRL's schedule


def anneal_fraction(update: jax.Array, num_updates: int) -> jax.Array:
  """CleanRL's linear annealing: the learning-rate fraction of PPO update `update` (0-based) of
  `num_updates`, 1 - update / num_updates (1 for the first update, 1/K for the last)."""
  return 1.0 - update.astype(jnp.float32) / num_updates


def optimizer(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr, eps=1e-5))


def gae(rewards: jax.Array, values: jax.Array, dones: jax.Array, last_value: jax.Array,
        last_done: jax.Array, gamma: float, lam: float) -> tuple[jax.Array, jax.Array]:
  """Generalised advantage estimation over a time-major stream (T, ...).

  CleanRL's dones convention: dones[t] = 1 when obs[t] starts a new episode (the step before it
  ended), so step t bootstraps through (1 - dones[t+1]); `last_done`/`last_value` belong to the
  observation after the stream. delta_t = r_t + gamma V_{t+1} (1-d_{t+1}) - V_t;
  A_t = delta_t + gamma lambda (1-d_{t+1}) A_{t+1}. Returns (advantages, returns = A + V).
  """
  next_nonterminal = 1.0 - jnp.concatenate([dones[1:], last_done[None]], 0)
  next_values = jnp.concatenate([values[1:], last_value[None]], 0)
  deltas = rewards + gamma * next_values * next_nonterminal - values

  def body(adv, x):
    delta, nnt = x
    adv = delta + gamma * lam * nnt * adv
    return adv, adv

  _, adv = jax.lax.scan(body, jnp.zeros_like(last_value), (deltas, next_nonterminal),
                        reverse=True)
  return adv, adv + values


def masked_mean(x: jax.Array, w: jax.Array) -> jax.Array:
  return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)


def normalize_advantages(adv: jax.Array, w: jax.Array) -> jax.Array:
  """(A - mean) / (std + 1e-8) over the valid rows, torch's unbiased std."""
  n = jnp.sum(w)
  mu = masked_mean(adv, w)
  var = jnp.sum(w * (adv - mu) ** 2) / jnp.maximum(n - 1.0, 1.0)
  return (adv - mu) / (jnp.sqrt(var) + 1e-8)


def ppo_loss(params: dict, actor: Callable, critic: Callable, discrete: bool, mb: dict,
             w: jax.Array, cfg: PPOConfig) -> tuple[jax.Array, dict]:
  """Clipped surrogate + clipped value loss - entropy bonus on one (weighted) minibatch."""
  out = actor(params['actor'], mb['obs'])
  value = critic(params['critic'], mb['obs'])
  logratio = networks.log_prob(discrete, out, mb['actions']) - mb['logp']
  ratio = jnp.exp(logratio)
  adv = normalize_advantages(mb['advantages'], w) if cfg.norm_adv else mb['advantages']
  pg_loss = masked_mean(jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - cfg.clip_coef,
                                                                    1 + cfg.clip_coef)), w)
  v_unclipped = (value - mb['returns']) ** 2
  if cfg.clip_vloss:
    v_clipped = mb['values'] + jnp.clip(value - mb['values'], -cfg.clip_coef, cfg.clip_coef)
    v_loss = 0.5 * masked_mean(jnp.maximum(v_unclipped, (v_clipped - mb['returns']) ** 2), w)
  else:
    v_loss = 0.5 * masked_mean(v_unclipped, w)
  ent = masked_mean(networks.entropy(discrete, out), w)
  loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss
  metrics = {'pg_loss': pg_loss, 'v_loss': v_loss, 'entropy': ent,
             'approx_kl': masked_mean((ratio - 1) - logratio, w),
             'clipfrac': masked_mean((jnp.abs(ratio - 1) > cfg.clip_coef).astype(jnp.float32), w)}
  return loss, metrics


def minibatch_epochs(loss_fn: Callable, params, opt_state, tx: optax.GradientTransformation,
                     batch: dict, mask: jax.Array, key: jax.Array, epochs: int, minibatches: int,
                     target_kl: float, lr_scale: jax.Array | None = None) -> tuple:
  """`epochs` x `minibatches` Adam steps over a shuffled (masked) batch; the approximate KL of
  each minibatch, measured at the parameters BEFORE its step, stops the whole update once it
  exceeds `target_kl` (that minibatch makes no step). `lr_scale` multiplies every step: Adam's
  step is linear in its learning rate, so this is the learning rate times `lr_scale` (CleanRL
  sets `param_groups[0]['lr']`). Returns params, opt_state, metrics (the mean over the steps
  taken, plus `steps`)."""
  rows = mask.shape[0]
  size = rows // minibatches
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(carry, idx):
    params, opt_state, stopped, acc = carry
    mb = jax.tree.map(lambda x: x[idx], batch)
    w = mask[idx]
    (_, metrics), grads = grad_fn(params, mb, w)
    stopped = stopped | (metrics['approx_kl'] > target_kl)
    do = (~stopped) & (jnp.sum(w) > 0)
    updates, new_opt = tx.update(grads, opt_state, params)
    if lr_scale is not None:
      updates = jax.tree.map(lambda u: u * lr_scale, updates)
    new_params = optax.apply_updates(params, updates)
    params = jax.tree.map(lambda a, b: jnp.where(do, a, b), new_params, params)
    opt_state = jax.tree.map(lambda a, b: jnp.where(do, a, b), new_opt, opt_state)
    acc = jax.tree.map(lambda a, m: a + jnp.where(do, m, 0.0), acc, metrics)
    return (params, opt_state, stopped, acc), do

  def epoch(carry, k):
    perm = jax.random.permutation(k, rows)[:size * minibatches].reshape(minibatches, size)
    return jax.lax.scan(step, carry, perm)

  (_, m0), _ = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[:size], batch),
                              mask[:size])
  acc0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), m0)
  (params, opt_state, stopped, acc), did = jax.lax.scan(
      epoch, (params, opt_state, jnp.asarray(False), acc0), jax.random.split(key, epochs))
  steps = jnp.sum(did)
  metrics = jax.tree.map(lambda a: a / jnp.maximum(steps, 1), acc)
  metrics.update(steps=steps, early_stopped=stopped)
  return params, opt_state, metrics


def ppo_update(params: dict, opt_state, tx, actor: Callable, critic: Callable, discrete: bool,
               batch: dict, mask: jax.Array, key: jax.Array, cfg: PPOConfig,
               lr_scale: jax.Array | None = None) -> tuple:
  """PPO on `batch` (obs, actions, logp, values, advantages, returns; rows masked by `mask`);
  `lr_scale`: the annealed learning-rate fraction (None: constant)."""
  def loss_fn(p, mb, w):
    return ppo_loss(p, actor, critic, discrete, mb, w, cfg)
  return minibatch_epochs(loss_fn, params, opt_state, tx, batch, mask, key, cfg.epochs,
                          cfg.minibatches, cfg.target_kl, lr_scale)
