"""Training-sample assignment for one image: ATSS (Alg. 1) and FCOS spatial+scale; RetinaNet's
IoU matcher (`common.detection.assign.iou_assign`) is the baseline the paper compares against.

All assigners take anchors [N, 4], gt_boxes [G, 4] (padded), gt_labels [G] (1-based), gt_mask
[G] (True for real gts) and return a dict of arrays:
  assigned_gt [N] int (-1 = not positive, else 0-based gt index),
  labels [N] int (0 = background, -1 = ignored, else the gt label).
They run inside `jit` / `vmap` (fixed shapes).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from common.detection import boxes as boxlib
from common.detection.assign import iou_assign


def _finish(candidate_iou: jax.Array, gt_labels: jax.Array) -> dict[str, jax.Array]:
  """Anchor positive for several gts -> the one with the highest IoU (lowest index on ties)."""
  best = jnp.argmax(candidate_iou, axis=1)
  pos = jnp.isfinite(jnp.max(candidate_iou, axis=1))
  assigned = jnp.where(pos, best, -1)
  labels = jnp.where(pos, gt_labels[best], 0)
  return {'assigned_gt': assigned.astype(jnp.int32), 'labels': labels.astype(jnp.int32)}


def atss_assign(anchors: jax.Array, num_anchors_per_level: Sequence[int], gt_boxes: jax.Array,
                gt_labels: jax.Array, gt_mask: jax.Array, topk: int = 9,
                convention: str = 'official', num_anchors_per_location: int = 1
                ) -> dict[str, jax.Array]:
  """ATSS (Algorithm 1). Per level the k = min(topk * A, n_level) anchors whose centres are
  closest (L2) to the gt centre are candidates; over all levels' candidates the gt's threshold
  is mean + std (unbiased) of their IoUs; positives have IoU >= threshold and their centre inside
  the gt. 'official' uses the +1 IoU of maskrcnn-benchmark, 'mmdet' the plain IoU.

  Also returns iou_threshold [G] (0 for padded gts), candidates [N, G] bool, ious [N, G].
  """
  if convention not in ('official', 'mmdet'):
    raise ValueError(f'unknown convention {convention!r}: use "official" or "mmdet"')
  anchors = jnp.asarray(anchors, jnp.float32)
  gt_boxes = jnp.asarray(gt_boxes, jnp.float32)
  gt_mask = jnp.asarray(gt_mask, bool)
  n, g = anchors.shape[0], gt_boxes.shape[0]
  ious = boxlib.iou(anchors, gt_boxes, plus_one=convention == 'official')  # [N, G]
  a_c, g_c = boxlib.centers(anchors), boxlib.centers(gt_boxes)
  dist = jnp.sqrt(((a_c[:, None, :] - g_c[None, :, :]) ** 2).sum(-1))  # [N, G]
  candidate = jnp.zeros((n, g), bool)
  start = 0
  for n_level in num_anchors_per_level:  # Alg. 1 lines 3-6
    k = min(topk * num_anchors_per_location, n_level)
    _, idx = jax.lax.top_k(-dist[start:start + n_level].T, k)  # [G, k], lowest index on ties
    candidate = candidate.at[start + idx, jnp.arange(g)[:, None]].set(True)
    start += n_level
  num_cand = candidate.sum(0)
  mean = jnp.where(candidate, ious, 0.0).sum(0) / num_cand  # Alg. 1 line 8
  var = jnp.where(candidate, (ious - mean) ** 2, 0.0).sum(0) / jnp.maximum(num_cand - 1, 1)
  threshold = mean + jnp.sqrt(var)  # Alg. 1 lines 9-10
  pos = (candidate & (ious >= threshold[None, :]) & boxlib.inside(a_c, gt_boxes)
         & gt_mask[None, :])
  out = _finish(jnp.where(pos, ious, -jnp.inf), gt_labels)
  out.update(iou_threshold=jnp.where(gt_mask, threshold, 0.0), candidates=candidate, ious=ious)
  return out


def fcos_assign(anchors: jax.Array, num_anchors_per_level: Sequence[int], gt_boxes: jax.Array,
                gt_labels: jax.Array, gt_mask: jax.Array,
                size_ranges: Sequence[tuple[float, float]]) -> dict[str, jax.Array]:
  """FCOS (the ATSS code's 'SSC'): the location (anchor centre) is positive for a gt if it lies
  inside it (spatial) and max(l, t, r, b) is in its level's range (scale); ambiguous -> the gt of
  smallest area (+1 convention)."""
  gt_mask = jnp.asarray(gt_mask, bool)
  c = boxlib.centers(anchors)
  ltrb = jnp.stack([c[:, None, 0] - gt_boxes[None, :, 0], c[:, None, 1] - gt_boxes[None, :, 1],
                    gt_boxes[None, :, 2] - c[:, None, 0], gt_boxes[None, :, 3] - c[:, None, 1]],
                   -1)
  lo = jnp.concatenate([jnp.full((n,), r[0]) for n, r in zip(num_anchors_per_level, size_ranges,
                                                              strict=True)])
  hi = jnp.concatenate([jnp.full((n,), r[1]) for n, r in zip(num_anchors_per_level, size_ranges,
                                                              strict=True)])
  m = ltrb.max(-1)
  pos = (boxlib.inside(c, gt_boxes) & (m >= lo[:, None]) & (m <= hi[:, None])
         & gt_mask[None, :])
  areas = boxlib.area(gt_boxes)
  return _finish(jnp.where(pos, -areas[None, :], -jnp.inf), gt_labels)


def assign(name: str, anchors, num_anchors_per_level, gt_boxes, gt_labels, gt_mask, **kwargs
           ) -> dict[str, jax.Array]:
  """The config switch: 'atss', 'iou' (RetinaNet's matcher, with the ATSS code's in-gt step
  unless in_gt=False) or 'fcos'."""
  if name == 'atss':
    return atss_assign(anchors, num_anchors_per_level, gt_boxes, gt_labels, gt_mask,
                       topk=kwargs.get('topk', 9), convention=kwargs.get('convention', 'official'),
                       num_anchors_per_location=kwargs.get('num_anchors_per_location', 1))
  if name == 'iou':
    return iou_assign(anchors, gt_boxes, gt_labels, gt_mask, kwargs.get('fg_iou', 0.5),
                      kwargs.get('bg_iou', 0.4), in_gt=kwargs.get('in_gt', True))
  if name == 'fcos':
    return fcos_assign(anchors, num_anchors_per_level, gt_boxes, gt_labels, gt_mask,
                       kwargs['size_ranges'])
  raise ValueError(f'unknown assigner {name!r}: use "atss", "iou" or "fcos"')
