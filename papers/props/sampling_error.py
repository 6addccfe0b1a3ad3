"""Sampling error: how far the empirical (maximum-likelihood) policy of a buffer is from the
target policy (paper Section 3).

Tabular: pi_D(a) = count(a) / N and SE = KL(pi_D || pi).

With a network policy: pi_D is the target with its feature layers (`FROZEN`) kept and its
output layer (and log-std) refitted to the buffer's (s, a) pairs, and SE is the official code's
per-sample estimate mean_{(s, a) in D} [log pi_D(a|s) - log pi(a|s)], the mean log-likelihood
ratio; for one state and the maximum-likelihood categorical it is exactly KL(counts / N || pi),
the tabular value.

The fit is a MAP estimate: mean negative log-likelihood plus a Gaussian prior N(theta_target,
prior_var I) on the refitted parameters (its weight 1 / (2 prior_var N) per sample vanishes as
the buffer grows), minimised by L-BFGS. Without the prior the fit has no well-conditioned optimum
on these buffers: the 64 tanh features of a low-dimensional state are nearly collinear, so the
likelihood keeps rising along directions the buffer hardly determines (weights grow without
bound) and the estimate keeps growing with the optimiser's budget. With it the objective is
strongly convex for a categorical head, the estimate is >= 0 (the target is a candidate), and
`network_sampling_error` returns it after half the iterations too, with the final gradient
norm, so every measurement shows that the fit converged.

The official `compute_se` instead stops a minibatch Adam fit (lr 1e-3, gradient norm clipped to
1) after a fixed number of epochs without checking convergence, with the feature kernels frozen
but their biases trainable (continuous; the discrete code trains the whole actor, whose fit
converges to memorising the buffer). Also not reproduced: the continuous release weights each
sample by its normalised |advantage| and clamps the log-std to [-3, 1] inside the estimate (the
discrete code does neither; neither is in the paper).
"""

from __future__ import annotations

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


FROZEN = ('hidden_0', 'hidden_1')  # the feature layers, shared with the target


def features(actor_params: dict, obs: jax.Array) -> jax.Array:
  """The actor's last hidden layer (the frozen features of the empirical policy)."""
  h, p = obs, actor_params['params']
  for name in FROZEN:
    h = jnp.tanh(h @ p[name]['kernel'] + p[name]['bias'])
  return h


def head(discrete: bool, theta: dict, h: jax.Array):
  """The policy distribution (as `networks.Actor` outputs it) from features and the trainable
  parameters theta = {'out': {'kernel', 'bias'}[, 'log_std']}."""
  out = h @ theta['out']['kernel'] + theta['out']['bias']
  if discrete:
    return out
  return jnp.tanh(out), jnp.broadcast_to(theta['log_std'], out.shape)


def trainable(actor_params: dict) -> dict:
  """The empirical policy's parameters, initialised at the target's: output layer (+ log-std)."""
  return {k: v for k, v in actor_params['params'].items() if k not in FROZEN}


def fit_empirical_policy(discrete: bool, actor_params: dict, obs: jax.Array, actions: jax.Array,
                         mask: jax.Array, iterations: int, prior_var: float = 1.0
                         ) -> tuple[dict, dict, jax.Array]:
  """Maximum likelihood of the output layer (+ log-std) on the frozen features, by L-BFGS from
  the target's values: (theta after iterations // 2, theta after `iterations`, the gradient norm
  of the mean negative log-likelihood at the end)."""
  h = features(actor_params, obs)
  count = jnp.maximum(jnp.sum(mask), 1.0)
  theta0 = trainable(actor_params)

  def nll(theta):  # mean negative log-likelihood + the prior N(theta0, prior_var I), per sample
    logp = networks.log_prob(discrete, head(discrete, theta, h), actions)
    sq = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(theta),
                                                    jax.tree.leaves(theta0), strict=True))
    return -jnp.sum(logp * mask) / count + 0.5 * sq / (prior_var * count)

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(nll)

  def step(carry, _):
    theta, state = carry
    value, grad = value_and_grad(theta, state=state)
    updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=nll)
    return (optax.apply_updates(theta, updates), state), None

  half, _ = jax.lax.scan(step, (theta0, opt.init(theta0)), None, length=iterations // 2)
  full, _ = jax.lax.scan(step, half, None, length=iterations - iterations // 2)
  return half[0], full[0], optax.tree_utils.tree_norm(jax.grad(nll)(full[0]))


def per_sample_estimate(discrete: bool, theta: dict, actor_params: dict, obs: jax.Array,
                        actions: jax.Array, mask: jax.Array) -> jax.Array:
  """mean over the valid buffer rows of log pi_D(a|s) - log pi(a|s)."""
  h = features(actor_params, obs)
  logratio = (networks.log_prob(discrete, head(discrete, theta, h), actions)
              - networks.log_prob(discrete, head(discrete, trainable(actor_params), h), actions))
  return jnp.sum(logratio * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def network_sampling_error(discrete: bool, actor_params: dict, obs: jax.Array,
                           actions: jax.Array, mask: jax.Array, iterations: int = 100
                           ) -> dict[str, jax.Array]:
  """{'sampling_error': the estimate after `iterations` L-BFGS iterations, 'half': after half
  of them, 'grad_norm': the fit's final gradient norm}."""
  half, full, grad_norm = fit_empirical_policy(discrete, actor_params, obs, actions, mask,
                                               iterations)
  est = {name: per_sample_estimate(discrete, theta, actor_params, obs, actions, mask)
         for name, theta in (('sampling_error', full), ('half', half))}
  return est | {'grad_norm': grad_norm}
