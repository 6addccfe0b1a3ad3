"""The P-stream ParScale LM: shared backbone, per-stream prefix keys/values, learned aggregation.

Layout as in the official code: the batch is stream-major, [P * B, ...] with row p * B + b the
stream p of example b, so the P forward passes are one batched pass through the shared
`common.models.transformer.Transformer`. P = 1 is exactly the plain model (same parameters,
same logits).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.models.transformer import Transformer, rope

Array = jax.Array


def interleave_streams(hidden: Array) -> Array:
  """[P, B, S, H] -> [B, S, H * P] with feature index h * P + p (the official rearrange
  '(n b) s h -> b s (h n)')."""
  p, b, s, h = hidden.shape
  return jnp.transpose(hidden, (1, 2, 3, 0)).reshape(b, s, h * p)


def smooth(weights: Array, eps: float) -> Array:
  """w (1 - eps) + eps / P: every stream keeps at least eps / P of the mass."""
  return weights * (1.0 - eps) + eps / weights.shape[-1]


def aggregate(hidden: Array, params: dict[str, Array], eps: float) -> tuple[Array, Array]:
  """Dynamic weighted sum of the P streams (after the final norm).

  hidden [P, B, S, H]; params w1 [P*H, H], b1 [H], w2 [H, P], b2 [P] (flax Dense layout).
  z = W2 SiLU(W1 c + b1) + b2 on the interleaved concatenation c; w = smooth(softmax(z)) in
  float32. Returns (sum_p w_p h_p [B, S, H], w [B, S, P]).
  """
  c = interleave_streams(hidden)
  z = nn.silu(c @ params['w1'] + params['b1']) @ params['w2'] + params['b2']
  weights = smooth(jax.nn.softmax(z.astype(jnp.float32), axis=-1), eps)
  mixed = jnp.einsum('bsp,pbsh->bsh', weights, hidden.astype(jnp.float32))
  return mixed.astype(hidden.dtype), weights


def to_streams(x: Array, num_streams: int) -> Array:
  """[B, ...] -> [P * B, ...], stream-major copies (row p * B + b is example b)."""
  return jnp.tile(x, (num_streams,) + (1,) * (x.ndim - 1))


class Aggregator(nn.Module):
  """Holds the aggregation MLP's parameters (w1, b1, w2, b2; normal(0.02) as the official
  Linear init, or w2 = 0 with `zero_out`: uniform weights at the start) and applies
  `aggregate`."""
  eps: float
  zero_out: bool = False

  @nn.compact
  def __call__(self, hidden: Array) -> tuple[Array, Array]:
    p, h = hidden.shape[0], hidden.shape[-1]
    normal, zeros = nn.initializers.normal(0.02), nn.initializers.zeros
    params = {'w1': self.param('w1', normal, (p * h, h)), 'b1': self.param('b1', zeros, (h,)),
              'w2': self.param('w2', zeros if self.zero_out else normal, (h, p)),
              'b2': self.param('b2', zeros, (p,))}
    return aggregate(hidden, params, self.eps)


class ParScaleLM(nn.Module):
  """Token ids [B, S] -> logits [B, S, vocab] from P parallel streams of one shared backbone.

  Parameters: 'backbone' (exactly the plain `Transformer`'s), and for P > 1 'prefix_k_i' /
  'prefix_v_i' [P, kv_heads, m, head_dim] per layer i (the official layout) and 'aggregator'.
  `prefix_at_p1` gives P = 1 its prefixes too (a control: prefix tuning without parallel
  streams); P = 1 never has an aggregator.
  """
  vocab_size: int
  num_streams: int = 1
  num_prefix: int = 48
  eps: float = 0.1  # weight smoothing (0.1 in the paper's training runs)
  prefix_init: float = 0.02
  model: dict[str, Any] | None = None  # Transformer keyword arguments
  prefix_at_p1: bool = False
  zero_aggregator_out: bool = False  # last aggregator layer starts at 0 (uniform weights)

  @property
  def has_prefix(self) -> bool:
    return self.num_streams > 1 or self.prefix_at_p1

  def setup(self):
    self.backbone = Transformer(vocab_size=self.vocab_size, causal=True, **(self.model or {}))
    if self.has_prefix:
      cfg = self.model or {}
      d, heads = cfg.get('d_model', 128), cfg.get('num_heads', 4)
      kv_heads = cfg.get('num_kv_heads') or heads
      shape = (self.num_streams, kv_heads, self.num_prefix, d // heads)
      init = nn.initializers.normal(self.prefix_init)  # every stream drawn independently
      self.prefix_k = [self.param(f'prefix_k_{i}', init, shape)
                       for i in range(cfg.get('num_layers', 2))]
      self.prefix_v = [self.param(f'prefix_v_{i}', init, shape)
                       for i in range(cfg.get('num_layers', 2))]
    if self.num_streams > 1:
      self.aggregator = Aggregator(self.eps, self.zero_aggregator_out)

  def prefix_kv(self, batch: int) -> list[tuple[Array, Array]]:
    """Per-layer (k, v) [P * B, m, kv_heads, head_dim], stream-major like the tokens."""
    def expand(x):  # [P, kv, m, hd] -> [P * B, m, kv, hd]
      x = jnp.transpose(x, (0, 2, 1, 3))
      return jnp.repeat(x, batch, axis=0)
    return [(expand(k), expand(v)) for k, v in zip(self.prefix_k, self.prefix_v, strict=True)]

  def streams(self, tokens: Array) -> tuple[Array, Array, Array]:
    """(every stream's final-normed hidden states [P, B, S, H], the aggregation weights
    [B, S, P], the mixed hidden states [B, S, H])."""
    p, b = self.num_streams, tokens.shape[0]
    if not self.has_prefix:
      hidden = self.backbone(tokens, return_hidden=True)
      return hidden[None], jnp.ones(tokens.shape + (1,), jnp.float32), hidden
    hidden = self.backbone(to_streams(tokens, p), prefix_kv=self.prefix_kv(b), return_hidden=True)
    hidden = hidden.reshape((p, b) + hidden.shape[1:])
    if p == 1:
      return hidden, jnp.ones(tokens.shape + (1,), jnp.float32), hidden[0]
    mixed, weights = self.aggregator(hidden)
    return hidden, weights, mixed

  def unembed(self, hidden: Array) -> Array:
    return self.backbone.unembed(hidden)

  def __call__(self, tokens: Array, return_weights: bool = False):
    if not self.has_prefix:
      logits = self.backbone(tokens)
      return (logits, jnp.ones(tokens.shape + (1,), jnp.float32)) if return_weights else logits
    _, weights, mixed = self.streams(tokens)
    logits = self.backbone.unembed(mixed)
    return (logits, weights) if return_weights else logits


def weight_entropy(weights: Array) -> Array:
  """Mean entropy (nats) of the aggregation weights [B, S, P] over tokens (ln P = uniform)."""
  w = weights.astype(jnp.float32)
  return -(w * jnp.log(jnp.maximum(w, 1e-30))).sum(-1).mean()


def stream_diversity(hidden: Array) -> Array:
  """Mean over tokens and stream pairs p < q of ||h_p - h_q|| / mean_p ||h_p|| (hidden
  [P, B, S, H]; 0 for one stream)."""
  p = hidden.shape[0]
  if p == 1:
    return jnp.zeros((), jnp.float32)
  h = hidden.astype(jnp.float32)
  scale = jnp.linalg.norm(h, axis=-1).mean(0)  # [B, S]
  pairs = [jnp.linalg.norm(h[i] - h[j], axis=-1) / scale for i in range(p) for j in range(i)]
  return jnp.stack(pairs).mean()


def snippet_kv(backbone: Transformer, params: Any, snippets: Array) -> list[tuple[Array, Array]]:
  """The backbone's own keys and values on text snippets [n, L], as prefix slots: per layer
  (k, v) [n, kv_heads, L, head_dim], keys rotated to positions -L..-1 (each snippet reads as
  the text just before a stream's input, as a KV cache of it would hold it)."""
  n, length = snippets.shape
  positions = jnp.broadcast_to(jnp.arange(-length, 0), snippets.shape)
  _, state = backbone.apply(
      params, snippets, positions=positions, mutable=['intermediates'],
      capture_intermediates=lambda mdl, method: (method == '__call__' and mdl.name in ('k', 'v')
                                                 and isinstance(mdl, nn.DenseGeneral)))
  inter, out = state['intermediates'], []
  for i in range(backbone.num_layers):
    attn = inter[f'layer_{i}']['attn']
    k, v = (attn[x]['__call__'][0].reshape((n, length) + attn[x]['__call__'][0].shape[1:])
            for x in 'kv')
    k = rope(k, positions, backbone.rope_theta)
    out.append((jnp.transpose(k, (0, 2, 1, 3)), jnp.transpose(v, (0, 2, 1, 3))))
  return out


def count_parameters(params: Any) -> dict[str, int]:
  """Parameter counts: total, embedding, and non-embedding N (backbone body + prefixes +
  aggregator; the tied embedding is excluded, as in the paper's N)."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  total = embed = 0
  for path, leaf in flat:
    total += leaf.size
    if any(getattr(k, 'key', None) == 'embed' for k in path):
      embed += leaf.size
  return {'total': total, 'embedding': embed, 'non_embedding': total - embed}
