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


def test_iou_assign_in_gt_step_ignores_positives_centred_outside_their_gt():
  # anchor 0 [0, 0, 9, 9] (centre 4.5, 4.5) covers gt 0 [5, 0, 9, 9] (area 50 of 100: IoU .5,
  # positive) but its centre lies left of x0 = 5; anchor 1 [0, 20, 19, 39] (centre 9.5, 29.5)
  # is gt 1's best match (IoU 200 / 600 = 1/3 < .4: a low-quality positive), its centre left of
  # x0 = 10; anchor 2 is gt 2 itself (IoU 1, centre inside); anchor 3 overlaps nothing.
  anchors = np.array([[0, 0, 9, 9], [0, 20, 19, 39], [40, 40, 49, 49], [60, 0, 69, 9]],
                     np.float32)
  gts = np.array([[5, 0, 9, 9], [10, 20, 29, 39], [40, 40, 49, 49]], np.float32)
  labels, mask = np.array([4, 5, 6]), np.ones(3, bool)
  plain = iou_assign(anchors, gts, labels, mask)
  assert np.asarray(plain['labels']).tolist() == [4, 5, 6, 0]
  out = jax.jit(lambda g: iou_assign(anchors, g, labels, mask, in_gt=True))(gts)
  assert np.asarray(out['labels']).tolist() == [-1, -1, 6, 0]  # ignored, not background
  assert np.asarray(out['assigned_gt']).tolist() == [-1, -1, 2, -1]
  # the margin: a centre 0.01 or less inside the gt's border counts as outside
  edge = np.array([[4.495, 0, 9, 9]], np.float32)  # anchor 0's centre 0.005 inside
  assert int(iou_assign(anchors[:1], edge, labels[:1], mask[:1], in_gt=True)['labels'][0]) == -1
  inner = np.array([[4.48, 0, 9, 9]], np.float32)  # 0.02 inside
  assert int(iou_assign(anchors[:1], inner, labels[:1], mask[:1], in_gt=True)['labels'][0]) == 4
