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


def test_anneal_fraction_is_cleanrl_linear_schedule():
  """CleanRL: frac = 1 - (update - 1) / num_updates for 1-based updates."""
  got = [float(ppo.anneal_fraction(jnp.asarray(k), 4)) for k in range(4)]
  assert got == [1.0, 0.75, 0.5, 0.25]


def test_lr_scale_equals_adam_at_the_scaled_learning_rate():
  """Adam's step is linear in its learning rate: lr_scale s == Adam(lr * s)."""
  x0 = {'w': jnp.array([1.0, -2.0, 0.5])}

  def loss_fn(p, mb, w):
    return jnp.sum((p['w'] - mb[0]) ** 2) + jnp.sum(p['w'] ** 4), {'approx_kl': jnp.asarray(0.0)}

  batch = jnp.zeros((4, 3))
  scaled = ppo.optimizer(1e-2, 0.5)
  p1, _, _ = ppo.minibatch_epochs(loss_fn, x0, scaled.init(x0), scaled, batch, jnp.ones(4),
                                  jax.random.key(0), 3, 2, np.inf, lr_scale=jnp.asarray(0.3))
  plain = ppo.optimizer(3e-3, 0.5)
  p2, _, _ = ppo.minibatch_epochs(loss_fn, x0, plain.init(x0), plain, batch, jnp.ones(4),
                                  jax.random.key(0), 3, 2, np.inf)
  np.testing.assert_allclose(p1['w'], p2['w'], rtol=1e-6)
  assert not np.allclose(p1['w'], x0['w'])


def test_entropy_bonus_enters_the_loss_with_its_coefficient():
  """loss(ent_coef) = loss(0) - ent_coef * entropy, the mean entropy of the minibatch."""
  actor, critic = networks.Actor(2, False), networks.Critic()
  obs = jax.random.normal(jax.random.key(0), (8, 3))
  params = {'actor': actor.init(jax.random.key(1), obs),
            'critic': critic.init(jax.random.key(2), obs)}
  acts = jax.random.normal(jax.random.key(3), (8, 2))
  mb = {'obs': obs, 'actions': acts, 'logp': jnp.zeros(8), 'values': jnp.zeros(8),
        'advantages': jax.random.normal(jax.random.key(4), (8,)), 'returns': jnp.ones(8)}
  l0, m0 = ppo.ppo_loss(params, actor.apply, critic.apply, False, mb, jnp.ones(8),
                        ppo.PPOConfig(ent_coef=0.0))
  l1, _ = ppo.ppo_loss(params, actor.apply, critic.apply, False, mb, jnp.ones(8),
                       ppo.PPOConfig(ent_coef=0.01))
  # log_std = 0 at init: the entropy of a 2-d unit Gaussian, 2 * 0.5 * (1 + log 2 pi)
  np.testing.assert_allclose(m0['entropy'], 1.0 + np.log(2 * np.pi), rtol=1e-6)
  np.testing.assert_allclose(l0 - l1, 0.01 * m0['entropy'], rtol=1e-5)
