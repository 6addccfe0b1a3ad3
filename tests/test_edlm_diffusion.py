"""EDLM / MDLM diffusion: schedule, SUBS, loss weighting, the absorbing posterior step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from papers.edlm import diffusion

EPS = 1e-3
MASK = 4  # vocab {0, 1, 2, 3} + [MASK]


def test_loglinear_schedule_values():
  t = jnp.array([0.0, 0.5, 1.0])
  np.testing.assert_allclose(diffusion.loglinear_sigma(t, EPS),
                             -np.log(1 - (1 - EPS) * np.array([0.0, 0.5, 1.0])), rtol=1e-5)
  np.testing.assert_allclose(diffusion.mask_probability(t, EPS), (1 - EPS) * t, rtol=1e-5)
  # dsigma / expm1(sigma) = 1 / t for the log-linear schedule
  ts = jnp.array([0.01, 0.3, 0.9])
  np.testing.assert_allclose(diffusion.loss_weight(ts, EPS), 1 / ts, rtol=1e-4)
  np.testing.assert_allclose(diffusion.loglinear_dsigma(ts, EPS),
                             jax.vmap(jax.grad(lambda x: diffusion.loglinear_sigma(x, EPS)))(ts),
                             rtol=1e-5)


def test_antithetic_times_one_per_stratum():
  t = np.asarray(diffusion.antithetic_times(jax.random.key(0), 8, 1e-3))
  u = (t - 1e-3) / (1 - 1e-3)
  np.testing.assert_array_equal(np.floor(u * 8), np.arange(8))
  assert t.min() >= 1e-3 and t.max() < 1


def test_forward_mask_rate():
  x0 = jnp.zeros((4, 5000), jnp.int32)
  t = jnp.array([0.0, 0.25, 0.5, 1.0])
  xt = diffusion.forward_mask(jax.random.key(1), x0, t, MASK, EPS)
  rate = np.asarray((xt == MASK).mean(1))
  np.testing.assert_allclose(rate, (1 - EPS) * np.asarray(t), atol=0.02)
  assert set(np.unique(np.asarray(xt))) <= {0, MASK}


def test_subs_log_probs():
  logits = jax.random.normal(jax.random.key(2), (1, 3, 5))
  xt = jnp.array([[MASK, 2, MASK]])
  lp = np.asarray(diffusion.subs_log_probs(logits, xt, MASK))
  p = np.exp(lp)
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
  assert (p[..., MASK] == 0).all()  # [MASK] is never predicted
  np.testing.assert_allclose(p[0, 1], [0, 0, 1, 0, 0])  # carry-over
  expect = jax.nn.log_softmax(logits[0, [0, 2], :MASK], -1)
  np.testing.assert_allclose(lp[0, [0, 2], :MASK], expect, rtol=1e-5, atol=1e-6)


def test_diffusion_loss_hand_checked():
  # two sequences of 2 tokens; only masked positions count, weight 1/t, mean over all tokens
  probs = np.full((2, 2, 5), 0.25, np.float32)
  probs[..., MASK] = 0
  log_probs = jnp.log(jnp.maximum(probs, 1e-30))
  x0 = jnp.array([[0, 1], [2, 3]])
  xt = jnp.array([[MASK, 1], [MASK, MASK]])
  t = jnp.array([0.5, 0.25])
  w = np.asarray(diffusion.loss_weight(t, EPS))
  expect = (w[0] * np.log(4) + w[1] * 2 * np.log(4)) / 4
  np.testing.assert_allclose(diffusion.diffusion_loss(log_probs, x0, xt, t, MASK, EPS), expect,
                             rtol=1e-5)
  np.testing.assert_allclose(expect, (2 * np.log(4) + 4 * 2 * np.log(4)) / 4, rtol=2e-3)
  # an unmasked position's (arbitrary) log-prob does not enter the loss
  bad = log_probs.at[0, 1].set(-50.0)
  np.testing.assert_allclose(diffusion.diffusion_loss(bad, x0, xt, t, MASK, EPS), expect,
                             rtol=1e-5)


def test_posterior_probs_absorbing():
  p_x0 = jnp.array([[[0.5, 0.25, 0.25, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.0]]])
  xt = jnp.array([[MASK, 3]])
  q = np.asarray(diffusion.posterior_probs(p_x0, xt, 1.0, 0.75, MASK))
  np.testing.assert_allclose(q[0, 0], [0.125, 0.0625, 0.0625, 0, 0.75], rtol=1e-6)
  np.testing.assert_allclose(q[0, 1], [0, 0, 0, 1, 0])  # unmasked tokens stay


def test_posterior_step_reveal_rate_and_distribution():
  n = 20000
  p = jnp.array([0.5, 0.3, 0.2, 0.0, 0.0])
  xt = jnp.full((1, n), MASK).at[0, :100].set(1)
  xs = np.asarray(diffusion.posterior_step(jax.random.key(3), xt, jnp.broadcast_to(p, (1, n, 5)),
                                           0.8, 0.6, MASK))[0]
  assert (xs[:100] == 1).all()
  masked = xs[100:]
  revealed = masked[masked != MASK]
  np.testing.assert_allclose(len(revealed) / len(masked), (0.8 - 0.6) / 0.8, atol=0.015)
  np.testing.assert_allclose(np.bincount(revealed, minlength=5)[:3] / len(revealed),
                             [0.5, 0.3, 0.2], atol=0.025)


def test_one_hot_p_x0_drives_the_step():
  candidate = jnp.array([[0, 3, 2, 1, 1, 0, 2, 3]])
  xt = jnp.full((1, 8), MASK).at[0, 2].set(2)
  one_hot = jax.nn.one_hot(candidate, 5)
  for seed in range(5):
    xs = np.asarray(diffusion.posterior_step(jax.random.key(seed), xt, one_hot, 1.0, 0.5, MASK))
    revealed = xs != MASK
    np.testing.assert_array_equal(xs[revealed], np.asarray(candidate)[revealed])
  xs = diffusion.posterior_step(jax.random.key(0), xt, one_hot, 0.5, 0.0, MASK)
  np.testing.assert_array_equal(xs, candidate)  # s = 0 reveals everything


@pytest.fixture(scope='module')
def fixed_denoiser():
  logits = jax.random.normal(jax.random.key(4), (6, 5))

  def denoise(xt):
    full = jnp.broadcast_to(logits, xt.shape + (5,))
    return diffusion.subs_log_probs(full, xt, MASK)

  return denoise


def test_sample_fills_every_mask(fixed_denoiser):
  out = jax.jit(lambda k, s: diffusion.sample(k, fixed_denoiser, 3, 6, s, MASK))(
      jax.random.key(5), 4)
  assert out.shape == (3, 6) and (np.asarray(out) < MASK).all()


def test_sample_with_proposal_returns_the_proposed_sequence(fixed_denoiser):
  target = jnp.array([[1, 2, 3, 0, 1, 2]] * 2)

  def propose(key, xt, log_probs):
    return jax.nn.one_hot(target, 5)

  out = diffusion.sample(jax.random.key(6), fixed_denoiser, 2, 6, 4, MASK, propose, (0.0, 1.0))
  np.testing.assert_array_equal(out, target)
  # a window no step reaches: the proposal is never used, p_theta's own samples are
  out0 = diffusion.sample(jax.random.key(6), fixed_denoiser, 2, 6, 4, MASK, propose, (1.5, 2.0))
  plain = diffusion.sample(jax.random.key(6), fixed_denoiser, 2, 6, 4, MASK)
  np.testing.assert_array_equal(out0, plain)


@pytest.mark.parametrize('window, in_window', [((0.0, 1.0), 4), ((0.5, 1.0), 3), ((0.4, 0.6), 1),
                                               ((1.5, 2.0), 0)])
def test_sample_counts_calls_and_uses_the_time_window(fixed_denoiser, window, in_window):
  """S = 4 steps start at t = 1, 0.75, 0.500005, 0.25 (final_t = 1e-5): the proposal runs at the
  steps whose t lies in the window; the denoiser runs at the start, after each step that
  changed x_t, and once for the final noise removal."""

  def propose(key, xt, log_probs):
    return jnp.exp(log_probs)

  out, calls = jax.jit(lambda k: diffusion.sample(k, fixed_denoiser, 64, 6, 4, MASK, propose,
                                                  window, with_calls=True))(jax.random.key(7))
  assert int(calls[1]) == in_window
  assert int(calls[0]) == 1 + 3 + 1  # 64 x 6 masks: each of the first 3 steps changes x_t
  assert (np.asarray(out) < MASK).all()
