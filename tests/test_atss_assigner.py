"""ATSS assignment rules on hand-checkable cases, against a loop reference, and in jit."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.detection import boxes as B
from common.detection.assign import iou_assign
from configs.atss import mnist_canvas
from papers.atss import experiment
from papers.atss.assigner import assign, atss_assign, fcos_assign


def reference_atss(anchors, nums, gts, labels, topk, plus_one=True):
  """Straight loop transcription of Algorithm 1 (numpy, float64)."""
  anchors, gts = np.asarray(anchors, float), np.asarray(gts, float)
  ious = np.asarray(B.iou(jnp.asarray(anchors), jnp.asarray(gts), plus_one), float)
  ac = (anchors[:, :2] + anchors[:, 2:]) / 2
  n, g = len(anchors), len(gts)
  best = np.full(n, -np.inf)
  assigned = np.full(n, -1)
  thr = np.zeros(g)
  for j in range(g):
    gc = (gts[j, :2] + gts[j, 2:]) / 2
    d = np.sqrt(((ac - gc) ** 2).sum(1))
    cand, start = [], 0
    for m in nums:
      k = min(topk, m)
      cand += list(start + np.argsort(d[start:start + m], kind='stable')[:k])
      start += m
    v = ious[cand, j]
    thr[j] = v.mean() + v.std(ddof=1)
    for i in cand:
      inside = min(ac[i, 0] - gts[j, 0], ac[i, 1] - gts[j, 1], gts[j, 2] - ac[i, 0],
                   gts[j, 3] - ac[i, 1]) > 0.01
      if ious[i, j] >= thr[j] and inside and ious[i, j] > best[i]:
        best[i], assigned[i] = ious[i, j], j
  lab = np.where(assigned >= 0, np.asarray(labels)[assigned], 0)
  return assigned, lab, thr


@pytest.fixture(scope='module')
def grid():
  return B.pyramid_anchors(64, (4, 8, 16), (16., 32., 64.))


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_loop_reference(grid, seed):
  anchors, nums = grid
  rng = np.random.default_rng(seed)
  xy = rng.uniform(0, 40, (4, 2))
  wh = rng.uniform(6, 30, (4, 2))
  gts = np.concatenate([xy, np.minimum(xy + wh, 63)], 1).astype(np.float32)
  labels = np.array([1, 4, 2, 7])
  out = atss_assign(anchors, nums, gts, labels, np.ones(4, bool), topk=9)
  a, lab, thr = reference_atss(anchors, nums, gts, labels, 9)
  np.testing.assert_array_equal(out['assigned_gt'], a)
  np.testing.assert_array_equal(out['labels'], lab)
  np.testing.assert_allclose(out['iou_threshold'], thr, rtol=1e-5)


def test_padded_gts_change_nothing_and_jit(grid):
  anchors, nums = grid
  gts = np.array([[10, 10, 30, 25], [40, 40, 60, 62]], np.float32)
  labels = np.array([3, 5])
  base = atss_assign(anchors, nums, gts, labels, np.ones(2, bool))
  padded_gts = np.concatenate([gts[:1], np.zeros((1, 4), np.float32), gts[1:],
                               np.array([[0, 0, 63, 63]], np.float32)])
  mask = np.array([True, False, True, False])
  fn = jax.jit(lambda g, lab, m: atss_assign(anchors, nums, g, lab, m))
  out = fn(padded_gts, np.array([3, 9, 5, 9]), mask)
  remap = np.array([0, 2])
  want = np.where(base['assigned_gt'] >= 0, remap[np.maximum(base['assigned_gt'], 0)], -1)
  np.testing.assert_array_equal(out['assigned_gt'], want)
  np.testing.assert_array_equal(out['labels'], base['labels'])
  thr = np.asarray(out['iou_threshold'])
  np.testing.assert_allclose(thr[[0, 2]], base['iou_threshold'], rtol=1e-6)
  assert float(out['iou_threshold'][1]) == 0.0
  none = atss_assign(anchors, nums, padded_gts, np.array([3, 9, 5, 9]), np.zeros(4, bool))
  assert (np.asarray(none['assigned_gt']) == -1).all() and (np.asarray(none['labels']) == 0).all()


def test_top_level_smaller_than_topk():
  # level sizes 16 and 4: topk 9 takes 9 + 4 = 13 candidates
  anchors, nums = B.pyramid_anchors(32, (8, 16), (16., 32.))
  gt = np.array([[4, 4, 27, 27]], np.float32)
  out = atss_assign(anchors, nums, gt, np.array([1]), np.array([True]), topk=9)
  cand = np.asarray(out['candidates'][:, 0])
  assert cand[:16].sum() == 9 and cand[16:].sum() == 4
  v = np.asarray(out['ious'])[cand, 0]
  np.testing.assert_allclose(out['iou_threshold'][0], v.mean() + v.std(ddof=1), rtol=1e-5)


def test_gt_on_one_level_only_and_centre_rule():
  # one level, 3 anchors in a row; gt centred on anchor 1: candidates = all three (topk 9 > 3)
  anchors = np.array([[0, 0, 9, 9], [10, 0, 19, 9], [20, 0, 29, 9]], np.float32)
  gt = np.array([[10, 0, 19, 9]], np.float32)
  out = atss_assign(anchors, [3], gt, np.array([2]), np.array([True]), topk=9)
  # IoUs 0, 1, 0 -> mean 1/3, std sqrt(1/3) -> threshold 0.910; only anchor 1 passes
  np.testing.assert_allclose(out['iou_threshold'][0], 1 / 3 + np.sqrt(1 / 3), rtol=1e-5)
  assert np.asarray(out['labels']).tolist() == [0, 2, 0]
  # strict margin: an anchor centred exactly on the gt border is not inside
  one = anchors[:1]  # centre (4.5, 4.5); a single candidate's threshold is its own IoU
  on_border = atss_assign(one, [1], np.array([[4.5, 0, 20, 9]], np.float32), np.array([2]),
                          np.array([True]))
  inside = atss_assign(one, [1], np.array([[4.48, 0, 20, 9]], np.float32), np.array([2]),
                       np.array([True]))
  assert int(on_border['assigned_gt'][0]) == -1 and int(inside['assigned_gt'][0]) == 0


def test_ties_and_several_gts_claiming_one_anchor():
  anchors = np.array([[0, 0, 9, 9], [10, 0, 19, 9]], np.float32)
  # two identical gts: both claim anchor 0 with the same IoU -> the lower index wins
  gts = np.array([[0, 0, 9, 9], [0, 0, 9, 9], [0, 0, 9, 9]], np.float32)
  out = atss_assign(anchors, [2], gts, np.array([4, 6, 8]), np.array([False, True, True]),
                    topk=1)
  assert np.asarray(out['assigned_gt']).tolist() == [1, -1]
  assert np.asarray(out['labels']).tolist() == [6, 0]
  # distinct IoUs: the anchor goes to the gt it overlaps most
  gts = np.array([[0, 0, 12, 9], [0, 0, 9, 9]], np.float32)
  out = atss_assign(anchors, [2], gts, np.array([4, 6]), np.array([True, True]), topk=1)
  assert int(out['assigned_gt'][0]) == 1
  # equidistant anchors: topk=1 takes the lower index
  gt = np.array([[5, 0, 14, 9]], np.float32)
  out = atss_assign(anchors, [2], gt, np.array([1]), np.array([True]), topk=1)
  assert np.asarray(out['candidates'][:, 0]).tolist() == [True, False]


def test_mmdet_convention_uses_plain_iou(grid):
  anchors, nums = grid
  gt = np.array([[10, 12, 33, 29]], np.float32)
  o = atss_assign(anchors, nums, gt, np.array([1]), np.array([True]), convention='mmdet')
  _, _, thr = reference_atss(anchors, nums, gt, [1], 9, plus_one=False)
  np.testing.assert_allclose(o['iou_threshold'], thr, rtol=1e-5)
  with pytest.raises(ValueError):
    atss_assign(anchors, nums, gt, np.array([1]), np.array([True]), convention='x')


def test_assign_switch_uses_the_shared_iou_matcher(grid):
  anchors, nums = grid
  gts = np.array([[10, 10, 30, 25], [40, 40, 60, 62]], np.float32)
  labels, mask = np.array([3, 5]), np.ones(2, bool)
  out = assign('iou', anchors, nums, gts, labels, mask, fg_iou=0.5, bg_iou=0.4)
  want = iou_assign(anchors, gts, labels, mask, in_gt=True)  # the ATSS code's IoU baseline
  np.testing.assert_array_equal(out['labels'], want['labels'])
  np.testing.assert_array_equal(out['assigned_gt'], want['assigned_gt'])


def test_fcos_assign_scale_and_ambiguity():
  anchors = np.array([[0, 0, 9, 9], [20, 20, 29, 29]], np.float32)
  gts = np.array([[0, 0, 40, 40], [2, 2, 30, 30]], np.float32)
  out = fcos_assign(anchors, [2], gts, np.array([1, 2]), np.array([True, True]),
                    [(0, 1e8)])
  assert np.asarray(out['assigned_gt']).tolist() == [1, 1]  # both inside both: smaller area
  out = fcos_assign(anchors, [1, 1], gts, np.array([1, 2]), np.array([True, True]),
                    [(0, 10), (0, 1e8)])
  assert np.asarray(out['assigned_gt']).tolist() == [-1, 1]


def test_nine_anchors_per_location_take_topk_times_nine_candidates():
  # 32 px, strides 8 and 16, 9 anchors per location: levels of 16 x 9 = 144 and 4 x 9 = 36
  # anchors; topk 2 takes 2 x 9 = 18 per level (the official TOPK x anchors per location)
  a9 = mnist_canvas.ANCHORS9
  anchors, nums = B.pyramid_anchors(32, (8, 16), (16., 32.), a9['aspect_ratios'], a9['scales'])
  assert nums == (144, 36)
  gt, lab, mask = np.array([[4, 4, 27, 27]], np.float32), np.array([1]), np.array([True])
  nine = atss_assign(anchors, nums, gt, lab, mask, topk=2, num_anchors_per_location=9)
  cand = np.asarray(nine['candidates'][:, 0])
  assert cand[:144].sum() == 18 and cand[144:].sum() == 18
  one = atss_assign(anchors, nums, gt, lab, mask, topk=2)
  assert np.asarray(one['candidates']).sum() == 4
  # the experiment passes A from the detector config
  config = mnist_canvas.get_config('anchors9')
  config.assigner.topk = 2
  assert experiment.anchors_per_location(config) == 9
  out = experiment.assign_batch(config, anchors, nums, gt[None], lab[None], mask[None])
  np.testing.assert_array_equal(out['assigned_gt'][0], nine['assigned_gt'])
