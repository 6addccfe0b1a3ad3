"""Guided loss scaling and RetinaNet's classification losses: plain BCE over all anchors
(sampling-free) or focal loss (the baseline), as the official code normalises them."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.detection import losses


def guided_loss_scaling(cls_loss: jax.Array, reg_loss: jax.Array) -> jax.Array:
  """L_cls <- stop_gradient(L_reg / L_cls) * L_cls: the value equals L_reg while the gradient
  is (L_reg / L_cls) dL_cls (Sec. III-C). Without stop_gradient the gradient would vanish."""
  return jax.lax.stop_gradient(reg_loss / cls_loss) * cls_loss


def retinanet_losses(cls_logits, box_deltas, reg_targets, labels, num_classes: int,
                     loss: str = 'bce', beta: float = 0.11, reg_norm: float = 4.0):
  """(cls_loss, reg_loss) of a batch, as the official RetinaNetLossComputationFree (BCE) and
  RetinaNetLossComputationFocalloss:

  - BCE: every anchor counts, an ignored one (label -1, between the IoU thresholds) as a
    negative of every class; focal: ignored anchors contribute nothing;
  - both classification sums / (num_pos + num_images);
  - smooth-L1 (beta) summed over positives / max(1, reg_norm * num_pos).
  """
  pos = labels > 0
  num_pos = pos.sum()
  targets = losses.one_hot_targets(labels, num_classes)
  if loss == 'bce':
    cls = jnp.sum(losses.sigmoid_bce(cls_logits, targets))
  else:
    cls = jnp.sum(losses.sigmoid_focal(cls_logits, targets) * (labels >= 0)[..., None])
  cls = cls / (num_pos + labels.shape[0])
  reg = jnp.sum(losses.smooth_l1(box_deltas, reg_targets, beta) * pos[..., None])
  return cls, reg / jnp.maximum(reg_norm * num_pos, 1)
