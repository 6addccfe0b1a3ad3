"""Shared RL module: GAE with the CleanRL dones convention, normalisation, PPO loss."""

import jax
import jax.numpy as jnp
import numpy as np

from common.rl import networks, normalize, ppo


def gae_reference(r, v, d, last_v, last_d, gamma, lam):
  adv, last = np.zeros(len(r)), 0.0
  for t in reversed(range(len(r))):
    if t == len(r) - 1:
      nnt, nv = 1.0 - last_d, last_v
    else:
      nnt, nv = 1.0 - d[t + 1], v[t + 1]
    delta = r[t] + gamma * nv * nnt - v[t]
    last = delta + gamma * lam * nnt * last
    adv[t] = last
  return adv


def test_gae_dones_convention():
  r = np.array([1.0, 0.5, -1.0, 2.0, 0.0])
  v = np.array([0.3, -0.2, 0.1, 0.4, 1.0])
  d = np.array([1.0, 0.0, 1.0, 0.0, 0.0])  # obs 2 starts a new episode: step 1 cannot bootstrap
  adv, ret = ppo.gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(d), jnp.asarray(0.7),
                     jnp.asarray(1.0), 0.9, 0.8)
  ref = gae_reference(r, v, d, 0.7, 1.0, 0.9, 0.8)
  np.testing.assert_allclose(adv, ref, rtol=1e-6)
  np.testing.assert_allclose(ret, ref + v, rtol=1e-6)
  np.testing.assert_allclose(adv[1], r[1] - v[1], rtol=1e-6)   # episode ended after step 1
  np.testing.assert_allclose(adv[4], r[4] - v[4], rtol=1e-6)   # last_done = 1


def test_running_mean_std_matches_numpy():
  x = np.random.default_rng(0).normal(size=(50, 3)) * 3 + 1
  rms = normalize.rms_init((3,))
  for chunk in np.split(x, 5):
    rms = normalize.rms_update(rms, jnp.asarray(chunk))
  np.testing.assert_allclose(rms['mean'], x.mean(0), rtol=1e-4)
  np.testing.assert_allclose(rms['var'], x.var(0), rtol=1e-3)


def test_ppo_loss_at_old_policy():
  """At the data-collecting policy: ratio 1, approx KL 0, pg loss = -mean(normalised adv) = 0."""
  actor, critic = networks.Actor(2, True), networks.Critic()
  obs = jax.random.normal(jax.random.key(0), (16, 3))
  params = {'actor': actor.init(jax.random.key(1), obs), 'critic': critic.init(
      jax.random.key(2), obs)}
  out = actor.apply(params['actor'], obs)
  acts = jax.random.categorical(jax.random.key(3), out)
  mb = {'obs': obs, 'actions': acts, 'logp': networks.log_prob(True, out, acts),
        'values': critic.apply(params['critic'], obs),
        'advantages': jax.random.normal(jax.random.key(4), (16,)),
        'returns': jnp.zeros(16)}
  _, m = ppo.ppo_loss(params, actor.apply, critic.apply, True, mb, jnp.ones(16),
                      ppo.PPOConfig())
  np.testing.assert_allclose(m['approx_kl'], 0.0, atol=1e-6)
  np.testing.assert_allclose(m['pg_loss'], 0.0, atol=1e-6)
  assert float(m['clipfrac']) == 0.0


def test_gaussian_actor_tanh_mean_and_logprob():
  actor = networks.Actor(2, False)
  obs = jnp.ones((4, 3)) * 100.0
  params = actor.init(jax.random.key(0), obs)
  mean, log_std = actor.apply(params, obs)
  assert float(jnp.abs(mean).max()) <= 1.0 and log_std.shape == (4, 2)
  a = jnp.zeros((4, 2))
  ref = np.sum(-0.5 * np.asarray(mean) ** 2 - 0.5 * np.log(2 * np.pi), -1)
  np.testing.assert_allclose(networks.log_prob(False, (mean, log_std), a), ref, rtol=1e-5)
