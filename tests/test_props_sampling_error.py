"""Sampling error: the tabular closed form, the network estimator on hand-checkable cases (one
state: the tabular value), the frozen features, and the convergence of its fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.rl import networks
from papers.props import sampling_error as se


def test_tabular_closed_form():
  probs = jnp.array([0.5, 0.25, 0.25])
  actions = jnp.array([0, 0, 1, 0])  # p_D = (3/4, 1/4, 0)
  want = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.25)
  np.testing.assert_allclose(se.tabular_sampling_error(actions, probs), want, rtol=1e-6)
  np.testing.assert_allclose(se.tabular_sampling_error(jnp.array([0, 1, 2, 0]), probs), 0.0,
                             atol=1e-7)


@pytest.mark.parametrize('discrete', [True, False])
def test_features_and_head_are_the_actor(discrete):
  actor = networks.Actor(3, discrete)
  obs = jax.random.normal(jax.random.key(0), (5, 4))
  params = actor.init(jax.random.key(1), obs)
  got = se.head(discrete, se.trainable(params), se.features(params, obs))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got,
               actor.apply(params, obs))
  assert set(se.trainable(params)) == ({'out'} if discrete else {'out', 'log_std'})


def test_one_state_estimate_is_the_tabular_kl():
  """One state: the fitted categorical reaches counts / N (weak prior), and the per-sample
  estimate mean log pi_D(a) - log pi(a) is KL(counts / N || pi)."""
  actor = networks.Actor(3, True)
  obs = jnp.ones((40, 2))
  params = actor.init(jax.random.key(0), obs[:1])
  probs = jax.nn.softmax(actor.apply(params, obs[:1]))[0]
  actions = jnp.array([0] * 20 + [1] * 15 + [2] * 5)
  _, theta, grad_norm = se.fit_empirical_policy(True, params, obs, actions, jnp.ones(40), 200,
                                                prior_var=1e6)
  p_d = jax.nn.softmax(se.head(True, theta, se.features(params, obs[:1])))[0]
  np.testing.assert_allclose(p_d, [0.5, 0.375, 0.125], atol=1e-4)
  got = se.per_sample_estimate(True, theta, params, obs, actions, jnp.ones(40))
  np.testing.assert_allclose(got, se.tabular_sampling_error(actions, probs), rtol=1e-4)
  assert float(grad_norm) < 1e-4


def test_mask_drops_rows_and_target_estimate_is_zero():
  actor = networks.Actor(2, True)
  obs = jax.random.normal(jax.random.key(0), (6, 3))
  params = actor.init(jax.random.key(1), obs)
  actions = jnp.array([0, 1, 1, 0, 1, 1])
  assert float(se.per_sample_estimate(True, se.trainable(params), params, obs, actions,
                                      jnp.ones(6))) == 0.0
  mask = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
  a = se.network_sampling_error(True, params, obs, actions.at[3:].set(0), mask, 50)
  b = se.network_sampling_error(True, params, obs.at[3:].set(9.0), actions, mask, 50)
  np.testing.assert_allclose(a['sampling_error'], b['sampling_error'], rtol=1e-5)


@pytest.mark.parametrize('discrete', [True, False])
def test_fit_converges_is_nonnegative_and_keeps_features(discrete):
  """On a random buffer of a random policy the estimate is >= 0 and the same after half and
  all of the iterations (converged); the feature layers are not refitted."""
  actor = networks.Actor(2, discrete)
  obs = jax.random.normal(jax.random.key(0), (256, 4))
  params = actor.init(jax.random.key(1), obs)
  actions = networks.sample(discrete, actor.apply(params, obs), jax.random.key(2))
  out = se.network_sampling_error(discrete, params, obs, actions, jnp.ones(256), 100)
  assert float(out['sampling_error']) > 0
  np.testing.assert_allclose(out['half'], out['sampling_error'], rtol=1e-2)
  assert float(out['grad_norm']) < 1e-3
  half, full, _ = se.fit_empirical_policy(discrete, params, obs, actions, jnp.ones(256), 10)
  assert set(full) == set(se.trainable(params))
