"""RetinaNet's IoU matcher (common.detection.assign) on hand-checkable cases."""

import jax
import numpy as np

from common.detection.assign import iou_assign


def test_iou_assign_low_quality_and_ignore():
  anchors = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [30, 30, 39, 39], [0, 0, 19, 19]],
                     np.float32)
  gts = np.array([[0, 0, 9, 9], [30, 30, 49, 49]], np.float32)
  out = iou_assign(anchors, gts, np.array([2, 3]), np.array([True, True]))
  # anchor0 IoU 1 (pos); anchor1 IoU 50/150 < .4 (bg); anchor2 IoU .25 w/ gt1 but gt1's best
  # -> low-quality positive; anchor3 IoU 100/400 = .25 bg
  assert np.asarray(out['labels']).tolist() == [2, 0, 3, 0]
  assert np.asarray(out['assigned_gt']).tolist() == [0, -1, 1, -1]
  mid = np.array([[0, 0, 9, 9]], np.float32)
  out = iou_assign(np.array([[0, 0, 9, 9], [4, 0, 13, 9]], np.float32), mid, np.array([1]),
                   np.array([True]))
  assert np.asarray(out['labels']).tolist() == [1, -1]  # IoU 60/140 = .43: ignored


def test_iou_assign_without_low_quality_padded_gts_and_jit():
  anchors = np.array([[0, 0, 9, 9], [30, 30, 39, 39]], np.float32)
  gts = np.array([[0, 0, 9, 9], [0, 0, 0, 0], [30, 30, 49, 49]], np.float32)
  mask = np.array([True, False, True])
  fn = jax.jit(lambda g, lab, m: iou_assign(anchors, g, lab, m, low_quality=False))
  out = fn(gts, np.array([2, 7, 3]), mask)
  # gt2's best anchor has IoU .25 < .4: background without low-quality matches
  assert np.asarray(out['labels']).tolist() == [2, 0]
  assert float(out['ious'][0, 1]) == -1.0  # the padded gt never matches
  none = iou_assign(anchors, gts, np.array([2, 7, 3]), np.zeros(3, bool))
  assert np.asarray(none['labels']).tolist() == [0, 0]
