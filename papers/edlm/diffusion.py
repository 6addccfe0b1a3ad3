"""MDLM: absorbing-state ([MASK]) masked diffusion with the SUBS parameterisation.

Equation numbers refer to Xu et al. (EDLM, ICLR 2025), which restates MDLM (Sahoo et al. 2024).
The denoiser is the shared bidirectional transformer over vocab + 1 tokens (the last id is
[MASK]); it takes no time input (MDLM's `time_conditioning: False`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
NEG_INF = -1e6  # SUBS: the logit given to impossible tokens


def loglinear_sigma(t: Array, eps: float = 1e-3) -> Array:
  """Total noise sigma(t) = -log(1 - (1 - eps) t) of the log-linear schedule."""
  return -jnp.log1p(-(1.0 - eps) * t)


def loglinear_dsigma(t: Array, eps: float = 1e-3) -> Array:
  """d sigma / dt = (1 - eps) / (1 - (1 - eps) t)."""
  return (1.0 - eps) / (1.0 - (1.0 - eps) * t)


def mask_probability(t: Array, eps: float = 1e-3) -> Array:
  """alpha-complement 1 - exp(-sigma(t)) = (1 - eps) t: the chance a token is [MASK] at t."""
  return -jnp.expm1(-loglinear_sigma(t, eps))


def loss_weight(t: Array, eps: float = 1e-3) -> Array:
  """Continuous-time NELBO weight dsigma / expm1(sigma) (= 1 / t for the log-linear schedule)."""
  return loglinear_dsigma(t, eps) / jnp.expm1(loglinear_sigma(t, eps))


def antithetic_times(key: Array, batch: int, sampling_eps: float = 1e-3) -> Array:
  """Stratified ("antithetic") t in [sampling_eps, 1): one draw per 1/batch stratum."""
  u = jax.random.uniform(key, (batch,))
  t = (u / batch + jnp.arange(batch) / batch) % 1.0
  return (1.0 - sampling_eps) * t + sampling_eps


def forward_mask(key: Array, x0: Array, t: Array, mask_id: int, eps: float = 1e-3) -> Array:
  """q(x_t | x_0): each token independently becomes [MASK] with probability (1 - eps) t."""
  move = jax.random.uniform(key, x0.shape) < mask_probability(t, eps)[:, None]
  return jnp.where(move, mask_id, x0)


def subs_log_probs(logits: Array, xt: Array, mask_id: int) -> Array:
  """SUBS: [MASK] is never predicted (logit -1e6); unmasked positions carry over their token.

  logits [B, L, V] (V includes [MASK]) -> log p_theta(x0 | xt) [B, L, V] in float32.
  """
  logits = logits.astype(jnp.float32).at[..., mask_id].add(NEG_INF)
  log_probs = jax.nn.log_softmax(logits, -1)
  carry = jax.nn.one_hot(xt, logits.shape[-1], dtype=jnp.float32)
  carry = jnp.where(carry > 0, 0.0, NEG_INF)
  return jnp.where((xt == mask_id)[..., None], log_probs, carry)


def diffusion_loss(log_probs: Array, x0: Array, xt: Array, t: Array, mask_id: int,
                   eps: float = 1e-3) -> Array:
  """Continuous-time MDLM NELBO (nats per token), Eq. (3):

      E_t [ dsigma/expm1(sigma) * sum_{i: xt_i = [MASK]} -log p_theta(x0_i | xt) ] / L,

  averaged over all tokens (unmasked ones contribute 0), as the official code does.
  """
  nll = -jnp.take_along_axis(log_probs, x0[..., None], -1)[..., 0]
  nll = jnp.where(xt == mask_id, nll, 0.0)
  return (nll * loss_weight(t, eps)[:, None]).mean()


def sampling_times(steps: int, final_t: float = 1e-5) -> Array:
  """The sampler's grid linspace(1, final_t, steps + 1): step i goes from ts[i] to ts[i+1]."""
  return jnp.linspace(1.0, final_t, steps + 1)


