"""The PROPS behaviour-policy objective (paper Eq. 5 / Algorithm 2, as the official code does it).

L(phi) = mean_{(s,a) in D} max(r, clip(r, 1 - eps, 1 + eps)) + lambda * KL,
r = pi_phi(a|s) / pi_theta(a|s). Minimising r lowers the probability of actions the buffer already
over-samples; the max makes the gradient vanish once r < 1 - eps (no further push down).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2 * math.pi)


def _mean(x: jax.Array, w: jax.Array | None) -> jax.Array:
  if w is None:
    return jnp.mean(x)
  return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)


def _gaussian_logp(mu: jax.Array, log_std: jax.Array, a: jax.Array) -> jax.Array:
  z = (a - mu) * jnp.exp(-log_std)
  return jnp.sum(-0.5 * z ** 2 - log_std - 0.5 * _LOG_2PI, -1)


def _clipped_ratio_objective(logratio, clip_eps, w):
  ratio = jnp.exp(logratio)
  pg_loss = _mean(jnp.maximum(ratio, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps)), w)
  approx_kl = _mean((ratio - 1) - logratio, w)
  clipfrac = _mean((jnp.abs(ratio - 1) > clip_eps).astype(jnp.float32), w)
  return ratio, pg_loss, approx_kl, clipfrac


def behavior_loss_gaussian(mu_b: jax.Array, log_std_b: jax.Array, mu_t: jax.Array,
                           log_std_t: jax.Array, actions: jax.Array, clip_eps: float,
                           kl_coef: float, weights: jax.Array | None = None
                           ) -> tuple[jax.Array, dict]:
  """Continuous PROPS loss; arrays (B, A). KL(pi_b || pi_t) in closed form, averaged over
  batch and action dimensions. `weights` (B,) masks rows (None = all)."""
  logratio = (_gaussian_logp(mu_b, log_std_b, actions)
              - _gaussian_logp(mu_t, log_std_t, actions))
  ratio, pg_loss, approx_kl, clipfrac = _clipped_ratio_objective(logratio, clip_eps, weights)
  var_b, var_t = jnp.exp(2 * log_std_b), jnp.exp(2 * log_std_t)
  kl_dims = log_std_t - log_std_b + (var_b + (mu_b - mu_t) ** 2) / (2 * var_t) - 0.5
  kl = _mean(jnp.mean(kl_dims, -1), weights)
  loss = pg_loss + kl_coef * kl
  return loss, {'ratio': ratio, 'pg_loss': pg_loss, 'kl': kl, 'approx_kl': approx_kl,
                'clipfrac': clipfrac}


def behavior_loss_categorical(logits_b: jax.Array, logits_t: jax.Array, actions: jax.Array,
                              clip_eps: float, kl_coef: float,
                              weights: jax.Array | None = None, official_kl: bool = False
                              ) -> tuple[jax.Array, dict]:
  """Discrete PROPS loss; logits (B, K), actions (B,). KL(pi_t || pi_b) exact, mean over rows.

  official_kl=True reproduces the official code's regulariser: it multiplies pi_t(a|s) of shape
  (B, 1) by log pi_t(a|s) - log pi_b(a|s) of shape (B,), which broadcasts to (B, B) and averages
  to mean(pi_t(a|s)) * mean(log-ratio) instead of a KL."""
  logp_b = jax.nn.log_softmax(logits_b)
  logp_t = jax.nn.log_softmax(logits_t)
  a = actions.astype(jnp.int32)[..., None]
  lb = jnp.take_along_axis(logp_b, a, -1)[..., 0]
  lt = jnp.take_along_axis(logp_t, a, -1)[..., 0]
  ratio, pg_loss, approx_kl, clipfrac = _clipped_ratio_objective(lb - lt, clip_eps, weights)
  if official_kl:
    kl = _mean(jnp.exp(lt), weights) * _mean(lt - lb, weights)
  else:
    kl = _mean(jnp.sum(jnp.exp(logp_t) * (logp_t - logp_b), -1), weights)
  loss = pg_loss + kl_coef * kl
  return loss, {'ratio': ratio, 'pg_loss': pg_loss, 'kl': kl, 'approx_kl': approx_kl,
                'clipfrac': clipfrac}
