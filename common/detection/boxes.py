"""Boxes (x0, y0, x1, y1) in pixels: anchors, IoU, the (10, 10, 5, 5) box coder, NMS.

`plus_one=True` is the maskrcnn-benchmark convention the ATSS and Sampling-Free official code
use: a box [x0, x1] covers pixels x0..x1, so its width is x1 - x0 + 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

WEIGHTS = (10.0, 10.0, 5.0, 5.0)
CLIP = math.log(1000.0 / 16)  # bbox_xform_clip of the official code


def anchors_for_level(height: int, width: int, stride: int, size: float,
                      aspect_ratios: Sequence[float] = (1.0,),
                      scales: Sequence[float] = (1.0,), convention: str = 'official'
                      ) -> np.ndarray:
  """Anchors [height * width * A, 4], row-major over locations, A = ratios x scales per cell.

  'official' (maskrcnn-benchmark): base box [0, 0, s-1, s-1], centre (s-1)/2 + k*s and
  width S (+1 convention). 'mmdet': centre k*s, box centre +- S/2, no +1.
  """
  base = []
  for r in aspect_ratios:  # r = h / w, area preserved
    for sc in scales:
      area = (size * sc) ** 2
      w = math.sqrt(area / r)
      h = w * r
      if convention == 'official':  # _ratio_enum / _scale_enum round the sizes
        w0 = round(math.sqrt(stride * stride / r))
        h0 = round(w0 * r)
        w, h = w0 * size * sc / stride, h0 * size * sc / stride
        c = (stride - 1) / 2.0
        base.append([c - 0.5 * (w - 1), c - 0.5 * (h - 1), c + 0.5 * (w - 1), c + 0.5 * (h - 1)])
      elif convention == 'mmdet':
        base.append([-0.5 * w, -0.5 * h, 0.5 * w, 0.5 * h])
      else:
        raise ValueError(f'unknown anchor convention {convention!r}: use "official" or "mmdet"')
  base = np.asarray(base, np.float32)
  ys, xs = np.meshgrid(np.arange(height) * stride, np.arange(width) * stride, indexing='ij')
  shifts = np.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4).astype(np.float32)
  return (shifts + base[None]).reshape(-1, 4)


def pyramid_anchors(image_size: int, strides: Sequence[int], sizes: Sequence[float],
                    aspect_ratios: Sequence[float] = (1.0,), scales: Sequence[float] = (1.0,),
                    convention: str = 'official') -> tuple[np.ndarray, tuple[int, ...]]:
  """All levels' anchors concatenated [N, 4] and the number per level (feature map = ceil(H/s))."""
  levels = [anchors_for_level(-(-image_size // s), -(-image_size // s), s, z, aspect_ratios,
                              scales, convention) for s, z in zip(strides, sizes, strict=True)]
  return np.concatenate(levels), tuple(len(a) for a in levels)


def area(boxes: jax.Array, plus_one: bool = True) -> jax.Array:
  one = 1.0 if plus_one else 0.0
  return (boxes[..., 2] - boxes[..., 0] + one) * (boxes[..., 3] - boxes[..., 1] + one)


def iou(a: jax.Array, b: jax.Array, plus_one: bool = True) -> jax.Array:
  """Pairwise IoU [N, M] of boxes a [N, 4] and b [M, 4] (boxlist_iou / bbox_overlaps)."""
  one = 1.0 if plus_one else 0.0
  lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
  rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  wh = jnp.clip(rb - lt + one, 0.0)
  inter = wh[..., 0] * wh[..., 1]
  union = area(a, plus_one)[:, None] + area(b, plus_one)[None, :] - inter
  return inter / jnp.maximum(union, 1e-6)


def centers(boxes: jax.Array) -> jax.Array:
  """(x0 + x1) / 2, (y0 + y1) / 2 as the official code computes anchor and gt centres."""
  return jnp.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], -1)


INSIDE_MARGIN = 0.01  # a centre is inside a gt when min(l, t, r, b) > 0.01 (official code)


def inside(points: jax.Array, gt_boxes: jax.Array, margin: float = INSIDE_MARGIN) -> jax.Array:
  """[N, G]: point n lies inside box g by more than `margin` on all four sides."""
  x, y = points[:, 0:1], points[:, 1:2]
  d = jnp.stack([x - gt_boxes[None, :, 0], y - gt_boxes[None, :, 1],
                 gt_boxes[None, :, 2] - x, gt_boxes[None, :, 3] - y], -1)
  return d.min(-1) > margin


