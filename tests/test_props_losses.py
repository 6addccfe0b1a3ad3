"""PROPS behaviour loss: exact values, the clip direction of its gradient, both KLs."""

import jax
import jax.numpy as jnp
import numpy as np

from papers.props import losses


def test_gaussian_loss_hand_case():
  mu_b, ls_b = jnp.array([[0.5]]), jnp.array([[0.0]])
  mu_t, ls_t = jnp.array([[0.0]]), jnp.array([[0.0]])
  a = jnp.array([[1.0]])
  loss, m = losses.behavior_loss_gaussian(mu_b, ls_b, mu_t, ls_t, a, 0.3, 0.3)
  ratio = np.exp(-0.5 * 0.25 + 0.5 * 1.0)  # exp(log N(1; .5, 1) - log N(1; 0, 1))
  kl = 0.5 * 0.5 ** 2
  np.testing.assert_allclose(m['ratio'][0], ratio, rtol=1e-6)
  np.testing.assert_allclose(m['kl'], kl, rtol=1e-6)
  np.testing.assert_allclose(loss, ratio + 0.3 * kl, rtol=1e-6)  # ratio > 1 + eps: unclipped
  np.testing.assert_allclose(m['approx_kl'], (ratio - 1) - np.log(ratio), rtol=1e-6)
  assert float(m['clipfrac']) == 1.0


def test_gaussian_kl_averages_dimensions():
  mu_b, ls_b = jnp.array([[0.0, 1.0]]), jnp.array([[0.0, np.log(2.0)]])
  mu_t, ls_t = jnp.zeros((1, 2)), jnp.zeros((1, 2))
  _, m = losses.behavior_loss_gaussian(mu_b, ls_b, mu_t, ls_t, jnp.zeros((1, 2)), 0.3, 0.0)
  kl_dim2 = -np.log(2.0) + (4.0 + 1.0) / 2 - 0.5
  np.testing.assert_allclose(m['kl'], (0.0 + kl_dim2) / 2, rtol=1e-6)


def test_clip_direction_of_gradient():
  """dL/dlogit is zero when r < 1 - eps (clipped) and nonzero when r > 1 + eps."""
  eps = 0.2
  logits_t = jnp.zeros((1, 2))
  a = jnp.array([0])

  def pg(lb):
    return losses.behavior_loss_categorical(lb, logits_t, a, eps, 0.0)[0]

  low = jnp.array([[-2.0, 0.0]])   # pi_b(0) well below pi_t(0): r < 1 - eps
  high = jnp.array([[2.0, 0.0]])   # r > 1 + eps
  inside = jnp.array([[0.05, 0.0]])
  ratio = losses.behavior_loss_categorical(low, logits_t, a, eps, 0.0)[1]['ratio'][0]
  assert float(ratio) < 1 - eps
  np.testing.assert_allclose(jax.grad(pg)(low), 0.0, atol=1e-12)
  assert float(jnp.abs(jax.grad(pg)(high)).sum()) > 0
  g = jax.grad(pg)(inside)
  assert float(g[0, 0]) > 0  # descending lowers the sampled action's probability


def test_categorical_exact_kl_and_official_broadcast():
  logits_b = jnp.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]])
  logits_t = jnp.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  a = jnp.array([2, 0])
  _, m = losses.behavior_loss_categorical(logits_b, logits_t, a, 0.3, 0.3)
  pt, pb = jax.nn.softmax(logits_t), jax.nn.softmax(logits_b)
  kl = np.mean(np.sum(pt * (np.log(pt) - np.log(pb)), -1))
  np.testing.assert_allclose(m['kl'], kl, rtol=1e-6)
  _, mo = losses.behavior_loss_categorical(logits_b, logits_t, a, 0.3, 0.3, official_kl=True)
  p_a = pt[np.arange(2), a]
  lr = np.log(pt[np.arange(2), a]) - np.log(pb[np.arange(2), a])
  np.testing.assert_allclose(mo['kl'], np.mean(p_a[:, None] * lr[None, :]), rtol=1e-6)


def test_weights_mask_rows():
  logits_b = jnp.array([[0.0, 1.0], [3.0, 0.0]])
  logits_t = jnp.zeros((2, 2))
  a = jnp.array([1, 0])
  full, _ = losses.behavior_loss_categorical(logits_b[:1], logits_t[:1], a[:1], 0.3, 0.3)
  masked, _ = losses.behavior_loss_categorical(logits_b, logits_t, a, 0.3, 0.3,
                                               weights=jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(masked, full, rtol=1e-6)


def _props_loop(official: bool):
  from common.rl import loop as looplib
  from common.rl import ppo as ppolib
  from papers.props import props
  cfg = looplib.LoopConfig(total_steps=8, n=4, m=2, b=2, eval_every=1,
                           ppo=ppolib.PPOConfig(epochs=2, minibatches=2))
  agent = looplib.make_agent(3, 2, False)
  hooks = props.make_hooks(agent, cfg, props.PROPSConfig(lr=1e-2, epochs=2, minibatches=2,
                                                         official=official), True)
  return looplib.Loop(agent, cfg, hooks)


def test_official_variant_uses_pre_update_target_only_on_ppo_chunks():
  """official=True hands the behaviour update the target from before this chunk end's PPO
  update; on a chunk without a PPO update that is the current target, so the behaviour equals
  the default variant's there, and differs after a PPO update."""
  loops = {o: _props_loop(o) for o in (False, True)}
  state = loops[False].init(jax.random.key(0), jnp.zeros(3))
  state['params'] = loops[False].agent.init(jax.random.key(7))  # a later target
  chunks = [{'obs': jax.random.normal(jax.random.key(i), (2, 3)),
             'actions': jax.random.normal(jax.random.key(10 + i), (2, 2)),
             'rewards': jnp.arange(2.0) + i, 'dones': jnp.zeros(2)} for i in range(2)]
  outs = {}
  for official, loop in loops.items():
    s1, _ = loop.end_chunk(state, chunks[0], jnp.zeros(3), jnp.asarray(0.0), jax.random.key(3),
                           do_ppo=False)
    s2, _ = loop.end_chunk(s1, chunks[1], jnp.zeros(3), jnp.asarray(0.0), jax.random.key(4),
                           do_ppo=True)
    outs[official] = (s1['behavior'], s2['behavior'])
  jax.tree.map(np.testing.assert_array_equal, outs[True][0], outs[False][0])
  assert not np.array_equal(outs[True][1]['params']['out']['kernel'],
                            outs[False][1]['params']['out']['kernel'])
