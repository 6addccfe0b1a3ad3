"""Residual energies on top of the diffusion denoiser, and parallel importance sampling.

EDLM (Eq. (6)): p_theta,phi(x0 | xt) = mu_theta(x0 | xt) exp(-E_phi(x0, xt)) / Z_phi(xt),
with mu_theta the factorised denoiser (`diffusion.subs_log_probs`). Two energies:

* EDLM-AR (Eq. (8)), no training: E(x0, xt) = -log p_AR(x0) + log mu(x0 | xt), so that
  mu exp(-E) is proportional to the autoregressive model's joint likelihood.
* EDLM-NCE (Eq. (9)): a bidirectional transformer on embed(xt) ++ embed(x0), mean-pooled,
  with an MLP head to a scalar, trained by binary NCE against samples of the frozen denoiser.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.models.transformer import Transformer

Array = jax.Array


def _token_log_probs(log_probs: Array, tokens: Array) -> Array:
  """Accepts full log-probs [..., L, V] (gathered at `tokens`) or already gathered [..., L]."""
  log_probs = log_probs.astype(jnp.float32)
  if log_probs.ndim == tokens.ndim + 1:
    return jnp.take_along_axis(log_probs, tokens[..., None], -1)[..., 0]
  return log_probs


def ar_energy(ar_log_probs: Array, diffusion_log_probs: Array, x0: Array, xt: Array,
              mask_id: int, carry_over: bool = True) -> Array:
  """EDLM-AR energy (Eq. (8)), [B]:

      E = -sum_{i>=1} log p_AR(x0_i | x0_<i) + sum_i log mu(x0_i | xt).

  `ar_log_probs` covers positions 1..L-1 ([B, L-1, V] or gathered [B, L-1]: the AR model's
  prediction of x0_i from x0_<i); `diffusion_log_probs` covers positions 0..L-1. With
  `carry_over`, only positions masked in xt count (unmasked ones are fixed by xt). Sums are
  in float32.
  """
  log_ar = _token_log_probs(ar_log_probs, x0[..., 1:])
  log_mu = _token_log_probs(diffusion_log_probs, x0)
  if carry_over:
    masked = xt == mask_id
    log_ar = jnp.where(masked[..., 1:], log_ar, 0.0)
    log_mu = jnp.where(masked, log_mu, 0.0)
  return -log_ar.sum(-1) + log_mu.sum(-1)


def ar_log_partition(xt: Array, mask_id: int, vocab_size: int) -> Array:
  """Exact log Z(xt) of the carry-over AR energy, [B]: log V if position 0 is masked, else 0.

  Z(xt) = sum_x0 mu(x0 | xt) exp(-E(x0, xt)) = sum over the masked symbols of
  prod_{i>=1 masked} p_AR(x0_i | x0_<i). Summing out the masked symbols from the last one back,
  each AR factor sums to 1; position 0 has no AR factor, so a masked x0_0 contributes its V
  values (V = `vocab_size`, the real symbols: mu gives [MASK] no mass).
  """
  return jnp.where(xt[..., 0] == mask_id, jnp.log(float(vocab_size)), 0.0)


def nce_loss(e_pos: Array, e_neg: Array) -> Array:
  """Binary NCE (Eq. (9)): -[log sigmoid(-E(x0+)) + log sigmoid(E(x0-))], batch mean.

  Data (x0+) should get low energy, denoiser samples (x0-) high energy.
  """
  e_pos, e_neg = e_pos.astype(jnp.float32), e_neg.astype(jnp.float32)
  return -(jax.nn.log_sigmoid(-e_pos) + jax.nn.log_sigmoid(e_neg)).mean()


def importance_weights(energies: Array, temperature: float = 1.0) -> Array:
  """Self-normalised importance weights softmax(-E / temperature) over the k candidates.

  Candidates are drawn from mu, the target is mu exp(-E), so the weight of each is
  exp(-E) (Algorithm 1). energies [B, k] -> weights [B, k], rows sum to 1.
  """
  return jax.nn.softmax(-energies.astype(jnp.float32) / temperature, -1)


class EnergyNetwork(nn.Module):
  """E_phi(x0, xt): the denoiser's bidirectional transformer on xt ++ x0 (length 2L, with
  positions 0..L-1 for both halves and a segment offset on x0's), mean-pooled, MLP -> scalar."""
  vocab_size: int  # including [MASK]
  num_layers: int = 2
  d_model: int = 128
  num_heads: int = 4
  num_kv_heads: int | None = None
  mlp_dim: int = 512

  @nn.compact
  def __call__(self, x0: Array, xt: Array) -> Array:
    backbone = Transformer(self.vocab_size, self.num_layers, self.d_model, self.num_heads,
                           self.num_kv_heads, self.mlp_dim, causal=False, name='backbone')
    length = x0.shape[-1]
    tokens = jnp.concatenate([xt, x0], -1)
    positions = jnp.broadcast_to(jnp.arange(2 * length), tokens.shape)
    hidden = backbone(tokens, positions=positions, return_hidden=True)
    pooled = hidden.astype(jnp.float32).mean(1)
    h = nn.silu(nn.Dense(self.d_model, name='head_hidden')(pooled))
    return nn.Dense(1, kernel_init=nn.initializers.zeros, name='head_out')(h)[..., 0]


def choose_candidate(key: Array, candidates: Array, energies: Array, temperature: float = 1.0,
                     sign: float = 1.0) -> Array:
  """Resamples one of k candidates [B, k, L] with weights softmax(-sign * E / temperature).

  sign = +1 is Algorithm 1; sign = -1 is the released code's softmax(+E) (a control).
  """
  weights = importance_weights(sign * energies, temperature)
  index = jax.random.categorical(key, jnp.log(jnp.maximum(weights, 1e-30)), -1)
  return jnp.take_along_axis(candidates, index[:, None, None], 1)[:, 0]


def make_proposal(energy_fn: Callable[[Array, Array, Array], Array], num_candidates: int,
                  vocab_size: int, temperature: float = 1.0, sign: float = 1.0) -> Callable:
  """The sampler's `propose(key, xt, log_mu)`: draw k candidates x0 ~ mu(. | xt) (carry-over
  keeps unmasked tokens), score them with energy_fn(x0 [B*k, L], xt [B*k, L], log_mu
  [B*k, L, V]) -> [B*k], resample one, and return its one-hot p(x0) [B, L, V]."""

  def propose(key: Array, xt: Array, log_mu: Array) -> Array:
    b, length = xt.shape
    k_draw, k_pick = jax.random.split(key)
    draws = jax.random.categorical(k_draw, log_mu[:, None], -1,
                                   shape=(b, num_candidates, length)).astype(jnp.int32)
    rep = lambda a: jnp.repeat(a, num_candidates, 0)  # noqa: E731
    energies = energy_fn(draws.reshape(b * num_candidates, length), rep(xt), rep(log_mu))
    chosen = choose_candidate(k_pick, draws, energies.reshape(b, num_candidates),
                              temperature, sign)
    return jax.nn.one_hot(chosen, vocab_size, dtype=jnp.float32)

  return propose
