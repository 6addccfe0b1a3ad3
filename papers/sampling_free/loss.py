"""Guided loss scaling and the sampling-free RetinaNet loss (plain BCE over all anchors)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.detection import losses


def guided_loss_scaling(cls_loss: jax.Array, reg_loss: jax.Array) -> jax.Array:
  """L_cls <- stop_gradient(L_reg / L_cls) * L_cls: the value equals L_reg while the gradient
  is (L_reg / L_cls) dL_cls (Sec. III-C). Without stop_gradient the gradient would vanish."""
  return jax.lax.stop_gradient(reg_loss / cls_loss) * cls_loss


def retinanet_losses(cls_logits, box_deltas, reg_targets, labels, num_classes: int,
                     loss: str = 'bce', beta: float = 0.11):
  """(cls_loss, reg_loss) summed over the batch: cls / (num_pos + num_images) for BCE
  (sampling-free) or / num_pos for focal; smooth-L1 / (4 num_pos) over positives."""
  pos = labels > 0
  num_pos = pos.sum()
  targets = losses.one_hot_targets(labels, num_classes)
  valid = (labels >= 0)[..., None]
  if loss == 'bce':
    cls = jnp.sum(losses.sigmoid_bce(cls_logits, targets) * valid) / (num_pos + labels.shape[0])
  else:
    cls = jnp.sum(losses.sigmoid_focal(cls_logits, targets) * valid) / jnp.maximum(num_pos, 1)
  reg = jnp.sum(losses.smooth_l1(box_deltas, reg_targets, beta) * pos[..., None])
  return cls, reg / jnp.maximum(4 * num_pos, 1)
