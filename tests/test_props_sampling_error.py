"""Sampling error equals the tabular closed form; the network MLE fit recovers it."""

import jax
import jax.numpy as jnp
import numpy as np

from common.rl import networks
from papers.props import sampling_error as se


def test_tabular_closed_form():
  probs = jnp.array([0.5, 0.25, 0.25])
  actions = jnp.array([0, 0, 1, 0])  # p_D = (3/4, 1/4, 0)
  want = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.25)
  np.testing.assert_allclose(se.tabular_sampling_error(actions, probs), want, rtol=1e-6)
  np.testing.assert_allclose(se.tabular_sampling_error(jnp.array([0, 1, 2, 0]), probs), 0.0,
                             atol=1e-7)


def test_network_empirical_policy_matches_tabular():
  """One state: the fitted output layer reaches counts / N, so SE -> the tabular value."""
  actor = networks.Actor(3, True)
  obs = jnp.ones((40, 2))
  params = actor.init(jax.random.key(0), obs[:1])
  probs = jax.nn.softmax(actor.apply(params, obs[:1]))[0]
  actions = jnp.array([0] * 20 + [1] * 15 + [2] * 5)
  got = se.network_sampling_error(actor.apply, True, params, obs, actions, jnp.ones(40),
                                  steps=600, lr=3e-2)
  want = se.tabular_sampling_error(actions, probs)
  np.testing.assert_allclose(got, want, rtol=0.05)
  emp = se.empirical_policy(actor.apply, True, params, obs, actions, jnp.ones(40), 5, 1e-2)
  for name in se.FROZEN:  # the first two layers stay frozen
    np.testing.assert_array_equal(emp['params'][name]['kernel'], params['params'][name]['kernel'])
