"""The shared FIFO-buffer PPO loop: learning-rate annealing per PPO update, the target the
behaviour update sees (`pre_actor`), and the on-policy reference stream."""

import dataclasses

import gymnax
import jax
import jax.numpy as jnp
import numpy as np

from common.rl import loop as looplib
from common.rl import ppo as ppolib

CFG = looplib.LoopConfig(total_steps=256, n=64, m=32, b=2, eval_every=2, eval_episodes=2,
                         ppo=ppolib.PPOConfig(lr=1e-3, epochs=2, minibatches=4))


def _chunk(m: int, key: jax.Array) -> dict:
  k1, k2 = jax.random.split(key)
  return {'obs': jax.random.normal(k1, (m, 3)), 'actions': jax.random.bernoulli(k2, 0.5, (m,)),
          'rewards': jnp.arange(m, dtype=jnp.float32), 'dones': jnp.zeros(m)}


def test_pre_actor_is_the_target_as_the_chunk_ended():
  """On a chunk without a PPO update the behaviour update sees the current target; on a chunk
  with one, the target from before that update (the official code's log-probs)."""
  cfg = dataclasses.replace(CFG, n=4, m=2, total_steps=8, eval_every=1)
  loop = looplib.Loop(looplib.make_agent(3, 2, True), cfg)
  state = loop.init(jax.random.key(0), jnp.zeros(3))
  state['params'] = loop.agent.init(jax.random.key(9))  # a target other than the initial one
  after, _ = loop.end_chunk(state, _chunk(2, jax.random.key(1)), jnp.zeros(3), jnp.asarray(0.0),
                            jax.random.key(2), do_ppo=False)
  jax.tree.map(np.testing.assert_array_equal, after['pre_actor'], state['params']['actor'])
  after_ppo, _ = loop.end_chunk(after, _chunk(2, jax.random.key(3)), jnp.zeros(3),
                                jnp.asarray(0.0),
                                jax.random.key(5), do_ppo=True)
  jax.tree.map(np.testing.assert_array_equal, after_ppo['pre_actor'], after['params']['actor'])
  assert not np.array_equal(after_ppo['params']['actor']['params']['out']['kernel'],
                            after['params']['actor']['params']['out']['kernel'])
  assert int(after_ppo['updates']) == 1 and int(after['updates']) == 0


def _run(cfg: looplib.LoopConfig, hooks: looplib.Hooks | None = None):
  env, params = gymnax.make('CartPole-v1')
  runner = looplib.make_runner(env, params, cfg, hooks or looplib.Hooks())
  carry = runner.init(jax.random.key(0))
  block = jax.jit(runner.block)
  metrics = []
  for _ in range(runner.blocks):
    carry, m = block(carry)
    metrics.append(m)
  return carry, jax.tree.map(lambda *x: np.concatenate([np.atleast_1d(v) for v in x]), *metrics)


def test_learning_rate_anneals_linearly_per_ppo_update():
  """lr of update k of K = total_steps / n: lr * (1 - k / K); `anneal_steps` sets K."""
  cfg = dataclasses.replace(CFG, ppo=dataclasses.replace(CFG.ppo, anneal_lr=True))
  _, m = _run(cfg)
  np.testing.assert_allclose(m['ppo/lr'], 1e-3 * (1 - np.arange(4) / 4), rtol=1e-6)
  _, m = _run(dataclasses.replace(cfg, anneal_steps=512))
  np.testing.assert_allclose(m['ppo/lr'], 1e-3 * (1 - np.arange(4) / 8), rtol=1e-6)
  _, m = _run(CFG)
  np.testing.assert_allclose(m['ppo/lr'], 1e-3)


def test_reference_stream_leaves_training_unchanged():
  """The reference stream changes nothing the training stream computes (same carry, same
  metrics, bit for bit); its buffer holds its own on-policy samples, seen by `measure`."""
  def measure(actor_params, view, key):
    del actor_params, key
    return {'ref_rows': jnp.sum(view['mask'] * (view['ref_obs'] != view['obs']).any(-1))}

  plain_carry, plain = _run(CFG)
  ref_carry, ref = _run(dataclasses.replace(CFG, reference=True), looplib.Hooks(measure=measure))
  state = dict(ref_carry['state'])
  ref_buf = state.pop('ref_buf')
  jax.tree.map(np.testing.assert_array_equal, state, plain_carry['state'])
  for key in ('env_state', 'obs', 'done', 'ep', 'key'):
    jax.tree.map(np.testing.assert_array_equal, ref_carry[key], plain_carry[key])
  for key in plain:
    np.testing.assert_array_equal(ref[key], plain[key], err_msg=key)
  assert 'ref' not in plain_carry and set(ref_buf) == {'obs', 'actions'}
  # every valid row its own sample (64 rows before the first update, then the full 128)
  np.testing.assert_array_equal(ref['se/ref_rows'], [64, 128, 128, 128])
  assert not np.array_equal(ref_buf['actions'], ref_carry['state']['buf']['actions'])


def test_measure_every_k_updates_leaves_training_unchanged():
  """measure_every = 2: the measurement runs before updates 1, 3, ... of each block (NaN at the
  others, also with the seeds vmapped); training is the same; block means skip the NaNs."""
  from common.rl import run as runlib

  def measure(actor_params, view, key):
    del actor_params, key
    return {'count': view['count'].astype(jnp.float32)}

  hooks = looplib.Hooks(measure=measure)
  every, every_m = _run(CFG, hooks)
  half, half_m = _run(dataclasses.replace(CFG, measure_every=2), hooks)
  np.testing.assert_array_equal(every_m['se/count'], [64, 128, 128, 128])
  np.testing.assert_array_equal(half_m['se/count'], [np.nan, 128, np.nan, 128])
  jax.tree.map(np.testing.assert_array_equal, half['state'], every['state'])
  env, params = gymnax.make('CartPole-v1')
  runner = looplib.make_runner(env, params, dataclasses.replace(CFG, measure_every=2), hooks)
  carry = jax.tree.map(lambda x: x[None], runner.init(jax.random.key(0)))
  _, m = jax.jit(jax.vmap(runner.block))(carry)
  np.testing.assert_array_equal(m['se/count'], [[np.nan, 128]])
  assert runlib.block_scalars(m, 1)['se/count/seed0'] == 128.0
