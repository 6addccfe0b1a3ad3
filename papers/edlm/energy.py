"""Residual energies on top of the diffusion denoiser, and parallel importance sampling.

EDLM (Eq. (6)): p_theta,phi(x0 | xt) = mu_theta(x0 | xt) exp(-E_phi(x0, xt)) / Z_phi(xt),
with mu_theta the factorised denoiser (`diffusion.subs_log_probs`). Two energies:

* EDLM-AR (Eq. (8)), no training: E(x0, xt) = -log p_AR(x0) + log mu(x0 | xt), so that
  mu exp(-E) is proportional to the autoregressive model's joint likelihood.
* EDLM-NCE (Eq. (9)): a bidirectional transformer that fuses embed(xt) and embed(x0) per
  position (as the official code's `vocab_proj`), mean-pooled, with an MLP head to a scalar,
  trained by binary NCE against samples of the frozen denoiser. Its log Z(xt) has no closed
  form: `log_partition_bracket` gives the two estimates of Theorem 1 (Sec. 4.3).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.models.transformer import Transformer, attention_mask

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


def log_partition_bracket(neg_energy: Array) -> tuple[Array, Array]:
  """Theorem 1's two estimates of log Z(xt) from n >= 2 draws x0_j ~ mu(. | xt), [..., n] -> [...].

  T_n = log (1/n) sum_j exp(-E_j) is low in expectation (Jensen, bias about -a/n);
  (2n - 1) T_n - 2(n - 1) T_{n-1}, with T_{n-1} the mean of the n leave-one-out estimates, is
  high (bias about +a/n): E[T_n] <= log Z <= E[(2n - 1) T_n - 2(n - 1) T_{n-1}] for large n
  (the residual-EBM bracket of Deng et al., 2020). `neg_energy` holds -E_j.
  """
  w = neg_energy.astype(jnp.float32)
  n = w.shape[-1]
  t_n = jax.nn.logsumexp(w, -1) - jnp.log(float(n))
  loo = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, w[..., None, :])  # row j leaves draw j out
  t_n1 = (jax.nn.logsumexp(loo, -1) - jnp.log(float(n - 1))).mean(-1)
  return t_n, (2 * n - 1) * t_n - 2 * (n - 1) * t_n1


class EnergyNetwork(nn.Module):
  """E_phi(x0, xt), [B]: per position, Dense([embed(xt); embed(x0)]) -> d (the official code's
  `vocab_proj`), the denoiser's transformer blocks and final norm, mean-pooled, then
  Dense(d) -> ReLU -> Dense(1) (the official `energy_head`). The backbone (embedding, blocks,
  final norm) has the denoiser's parameter tree, so it starts from the denoiser. The fusion
  starts as the mean of the two embeddings (ours; the official layer starts at random)."""
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
    d = self.d_model
    half_eye = lambda key, shape, dtype=jnp.float32: 0.5 * jnp.concatenate(  # noqa: E731
        [jnp.eye(d, dtype=dtype)] * 2, 0)
    pair = jnp.concatenate([backbone.embed(xt), backbone.embed(x0)], -1)  # [B, L, 2d]
    x = nn.Dense(d, kernel_init=half_eye, name='fuse')(pair)
    positions = jnp.broadcast_to(jnp.arange(x0.shape[-1]), x0.shape)
    mask = attention_mask(x0.shape[-1], None, causal=False)
    for layer in backbone.layers:
      x = layer(x, positions, mask)
    pooled = backbone.norm_final(x).astype(jnp.float32).mean(1)
    h = nn.relu(nn.Dense(d, name='head_hidden')(pooled))
    return nn.Dense(1, use_bias=False, kernel_init=nn.initializers.zeros,
                    name='head_out')(h)[..., 0]


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
  [B*k, L, V]) -> [B*k], resample one, and return its one-hot p(x0) [B, L, V]. With k = 1 the
  energy is not evaluated (the sampler is then MDLM's in distribution)."""

  def propose(key: Array, xt: Array, log_mu: Array) -> Array:
    b, length = xt.shape
    k_draw, k_pick = jax.random.split(key)
    draws = jax.random.categorical(k_draw, log_mu[:, None], -1,
                                   shape=(b, num_candidates, length)).astype(jnp.int32)
    if num_candidates == 1:  # one candidate is always chosen: no energy needed
      return jax.nn.one_hot(draws[:, 0], vocab_size, dtype=jnp.float32)
    rep = lambda a: jnp.repeat(a, num_candidates, 0)  # noqa: E731
    energies = energy_fn(draws.reshape(b * num_candidates, length), rep(xt), rep(log_mu))
    chosen = choose_candidate(k_pick, draws, energies.reshape(b, num_candidates),
                              temperature, sign)
    return jax.nn.one_hot(chosen, vocab_size, dtype=jnp.float32)

  return propose
