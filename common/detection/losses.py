"""Dense-detector losses, elementwise or summed, in log space (softplus) for stability."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.detection import boxes as boxlib


def sigmoid_bce(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Elementwise BCE with logits, -t log p - (1-t) log(1-p), via softplus (exact for p ~ 1e-5)."""
  return jax.nn.softplus(logits) - targets * logits


def sigmoid_focal(logits: jax.Array, targets: jax.Array, alpha: float = 0.25,
                  gamma: float = 2.0) -> jax.Array:
  """Elementwise sigmoid focal loss (Lin et al. 2017, eq. 5): alpha_t (1 - p_t)^gamma BCE."""
  p = jax.nn.sigmoid(logits)
  p_t = targets * p + (1 - targets) * (1 - p)
  alpha_t = targets * alpha + (1 - targets) * (1 - alpha)
  return alpha_t * (1 - p_t) ** gamma * sigmoid_bce(logits, targets)


def one_hot_targets(labels: jax.Array, num_classes: int) -> jax.Array:
  """Labels (0 = background, c >= 1 = class c-1, -1 = ignore) -> [.., C] binary targets."""
  return jax.nn.one_hot(labels - 1, num_classes) * (labels > 0)[..., None]


def smooth_l1(x: jax.Array, y: jax.Array, beta: float = 0.11) -> jax.Array:
  """Elementwise smooth L1 (maskrcnn-benchmark): 0.5 d^2 / beta if d < beta else d - beta/2."""
  d = jnp.abs(x - y)
  return jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def giou_loss(pred_deltas: jax.Array, target_deltas: jax.Array, anchors: jax.Array) -> jax.Array:
  """Elementwise 1 - GIoU of decoded boxes, as the official ATSS GIoULoss (no +1 in areas)."""
  p = boxlib.decode(pred_deltas, anchors)
  t = boxlib.decode(target_deltas, anchors)
  px1, py1 = p[..., 0], p[..., 1]
  px2, py2 = jnp.maximum(px1, p[..., 2]), jnp.maximum(py1, p[..., 3])
  tx1, ty1, tx2, ty2 = t[..., 0], t[..., 1], t[..., 2], t[..., 3]
  p_area = (px2 - px1) * (py2 - py1)
  t_area = (tx2 - tx1) * (ty2 - ty1)
  iw = jnp.minimum(px2, tx2) - jnp.maximum(px1, tx1)
  ih = jnp.minimum(py2, ty2) - jnp.maximum(py1, ty1)
  inter = jnp.where((iw > 0) & (ih > 0), iw * ih, 0.0)
  enclose = ((jnp.maximum(px2, tx2) - jnp.minimum(px1, tx1))
             * (jnp.maximum(py2, ty2) - jnp.minimum(py1, ty1)) + 1e-7)
  union = p_area + t_area - inter + 1e-7
  return 1.0 - (inter / union - (enclose - union) / enclose)
