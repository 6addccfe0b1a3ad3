"""The PROPS window schedule and the early stop (checked before each minibatch step)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.rl import ppo
from papers.props.buffer import update_windows


def test_update_windows_schedule():
  w = update_windows(n=4, b=2, m=2, total_steps=12)
  assert [x['step'] for x in w] == [2, 4, 6, 8, 10, 12]
  assert [x['ppo_rows'] for x in w] == [None, (0, 4), None, (0, 8), None, (4, 12)]
  assert [x['behavior_rows'] for x in w] == [(0, 2), (0, 4), (0, 6), (2, 8), (4, 10), (6, 12)]
  with pytest.raises(ValueError):
    update_windows(5, 2, 2, 10)


def test_early_stop_before_step():
  """The minibatch whose KL (at the current params) exceeds the target makes no step."""
  tx = optax.sgd(1.0)
  x0 = jnp.asarray(0.0)

  def loss_fn(p, mb, w):  # each step moves p by +1; 'approx_kl' reports the current p
    return -p * jnp.sum(w) / jnp.maximum(jnp.sum(w), 1.0), {'approx_kl': p}

  batch = jnp.zeros(8)
  p, _, m = ppo.minibatch_epochs(loss_fn, x0, tx.init(x0), tx, batch, jnp.ones(8),
                                 jax.random.key(0), epochs=3, minibatches=4, target_kl=2.5)
  # steps happen at p = 0, 1, 2; at p = 3 > 2.5 the check fails before stepping
  assert float(p) == 3.0 and int(m['steps']) == 3 and bool(m['early_stopped'])
  p, _, m = ppo.minibatch_epochs(loss_fn, x0, tx.init(x0), tx, batch, jnp.ones(8),
                                 jax.random.key(0), epochs=3, minibatches=4, target_kl=100.0)
  assert float(p) == 12.0 and int(m['steps']) == 12


def test_minibatch_without_valid_rows_makes_no_step():
  tx = optax.sgd(1.0)
  x0 = jnp.asarray(0.0)

  def loss_fn(p, mb, w):
    return -p, {'approx_kl': jnp.asarray(0.0)}

  mask = jnp.zeros(8).at[:2].set(1.0)  # valid rows land in at most 2 of 4 minibatches
  p, _, m = ppo.minibatch_epochs(loss_fn, x0, tx.init(x0), tx, jnp.zeros(8), mask,
                                 jax.random.key(1), epochs=1, minibatches=4,
                                 target_kl=np.inf)
  assert 1 <= int(m['steps']) <= 2 and float(p) == float(m['steps'])
