"""Inference post-processing (fixed shapes, jit-able) and COCO evaluation with pycocotools."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common.detection import boxes as boxlib

METRICS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')


def postprocess(cls_logits: jax.Array, box_deltas: jax.Array, ctr_logits: jax.Array,
                anchors: jax.Array, num_per_level: Sequence[int], image_size: int, *,
                score_threshold=0.05, pre_nms_top_n: int = 1000, nms_threshold: float = 0.6,
                max_detections: int = 100, use_centerness: bool = True):
  """One image's detections: per level keep cls prob > threshold (scalar or per class [C]), the
  top `pre_nms_top_n` by score (cls x centerness when used), decode, clip, score sqrt(cls x ctr)
  (ATSS) or cls, class-wise NMS, top `max_detections`.

  Returns boxes [D, 4], scores [D], classes [D] (0-based), valid [D].
  """
  c = cls_logits.shape[-1]
  probs = jax.nn.sigmoid(cls_logits)
  thr = jnp.broadcast_to(jnp.asarray(score_threshold, probs.dtype), (c,))
  cand = probs > thr[None, :]
  score = probs * jax.nn.sigmoid(ctr_logits)[:, None] if use_centerness else probs
  all_boxes, all_scores, all_cls, all_valid = [], [], [], []
  start = 0
  for n in num_per_level:
    s = jnp.where(cand[start:start + n], score[start:start + n], -1.0).reshape(-1)
    k = min(pre_nms_top_n, n * c)
    top_s, top_i = jax.lax.top_k(s, k)
    idx = start + top_i // c
    all_boxes.append(boxlib.decode(box_deltas[idx], anchors[idx]))
    all_scores.append(jnp.sqrt(jnp.clip(top_s, 0.0)) if use_centerness else top_s)
    all_cls.append(top_i % c)
    all_valid.append(top_s > 0)
    start += n
  b = jnp.clip(jnp.concatenate(all_boxes), 0.0, image_size - 1.0)
  s = jnp.concatenate(all_scores)
  cl = jnp.concatenate(all_cls)
  v = jnp.concatenate(all_valid)
  keep_idx, kept = boxlib.batched_nms(b, s, cl, v, nms_threshold, max_detections)
  return b[keep_idx], s[keep_idx], cl[keep_idx], kept


def detections_to_coco(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                       valid: np.ndarray, image_ids: Sequence[int]) -> list[dict]:
  """Batched detections -> COCO result list (category id = class + 1, xywh with +1)."""
  out = []
  for i, image_id in enumerate(image_ids):
    for b, s, c in zip(boxes[i][valid[i]], scores[i][valid[i]], classes[i][valid[i]],
                       strict=True):
      out.append({'image_id': int(image_id), 'category_id': int(c) + 1, 'score': float(s),
                  'bbox': [float(b[0]), float(b[1]), float(b[2] - b[0] + 1),
                           float(b[3] - b[1] + 1)]})
  return out


def coco_evaluate(gt: dict, detections: list[dict],
                  area_ranges: Sequence[float] | None = None) -> dict[str, float]:
  """COCOeval bbox AP, AP50, AP75, APs, APm, APl in percent. `area_ranges` = (small_max,
  medium_max) side lengths replaces COCO's (32, 96) for small canvases."""
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  with contextlib.redirect_stdout(io.StringIO()):
    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    if not detections:
      return dict.fromkeys(METRICS, 0.0)
    coco_dt = coco_gt.loadRes(detections)
    ev = COCOeval(coco_gt, coco_dt, 'bbox')
    if area_ranges is not None:
      s, m = area_ranges
      ev.params.areaRng = [[0, 1e10], [0, s * s], [s * s, m * m], [m * m, 1e10]]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return {k: float(100 * max(v, 0.0)) for k, v in zip(METRICS, ev.stats[:6], strict=True)}
