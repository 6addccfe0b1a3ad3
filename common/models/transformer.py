"""A Qwen2-style transformer: causal (LM) or bidirectional (denoiser, energy).

RMSNorm, rotary position embeddings (rotate-half form), grouped-query attention with biased
q/k/v projections, SwiGLU MLP, optional tied embeddings: the layout of Hugging Face's Qwen2,
so its checkpoints map onto these parameters one to one.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
_init = nn.initializers.normal(0.02)


def rope(x: Array, positions: Array, theta: float) -> Array:
  """Rotates x [B, S, H, D] by its positions [B, S] (the rotate-half convention)."""
  half = x.shape[-1] // 2
  freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = positions[..., None, None].astype(jnp.float32) * freq  # [B, S, 1, D/2]
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)


class RMSNorm(nn.Module):
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param('scale', nn.initializers.ones, (x.shape[-1],))
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + self.eps)
    return (x32 * scale).astype(x.dtype)


def attention_mask(q_len: int, kv_mask: Array | None, causal: bool,
                   num_prefix: int = 0) -> Array:
  """Boolean mask [B or 1, 1, 1, S, m + S]: prefix slots always visible, then real keys."""
  allowed = jnp.ones((q_len, q_len), bool)
  if causal:
    allowed = jnp.tril(allowed)
  allowed = allowed[None]
  if kv_mask is not None:
    allowed = allowed & kv_mask[:, None, :]
  prefix = jnp.ones(allowed.shape[:2] + (num_prefix,), bool)
  return jnp.concatenate([prefix, allowed], -1)[:, None, None]


def attention(q: Array, k: Array, v: Array, mask: Array, causal_chunk: int = 0) -> Array:
  """softmax(q k^T / sqrt(D)) v, masked keys given no weight; q [B, K, G, S, D], k and v
  [B, K, T, D], mask [B or 1, 1, 1, S, T]. `causal_chunk` = c > 0 promises a causal mask
  whose last S keys are the queries' own positions: each block of c queries then computes
  scores only against the keys up to its end (the same result, about half the work at S >> c).
  """
  s, t = q.shape[-2], k.shape[-2]
  if causal_chunk and s > causal_chunk and s % causal_chunk == 0:
    return jnp.concatenate([
        attention(q[..., i:i + causal_chunk, :], k[..., :t - s + i + causal_chunk, :],
                  v[..., :t - s + i + causal_chunk, :],
                  mask[..., i:i + causal_chunk, :t - s + i + causal_chunk])
        for i in range(0, s, causal_chunk)], -2)
  scores = jnp.einsum('bkgsd,bktd->bkgst', q, k).astype(jnp.float32)
  scores = jnp.where(mask, scores * q.shape[-1] ** -0.5, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, -1).astype(v.dtype)
  return jnp.einsum('bkgst,bktd->bkgsd', probs, v)


class Attention(nn.Module):
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float
  dtype: jnp.dtype = jnp.float32
  causal_chunk: int = 0  # see `attention`

  @nn.compact
  def __call__(self, x: Array, positions: Array, mask: Array,
               prefix_kv: tuple[Array, Array] | None = None) -> Array:
    b, s, d = x.shape
    flat = x.reshape(b * s, d)  # 2-D matmuls: XLA:CPU runs 3-D ones' gradients ~2x slower
    dense = lambda n, bias, name: nn.DenseGeneral(  # noqa: E731
        (n, self.head_dim), use_bias=bias, kernel_init=_init, dtype=self.dtype, name=name)
    heads = lambda n, name: dense(n, True, name)(flat).reshape(b, s, n, self.head_dim)  # noqa: E731
    q = rope(heads(self.num_heads, 'q'), positions, self.rope_theta)
    k = rope(heads(self.num_kv_heads, 'k'), positions, self.rope_theta)
    v = heads(self.num_kv_heads, 'v')
    if prefix_kv is not None:  # extra key/value slots without RoPE (ParScale prefixes)
      k = jnp.concatenate([prefix_kv[0].astype(k.dtype), k], 1)
      v = jnp.concatenate([prefix_kv[1].astype(v.dtype), v], 1)
    groups = self.num_heads // self.num_kv_heads
    # [B, kv_heads, groups, S, head_dim] x [B, kv_heads, T, head_dim]: batched-matmul layout
    q = q.reshape(b, s, self.num_kv_heads, groups, self.head_dim).transpose(0, 2, 3, 1, 4)
    out = attention(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask, self.causal_chunk)
    out = out.transpose(0, 3, 1, 2, 4).reshape(b * s, self.num_heads, self.head_dim)
    return nn.DenseGeneral(d, axis=(-2, -1), use_bias=False, kernel_init=_init,
                           dtype=self.dtype, name='o')(out).reshape(b, s, d)


class MLP(nn.Module):
  hidden: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    dense = lambda n, name: nn.Dense(n, use_bias=False, kernel_init=_init,  # noqa: E731
                                     dtype=self.dtype, name=name)
    flat = x.reshape(-1, x.shape[-1])  # 2-D matmuls (see Attention)
    out = dense(x.shape[-1], 'down')(nn.silu(dense(self.hidden, 'gate')(flat))
                                     * dense(self.hidden, 'up')(flat))
    return out.reshape(x.shape)


class Block(nn.Module):
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  rope_theta: float
  norm_eps: float
  dtype: jnp.dtype = jnp.float32
  causal_chunk: int = 0

  @nn.compact
  def __call__(self, x, positions, mask, prefix_kv=None):
    x = x + Attention(self.num_heads, self.num_kv_heads, self.head_dim, self.rope_theta,
                      self.dtype, self.causal_chunk, name='attn')(
                          RMSNorm(self.norm_eps, name='norm_attn')(x), positions, mask, prefix_kv)
    return x + MLP(self.mlp_dim, self.dtype, name='mlp')(RMSNorm(self.norm_eps, name='norm_mlp')(x))


class Transformer(nn.Module):
  """Token ids [B, S] -> logits [B, S, vocab] (or final-normed hidden states [B, S, d])."""
  vocab_size: int
  num_layers: int = 2
  d_model: int = 128
  num_heads: int = 4
  num_kv_heads: int | None = None  # None: as many as num_heads (no grouping)
  mlp_dim: int = 512
  causal: bool = True
  rope_theta: float = 10000.0
  norm_eps: float = 1e-6
  tie_embeddings: bool = True
  dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32
  remat: bool = False  # recompute each block's activations in the backward pass (long sequences)
  causal_chunk: int = 64  # causal attention per block of this many queries (0: one block)

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.d_model, embedding_init=_init)
    head_dim = self.d_model // self.num_heads
    kv_heads = self.num_kv_heads or self.num_heads
    if self.num_heads % kv_heads or self.d_model % self.num_heads:
      raise ValueError(f'num_heads={self.num_heads} must divide d_model={self.d_model} and be '
                       f'a multiple of num_kv_heads={kv_heads}')
    block = nn.remat(Block) if self.remat else Block  # same parameter names either way
    self.layers = [block(self.num_heads, kv_heads, head_dim, self.mlp_dim,
                         self.rope_theta, self.norm_eps, self.dtype,
                         self.causal_chunk if self.causal else 0, name=f'layer_{i}')
                   for i in range(self.num_layers)]
    self.norm_final = RMSNorm(self.norm_eps)
    if not self.tie_embeddings:
      self.lm_head = nn.Dense(self.vocab_size, use_bias=False, kernel_init=_init, dtype=self.dtype)

  def __call__(self, tokens: Array, *, positions: Array | None = None,
               kv_mask: Array | None = None,
               prefix_kv: Sequence[tuple[Array, Array]] | None = None,
               return_hidden: bool = False) -> Array:
    """`kv_mask` [B, S] hides padding keys; `prefix_kv` gives per-layer extra (k, v) slots
    [B, m, kv_heads, head_dim], visible to every query and carrying no position."""
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    num_prefix = 0 if prefix_kv is None else prefix_kv[0][0].shape[1]
    mask = attention_mask(tokens.shape[1], kv_mask, self.causal, num_prefix)
    x = self.embed(tokens).astype(self.dtype)
    for i, layer in enumerate(self.layers):
      x = layer(x, positions, mask, None if prefix_kv is None else prefix_kv[i])
    x = self.norm_final(x)
    return x if return_hidden else self.unembed(x)

  def unembed(self, hidden: Array) -> Array:
    """Final-normed hidden states -> float32 logits."""
    if self.tie_embeddings:
      return self.embed.attend(hidden).astype(jnp.float32)
    return self.lm_head(hidden).astype(jnp.float32)