def _whc(boxes: jax.Array):
  w = boxes[..., 2] - boxes[..., 0] + 1.0
  h = boxes[..., 3] - boxes[..., 1] + 1.0
  return w, h, boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h


def encode(gt_boxes: jax.Array, anchors: jax.Array,
           weights: Sequence[float] = WEIGHTS) -> jax.Array:
  """Regression targets (dx, dy, dw, dh) of gt_boxes w.r.t. anchors (BoxCoder.encode, +1)."""
  wx, wy, ww, wh = weights
  aw, ah, ax, ay = _whc(anchors)
  gw, gh, gx, gy = _whc(gt_boxes)
  return jnp.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                    ww * jnp.log(gw / aw), wh * jnp.log(gh / ah)], -1)


def decode(deltas: jax.Array, anchors: jax.Array,
           weights: Sequence[float] = WEIGHTS) -> jax.Array:
  """Boxes from deltas (BoxCoder.decode: dw, dh clipped at log(1000/16), x1 = cx + w/2 - 1)."""
  wx, wy, ww, wh = weights
  aw, ah, ax, ay = _whc(anchors)
  dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
  dw = jnp.minimum(deltas[..., 2] / ww, CLIP)
  dh = jnp.minimum(deltas[..., 3] / wh, CLIP)
  cx, cy = dx * aw + ax, dy * ah + ay
  w, h = jnp.exp(dw) * aw, jnp.exp(dh) * ah
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w - 1, cy + 0.5 * h - 1], -1)


def centerness_targets(anchors: jax.Array, matched_gt_boxes: jax.Array) -> jax.Array:
  """sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)) from the anchor centre (ATSS / FCOS)."""
  c = centers(anchors)
  l_ = c[..., 0] - matched_gt_boxes[..., 0]
  t_ = c[..., 1] - matched_gt_boxes[..., 1]
  r_ = matched_gt_boxes[..., 2] - c[..., 0]
  b_ = matched_gt_boxes[..., 3] - c[..., 1]
  lr = jnp.minimum(l_, r_) / jnp.maximum(jnp.maximum(l_, r_), 1e-6)
  tb = jnp.minimum(t_, b_) / jnp.maximum(jnp.maximum(t_, b_), 1e-6)
  return jnp.sqrt(jnp.clip(lr * tb, 0.0))


def nms(boxes: jax.Array, scores: jax.Array, valid: jax.Array, threshold: float,
        plus_one: bool = True) -> jax.Array:
  """Greedy NMS with fixed shapes: keep mask [M] for boxes already sorted by descending score.

  Box i is kept iff it is valid and no kept box j < i overlaps it with IoU > threshold.
  """
  del scores  # order carries the scores
  overlaps = iou(boxes, boxes, plus_one) > threshold
  m = boxes.shape[0]
  earlier = jnp.arange(m)[:, None] < jnp.arange(m)[None, :]
  suppress = overlaps & earlier  # [j, i]: j earlier than i and overlapping

  def body(i, keep):
    hit = jnp.any(keep & suppress[:, i])
    return keep.at[i].set(valid[i] & ~hit)

  return jax.lax.fori_loop(0, m, body, jnp.zeros((m,), bool))


def batched_nms(boxes: jax.Array, scores: jax.Array, classes: jax.Array, valid: jax.Array,
                threshold: float, max_out: int, plus_one: bool = True):
  """Class-wise NMS (boxes offset per class), then the top `max_out` kept by score.

  Returns (indices [max_out], kept [max_out] bool) into the inputs.
  """
  order = jnp.argsort(-jnp.where(valid, scores, -jnp.inf))
  b, c, v = boxes[order], classes[order], valid[order]
  offset = (c.astype(boxes.dtype) * (jnp.max(jnp.abs(boxes)) + 2.0))[:, None]
  keep = nms(b + offset, scores[order], v, threshold, plus_one)
  ranked = jnp.where(keep, scores[order], -jnp.inf)
  _, top = jax.lax.top_k(ranked, max_out)
  return order[top], keep[top]