def posterior_probs(p_x0: Array, xt: Array, t: Array, s: Array, mask_id: int) -> Array:
  """Absorbing reverse posterior q(x_s | x_t, x0 ~ p_x0) for masked x_t (Eq. (4)):

  stay [MASK] with prob s/t, else become token v with prob (t - s)/t * p_x0(v). Unmasked
  positions stay as they are (probability 1 on their token). Returns [B, L, V].
  """
  t, s = jnp.asarray(t, jnp.float32), jnp.asarray(s, jnp.float32)
  q = p_x0 * ((t - s) / t)
  q = q.at[..., mask_id].set(s / t)
  keep = jax.nn.one_hot(xt, p_x0.shape[-1], dtype=q.dtype)
  return jnp.where((xt == mask_id)[..., None], q, keep)


def posterior_step(key: Array, xt: Array, p_x0: Array, t: Array, s: Array,
                   mask_id: int) -> Array:
  """One ancestral step x_t -> x_s: each masked token is revealed with prob (t - s)/t, drawn
  from p_x0; revealed tokens never change again."""
  q = posterior_probs(p_x0, xt, t, s, mask_id)
  xs = jax.random.categorical(key, jnp.log(jnp.maximum(q, 1e-30)), -1)
  return jnp.where(xt == mask_id, xs, xt)


def sample_x0(key: Array, log_probs: Array, k: int) -> Array:
  """k independent draws x0 ~ prod_i mu(x0_i | xt): log_probs [B, L, V] -> [B, k, L]."""
  draws = jax.random.categorical(key, log_probs[:, None], -1,
                                 shape=(log_probs.shape[0], k, log_probs.shape[1]))
  return draws.astype(jnp.int32)


def in_window(t: Array, window) -> Array:
  """Whether time t lies in the importance-sampling window [window[0], window[1]] (the released
  code's `is_end` <= t <= `is_start`)."""
  return (t >= window[0]) & (t <= window[1])


def sample(key: Array, denoise: Callable[[Array], Array], batch: int, length: int,
           steps: int | Array, mask_id: int, propose: Callable | None = None,
           window: tuple[float, float] | Array = (0.0, 1.0), final_t: float = 1e-5,
           with_calls: bool = False) -> Array | tuple[Array, Array]:
  """Ancestral (ddpm_cache) sampling from all-[MASK] with S = `steps` steps (may be traced).

  denoise(xt) -> log p_theta(x0 | xt) [B, L, V] (SUBS log-probs). Step i goes from
  t = ts[i] to s = ts[i+1] on ts = linspace(1, final_t, S + 1). p_x0 is exp(log p_theta),
  cached while x_t does not change, except at the steps whose t lies in `window`: there
  `propose(key, xt, log_probs)` returns the one-hot p_x0 of the candidate chosen by parallel
  importance sampling (Algorithm 1). Masks left after the last step are filled with the argmax
  of p_theta (noise removal). With `with_calls`, also returns [denoiser calls, proposal calls]
  (int32 [2], the final noise-removal call included).
  """
  steps = jnp.asarray(steps, jnp.int32)
  time = lambda i: 1.0 - (1.0 - final_t) * i / steps  # noqa: E731  (= ts[i])
  window = jnp.asarray(window, jnp.float32)
  xt = jnp.full((batch, length), mask_id, jnp.int32)

  def body(i, carry):
    xt, log_probs, changed, calls = carry
    key_i = jax.random.fold_in(key, i)
    log_probs = jax.lax.cond(changed, denoise, lambda _: log_probs, xt)
    calls = calls.at[0].add(changed.astype(jnp.int32))
    p_x0 = jnp.exp(log_probs)
    if propose is not None:
      use = in_window(time(i), window)
      p_x0 = jax.lax.cond(use, lambda: propose(jax.random.fold_in(key_i, 1), xt, log_probs),
                          lambda: p_x0)
      calls = calls.at[1].add(use.astype(jnp.int32))
    xs = posterior_step(key_i, xt, p_x0, time(i), time(i + 1), mask_id)
    return xs, log_probs, jnp.any(xs != xt), calls

  init = (xt, denoise(xt), jnp.array(False), jnp.array([1, 0], jnp.int32))
  xt, _, _, calls = jax.lax.fori_loop(0, steps, body, init)
  final = jnp.argmax(denoise(xt), -1).astype(jnp.int32)
  out = jnp.where(xt == mask_id, final, xt)
  return (out, calls.at[0].add(1)) if with_calls else out
