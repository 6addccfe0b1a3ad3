"""UNPG: margin-head logits plus filtered mini-batch negative pairs in one softmax.

The paper (Jung et al., BMVC 2022) writes the margin softmax losses (ArcFace, CosFace) as a
pair-generation view: each sample forms one positive pair with its class weight and negative
pairs with the other class weights. UNPG adds the negative pairs (features of different
classes in the mini-batch, "MLL" pairs) to the denominator, after removing outliers
with a box-and-whisker filter:

    L = -log e^{s f(cos theta_y)} / (e^{s f(cos theta_y)} + sum_{j != y} e^{s cos theta_j}
                                     + sum_{n in S'_n} e^{s s_n})

The kept negatives s_n are shared by every row, carry no margin and pass gradients to both
features. In `jit` the filter is a mask over all i < j pairs (static shapes); called on the
global batch (jit + NamedSharding), the pairs come from every device.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

HEADS = ('arcface', 'cosface')
_ACOS_EPS = 1e-7  # keeps d acos / d cos finite at |cos| = 1


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), 1e-24))


def _as_class_by_dim(class_weights: jax.Array, dim: int) -> jax.Array:
  """Class weights as [num_classes, dim] (the official layout); a [dim, num_classes] kernel
  (flax Dense layout) is transposed when the shape says so unambiguously."""
  if class_weights.shape[-1] == dim:
    return class_weights
  if class_weights.shape[0] == dim:
    return class_weights.T
  raise ValueError(f'class_weights of shape {class_weights.shape} do not match features of '
                   f'dimension {dim}: pass [num_classes, {dim}]')


def margin_logits(features: jax.Array, class_weights: jax.Array, labels: jax.Array,
                  head: str, margin: float) -> jax.Array:
  """Unscaled logits [B, C]: cos theta_j of normalised features and class weights, with the
  target column replaced by cos(theta_y + m) (ArcFace) or cos theta_y - m (CosFace)."""
  if head not in HEADS:
    raise ValueError(f'head={head!r} is not one of {HEADS}')
  w = l2_normalize(_as_class_by_dim(class_weights, features.shape[-1]))
  cos = l2_normalize(features) @ w.T
  target = jax.nn.one_hot(labels, cos.shape[-1], dtype=bool)
  if head == 'arcface':  # cos(theta_y + m), no easy-margin or threshold, as the official code
    theta = jnp.arccos(jnp.clip(cos, -1.0 + _ACOS_EPS, 1.0 - _ACOS_EPS))
    with_margin = jnp.cos(theta + margin)
  else:  # cosface: cos theta_y - m
    with_margin = cos - margin
  return jnp.where(target, with_margin, cos)


def pair_similarities(features: jax.Array, labels: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """Cosine similarities of all pairs i < j [B(B-1)/2] (row-major upper triangle) and a flag
  that the pair is negative (different labels)."""
  x = l2_normalize(features)
  i, j = jnp.triu_indices(features.shape[0], k=1)
  sims = (x @ x.T)[i, j]
  return sims, labels[i] != labels[j]


def whisker_bounds(values: jax.Array, valid: jax.Array, wisk: float
                   ) -> tuple[jax.Array, jax.Array]:
  """Box-and-whisker bounds of the valid values: with l valid values sorted,
  Q1 = sorted[floor(0.25 l)], Q3 = sorted[floor(0.75 l)] (no interpolation),
  bounds [Q1 - wisk * IQR, Q3 + wisk * IQR]. wisk = inf gives (-inf, inf)."""
  if math.isinf(wisk):
    return jnp.asarray(-jnp.inf, values.dtype), jnp.asarray(jnp.inf, values.dtype)
  ordered = jnp.sort(jnp.where(valid, values, jnp.inf))  # valid values first, ascending
  count = jnp.sum(valid)
  last = jnp.maximum(count - 1, 0)
  q1 = ordered[jnp.minimum(count // 4, last)]
  q3 = ordered[jnp.minimum((3 * count) // 4, last)]
  iqr = q3 - q1
  return q1 - wisk * iqr, q3 + wisk * iqr


def filtered_negative_pairs(features: jax.Array, labels: jax.Array, wisk: float
                            ) -> tuple[jax.Array, jax.Array]:
  """The negative pair similarities UNPG adds: values = cosine similarities of all
  pairs i < j [B(B-1)/2]; mask = pair is negative and within the whisker bounds (inclusive)
  of the negatives' quartiles. Bounds are computed without gradient, as the official sort."""
  values, negative = pair_similarities(features, labels)
  low, high = whisker_bounds(jax.lax.stop_gradient(values), negative, wisk)
  return values, negative & (values >= low) & (values <= high)


def _softmax_cross_entropy(logits: jax.Array, labels: jax.Array,
                           where: jax.Array | None = None) -> jax.Array:
  lse = jax.nn.logsumexp(logits, axis=-1, where=where)
  return jnp.mean(lse - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0])


def margin_loss(features: jax.Array, class_weights: jax.Array, labels: jax.Array,
                head: str = 'arcface', scale: float = 64.0, margin: float = 0.5,
                wisk: float = 1.5) -> jax.Array:
  """The baseline: softmax cross-entropy of s * margin-head logits; `wisk` unused."""
  del wisk
  logits = scale * margin_logits(features, class_weights, labels, head, margin)
  return _softmax_cross_entropy(logits.astype(jnp.float32), labels)


def unpg_loss(features: jax.Array, class_weights: jax.Array, labels: jax.Array,
              head: str = 'arcface', scale: float = 64.0, margin: float = 0.5,
              wisk: float = 1.5) -> jax.Array:
  """UNPG: cross-entropy over [s * margin-head logits | s * kept negative pairs], the
  kept pairs appended to every row's denominator (masked, not dropped)."""
  cls = margin_logits(features, class_weights, labels, head, margin)
  values, keep = filtered_negative_pairs(features, labels, wisk)
  batch = features.shape[0]
  logits = scale * jnp.concatenate([cls, jnp.broadcast_to(values, (batch, values.shape[0]))],
                                   axis=-1)
  where = jnp.concatenate([jnp.ones_like(cls, bool),
                           jnp.broadcast_to(keep, (batch, keep.shape[0]))], axis=-1)
  return _softmax_cross_entropy(logits.astype(jnp.float32), labels, where)
