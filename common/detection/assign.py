"""RetinaNet's IoU matcher: training-sample assignment of one image by anchor-gt IoU.

Takes anchors [N, 4], gt_boxes [G, 4] (padded), gt_labels [G] (1-based), gt_mask [G] (True for
real gts) and returns a dict of arrays:
  assigned_gt [N] int (-1 = not positive, else 0-based gt index),
  labels [N] int (0 = background, -1 = ignored, else the gt label),
  ious [N, G] (-1 for padded gts).
Runs inside `jit` / `vmap` (fixed shapes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.detection import boxes as boxlib


def iou_assign(anchors: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array,
               gt_mask: jax.Array, fg_iou: float = 0.5, bg_iou: float = 0.4,
               low_quality: bool = True, plus_one: bool = True, in_gt: bool = False
               ) -> dict[str, jax.Array]:
  """RetinaNet's Matcher: IoU >= fg_iou positive, < bg_iou background, between ignored (-1);
  with low-quality matches each gt's highest-IoU anchors (all ties) become positive, matched to
  their own best gt (maskrcnn-benchmark Matcher, allow_low_quality_matches=True).

  `in_gt`: the ATSS code's IoU baseline step: a positive whose anchor centre does not lie inside
  its matched gt (by more than `boxes.INSIDE_MARGIN`) is ignored (-1), not background.
  """
  gt_mask, gt_labels = jnp.asarray(gt_mask, bool), jnp.asarray(gt_labels)
  ious = jnp.where(gt_mask[None, :], boxlib.iou(anchors, gt_boxes, plus_one), -1.0)
  best_iou = ious.max(1)
  best = jnp.argmax(ious, 1)
  pos = best_iou >= fg_iou
  if low_quality:
    gt_best = ious.max(0)  # [G]
    lq = jnp.any((ious == gt_best[None, :]) & gt_mask[None, :] & (gt_best[None, :] > 0), 1)
    pos = pos | lq
  ignore = ~pos & (best_iou >= bg_iou)
  if in_gt:
    centre_in = jnp.take_along_axis(boxlib.inside(boxlib.centers(anchors), gt_boxes),
                                    best[:, None], 1)[:, 0]
    ignore = ignore | (pos & ~centre_in)
    pos = pos & centre_in
  labels = jnp.where(pos, gt_labels[best], jnp.where(ignore, -1, 0))
  return {'assigned_gt': jnp.where(pos, best, -1).astype(jnp.int32),
          'labels': labels.astype(jnp.int32), 'ious': ious}
