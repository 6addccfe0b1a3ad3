"""REDI: S(y) and |y| on hand-written sequences, the three losses and their gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from papers.redi import losses


def test_sequence_logprob_counts_eos_and_excludes_prompt():
  # tokens: [p0, p1, y0, y1, EOS, PAD]; mask on y0, y1, EOS.
  v = 4
  labels = jnp.array([[3, 2, 1, 2, 0, 0]])
  mask = jnp.array([[0, 0, 1, 1, 1, 0]], jnp.float32)
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, v)), jnp.float32)
  s, n = losses.sequence_logprob(logits, labels, mask)
  logp = jax.nn.log_softmax(logits, -1)[0]
  # position t predicts token t + 1: y0 from logits[1], y1 from [2], EOS from [3]
  expected = logp[1, 1] + logp[2, 2] + logp[3, 0]
  np.testing.assert_allclose(s[0], expected, rtol=1e-6)
  assert float(n[0]) == 3.0


def test_sequence_logprob_uniform():
  labels = jnp.zeros((2, 5), jnp.int32)
  mask = jnp.array([[0, 1, 1, 1, 1], [0, 0, 0, 1, 1]], jnp.float32)
  s, n = losses.sequence_logprob(jnp.zeros((2, 5, 8)), labels, mask)
  np.testing.assert_allclose(n, [4, 2])
  np.testing.assert_allclose(s, -np.log(8) * np.array([4, 2]), rtol=1e-6)


def test_redi_loss_values_and_gradients():
  sp, lp, sn, ln = jnp.array([-2.0]), jnp.array([4.0]), jnp.array([-6.0]), jnp.array([3.0])
  np.testing.assert_allclose(losses.redi_loss(sp, lp, sn, ln, 0.8), [0.5 - 1.6], rtol=1e-6)
  np.testing.assert_allclose(losses.redi_loss(sp, lp, sn, ln, 0.0), [0.5], rtol=1e-6)
  g = jax.grad(lambda a, b: losses.redi_loss(a, lp, b, ln, 0.8).sum(), argnums=(0, 1))(sp, sn)
  np.testing.assert_allclose(g[0], [-1 / 4], rtol=1e-6)
  np.testing.assert_allclose(g[1], [0.8 / 3], rtol=1e-6)
  # negative weighting: weight exp(gamma * S-/|y-|), not differentiated
  w = np.exp(0.5 * -2.0)
  np.testing.assert_allclose(losses.redi_loss(sp, lp, sn, ln, 0.8, gamma=0.5),
                             [0.5 - 0.8 * w * 2.0], rtol=1e-6)
  g = jax.grad(lambda b: losses.redi_loss(sp, lp, b, ln, 0.8, 0.5).sum())(sn)
  np.testing.assert_allclose(g, [0.8 * w / 3], rtol=1e-6)


def test_dpo_loss_values_and_gradients():
  sp, sn, rp, rn = (jnp.array([x]) for x in (-3.0, -5.0, -4.0, -4.0))
  z = 0.5 * ((-3 + 4) - (-5 + 4))
  np.testing.assert_allclose(losses.dpo_loss(sp, sn, rp, rn, 0.5), [np.log1p(np.exp(-z))],
                             rtol=1e-6)
  g = jax.grad(lambda a, b: losses.dpo_loss(a, b, rp, rn, 0.5).sum(), argnums=(0, 1))(sp, sn)
  sig = 1 / (1 + np.exp(z))
  np.testing.assert_allclose(g[0], [-0.5 * sig], rtol=1e-5)
  np.testing.assert_allclose(g[1], [0.5 * sig], rtol=1e-5)
  # at the reference model the loss is log 2
  np.testing.assert_allclose(losses.dpo_loss(rp, rn, rp, rn, 0.1), [np.log(2)], rtol=1e-6)


def test_simpo_loss_values_and_gradients():
  sp, lp, sn, ln = jnp.array([-2.0]), jnp.array([4.0]), jnp.array([-6.0]), jnp.array([3.0])
  z = 2.0 * (-0.5 + 2.0) - 1.0
  np.testing.assert_allclose(losses.simpo_loss(sp, lp, sn, ln, 2.0, 1.0),
                             [np.log1p(np.exp(-z))], rtol=1e-6)
  g = jax.grad(lambda a, b: losses.simpo_loss(a, lp, b, ln, 2.0, 1.0).sum(),
               argnums=(0, 1))(sp, sn)
  sig = 1 / (1 + np.exp(z))
  np.testing.assert_allclose(g[0], [-2.0 * sig / 4], rtol=1e-5)
  np.testing.assert_allclose(g[1], [2.0 * sig / 3], rtol=1e-5)


@pytest.mark.parametrize('alpha', [0.0, 0.8, 1.0])
def test_redi_is_unbounded_below_for_positive_alpha(alpha):
  lp = ln = jnp.array([5.0])
  vals = [float(losses.redi_loss(jnp.array([-1.0]), lp, jnp.array([s]), ln, alpha)[0])
          for s in (-10.0, -100.0)]
  assert (vals[1] < vals[0]) == (alpha > 0)
