"""Optimal bias initialisation (Sec. III-B): the foreground prior counted with the anchor matcher.

prior = (num_fg / num_fg_plus_bg) / num_foreground_classes; bias = -log((1 - prior) / prior),
so that at step 0 every class probability equals the prior.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import jax
import jax.numpy as jnp

from common.detection.assign import iou_assign


def match_counts(anchors, gt_boxes, gt_mask, fg_iou: float = 0.5, bg_iou: float = 0.4
                 ) -> tuple[jax.Array, jax.Array]:
  """`anchor_match_counts` as arrays, jittable (padded gts are masked out by gt_mask)."""
  gt_mask = jnp.asarray(gt_mask, bool)
  out = iou_assign(jnp.asarray(anchors, jnp.float32), jnp.asarray(gt_boxes, jnp.float32),
                   jnp.ones(gt_mask.shape, jnp.int32), gt_mask, fg_iou, bg_iou)
  return (out['labels'] > 0).sum(), (out['labels'] >= 0).sum()


def anchor_match_counts(anchors, gt_boxes, gt_mask, fg_iou: float = 0.5, bg_iou: float = 0.4
                        ) -> tuple[int, int]:
  """(num_fg, num_fg + num_bg) anchors of one image under the IoU matcher with low-quality
  matches; anchors between the thresholds are excluded from both."""
  fg, total = match_counts(anchors, gt_boxes, gt_mask, fg_iou, bg_iou)
  return int(fg), int(total)


def optimal_prior(counts_iterable: Iterable[tuple[int, int]], num_classes: int) -> float:
  """Eq. (prior): (sum fg / sum (fg + bg)) / number of foreground classes."""
  fg = total = 0
  for f, t in counts_iterable:
    fg += f
    total += t
  return fg / max(total, 1) / num_classes


def bias_from_prior(prior: float) -> float:
  """b = -log((1 - prior) / prior), i.e. sigmoid(b) = prior."""
  return -math.log((1.0 - prior) / prior)


def adaptive_threshold(prior: float, num_classes: int) -> float:
  """Class-adaptive test threshold prior x (C + 1): the official code multiplies by the class
  count including background."""
  return prior * (num_classes + 1)
