"""The shared dense-detector stack: IoU, box coder, centerness, NMS, losses, data, COCO eval."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.detection import boxes as B
from common.detection import data as D
from common.detection import evaluation as E
from common.detection import losses as L


def test_iou_plus_one_and_plain():
  a = jnp.array([[0., 0., 9., 9.]])
  b = jnp.array([[5., 0., 14., 9.]])
  assert np.isclose(B.iou(a, b)[0, 0], 50 / 150)  # widths 10, overlap 5 x 10
  assert np.isclose(B.iou(a, b, plus_one=False)[0, 0], 4.0 * 9 / (81 + 81 - 36))


def test_encode_decode_roundtrip_and_values():
  anchors = jnp.array([[0., 0., 15., 15.], [10., 20., 41., 39.]])
  gts = jnp.array([[2., 3., 19., 12.], [8., 18., 50., 44.]])
  d = B.encode(gts, anchors)
  # hand-checked first row: anchor w=16 cx=8; gt w=18 cx=2+9=11
  np.testing.assert_allclose(d[0], [10 * 3 / 16, 10 * (3 + 5 - 8) / 16, 5 * np.log(18 / 16),
                                    5 * np.log(10 / 16)], rtol=1e-5)
  np.testing.assert_allclose(B.decode(d, anchors), gts, atol=1e-4)


def test_centerness_targets():
  anchors = jnp.array([[0., 0., 10., 10.]])  # centre (5, 5)
  gt = jnp.array([[1., 3., 13., 9.]])  # l=4 r=8 t=2 b=4
  np.testing.assert_allclose(B.centerness_targets(anchors, gt), [np.sqrt(0.5 * 0.5)], rtol=1e-6)


def test_anchor_conventions():
  a, n = B.pyramid_anchors(32, (8, 16), (32., 64.))
  assert n == (16, 4)
  np.testing.assert_allclose(a[0], [3.5 - 15.5, 3.5 - 15.5, 3.5 + 15.5, 3.5 + 15.5])
  m, _ = B.pyramid_anchors(32, (8, 16), (32., 64.), convention='mmdet')
  np.testing.assert_allclose(m[1], [8 - 16, -16, 8 + 16, 16])
  r, n9 = B.pyramid_anchors(32, (8,), (32.,), (0.5, 1.0, 2.0), (1.0, 2 ** (1 / 3), 2 ** (2 / 3)))
  assert r.shape == (16 * 9, 4)


def test_nms_greedy():
  boxes = jnp.array([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.],
                     [0., 0., 10., 9.]])
  keep = B.nms(boxes, None, jnp.array([True, True, True, False]), 0.5)
  assert keep.tolist() == [True, False, True, False]
  idx, kept = B.batched_nms(boxes, jnp.array([.9, .8, .7, .6]), jnp.array([0, 1, 0, 0]),
                            jnp.ones(4, bool), 0.5, 3)
  assert sorted(np.asarray(idx)[np.asarray(kept)].tolist()) == [0, 1, 2]  # class-wise


def test_losses():
  x = jnp.array([-11.5, 0.0, 3.0])
  t = jnp.array([0., 1., 1.])
  np.testing.assert_allclose(L.sigmoid_bce(x, t),
                             [np.log1p(np.exp(-11.5)), np.log(2), np.log1p(np.exp(-3))],
                             rtol=1e-5)
  p = jax.nn.sigmoid(x)
  want = np.array([0.75 * p[0] ** 2, 0.25 * 0.25, 0.25 * (1 - p[2]) ** 2]) * L.sigmoid_bce(x, t)
  np.testing.assert_allclose(L.sigmoid_focal(x, t), want, rtol=2e-3)
  np.testing.assert_allclose(L.smooth_l1(jnp.array([0.05, 1.0]), 0.0), [0.5 * 0.05 ** 2 / 0.11,
                                                                         1.0 - 0.055], rtol=1e-6)
  anchors = jnp.array([[0., 0., 15., 15.]])
  d = B.encode(jnp.array([[2., 2., 12., 12.]]), anchors)
  assert abs(float(L.giou_loss(d, d, anchors)[0])) < 1e-5
  assert float(L.giou_loss(jnp.zeros((1, 4)), d, anchors)[0]) > 0
  assert np.isfinite(np.asarray(jax.grad(lambda z: L.giou_loss(z, d, anchors).sum())(d))).all()


def test_canvases_and_coco_roundtrip(tmp_path):
  ds = D.make_canvases(6, 0, canvas=48, max_size=30)
  assert ds['image'].shape == (6, 48, 48, 1) and ds['mask'].any(1).all()
  b = ds['boxes'][ds['mask']]
  assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] <= 47).all()
  i = int(np.argmax(ds['mask'].sum(1) == 1)) if (ds['mask'].sum(1) == 1).any() else None
  if i is not None:  # a lone object's box is tight around the drawn pixels
    x0, y0, x1, y1 = ds['boxes'][i, 0].astype(int)
    assert ds['image'][i, y0:y1 + 1, x0:x1 + 1].max() > 60
  ann, img_dir = D.write_coco_folder(ds, len(D.SHAPES), tmp_path)
  back, coco = D.read_coco_folder(ann, img_dir, 48, 4, channels=1)
  np.testing.assert_allclose(back['boxes'], ds['boxes'])
  np.testing.assert_array_equal(back['labels'], ds['labels'])
  assert len(coco['annotations']) == int(ds['mask'].sum())
  assert json.loads(ann.read_text())['categories'][0]['id'] == 1


def test_coco_eval_perfect_and_postprocess():
  ds = D.make_canvases(4, 1, canvas=48, max_size=30)
  coco = D.to_coco(ds, len(D.SHAPES))
  dets = [{'image_id': a['image_id'], 'category_id': a['category_id'], 'bbox': a['bbox'],
           'score': 0.9} for a in coco['annotations']]
  assert E.coco_evaluate(coco, dets)['AP'] == pytest.approx(100.0)
  anchors, n = B.pyramid_anchors(48, (8, 16), (32., 64.))
  logits = jnp.full((len(anchors), 3), -9.0).at[5, 1].set(4.0).at[6, 1].set(3.0)
  out = E.postprocess(logits, jnp.zeros((len(anchors), 4)), jnp.zeros(len(anchors)),
                      jnp.asarray(anchors), n, 48, pre_nms_top_n=50, max_detections=5)
  boxes, scores, classes, valid = out
  assert int(valid.sum()) == 2 and int(classes[0]) == 1  # 5 and 6 overlap < 0.6 at stride 8
  assert float(scores[0]) == pytest.approx(np.sqrt(jax.nn.sigmoid(4.0) * 0.5), rel=1e-5)


def test_fpn_extra_levels_p6_from_p5_p7_from_relu_p6():
  # LastLevelP6P7 (USE_C5 off): P6 = conv(P5) without ReLU, P7 = conv(relu(P6))
  from flax import linen as nn

  from common.detection.model import FPN
  stages = [jax.random.normal(jax.random.key(i), (1, 16 // 2 ** i, 16 // 2 ** i, 3))
            for i in range(3)]
  fpn = FPN(features=4, num_levels=5)
  params = fpn.init(jax.random.key(0), stages)
  outs = fpn.apply(params, stages)
  assert [o.shape[1] for o in outs] == [16, 8, 4, 2, 1]
  conv = nn.Conv(4, (3, 3), strides=2)
  p = params['params']
  assert float(outs[2].min()) < 0  # a ReLU on P5 would change P6
  np.testing.assert_allclose(outs[3], conv.apply({'params': p['extra3']}, outs[2]), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(outs[4], conv.apply({'params': p['extra4']}, nn.relu(outs[3])),
                             rtol=1e-5, atol=1e-6)


def test_coco_folder_keeps_crowd_regions_for_evaluation_only(tmp_path):
  # one object and one crowd region of class 1 on a 100 x 100 image, read at 50 px: training
  # arrays hold the object only; COCOeval ignores a detection on the crowd region (AP 100),
  # where dropping the region would count it as a false positive ranked first (AP 50)
  coco = {'images': [{'id': 7, 'file_name': 'a.png', 'height': 100, 'width': 100}],
          'categories': [{'id': 3, 'name': 'x'}],
          'annotations': [
              {'id': 1, 'image_id': 7, 'category_id': 3, 'bbox': [10, 10, 20, 20],
               'area': 400, 'iscrowd': 0},
              {'id': 2, 'image_id': 7, 'category_id': 3, 'bbox': [60, 60, 30, 30],
               'area': 900, 'iscrowd': 1}]}
  ann = tmp_path / 'instances.json'
  ann.write_text(json.dumps(coco))
  arrays, gt = D.read_coco_folder(ann, tmp_path, 50, 4)
  assert int(arrays['mask'].sum()) == 1
  np.testing.assert_allclose(arrays['boxes'][0, 0], [5, 5, 14.5, 14.5])
  assert [(a['iscrowd'], a['bbox']) for a in gt['annotations']] == [
      (0, [5.0, 5.0, 10.5, 10.5]), (1, [30.0, 30.0, 15.5, 15.5])]  # last pixel 29 -> 14.5
  dets = [{'image_id': 1, 'category_id': 1, 'bbox': [30.0, 30.0, 15.5, 15.5], 'score': 0.9},
          {'image_id': 1, 'category_id': 1, 'bbox': [5.0, 5.0, 10.5, 10.5], 'score': 0.8}]
  assert E.coco_evaluate(gt, dets)['AP50'] == pytest.approx(100.0)
  dropped = dict(gt, annotations=gt['annotations'][:1])
  assert E.coco_evaluate(dropped, dets)['AP50'] == pytest.approx(50.0)


def test_nms_at_retinanet_and_sampling_free_thresholds():
  # two boxes of one class with IoU 100 / 200 = 0.5 (+1 convention): RetinaNet's NMS 0.4
  # suppresses the second, Sampling-Free's 0.55 keeps both
  from configs.sampling_free import mnist_canvas as sf
  boxes = jnp.array([[0., 0., 9., 9.], [0., 0., 9., 19.]])
  assert float(B.iou(boxes[:1], boxes[1:])[0, 0]) == pytest.approx(0.5)
  focal, free = sf.get_config('focal'), sf.get_config()
  assert focal.post.nms_threshold == 0.4 and free.post.nms_threshold == 0.55
  assert focal.method.fixed_threshold == 0.05 and focal.method.threshold == 'fixed'
  valid = jnp.ones(2, bool)
  assert B.nms(boxes, None, valid, focal.post.nms_threshold).tolist() == [True, False]
  assert B.nms(boxes, None, valid, free.post.nms_threshold).tolist() == [True, True]


def test_cached_canvases_equal_the_generator(tmp_path):
  from common.detection import pipeline
  kw = dict(canvas=32, max_size=20.0, max_objects=3)
  fresh = D.make_canvases(5, 11, **kw)
  first = pipeline.cached_canvases(5, 11, None, tmp_path, **kw)
  files = list(tmp_path.iterdir())
  assert len(files) == 1 and files[0].name.startswith('canvases_5_11_')
  again = pipeline.cached_canvases(5, 11, None, tmp_path, **kw)
  for k in fresh:
    np.testing.assert_array_equal(first[k], fresh[k])
    np.testing.assert_array_equal(again[k], fresh[k])
  pipeline.cached_canvases(5, 12, None, tmp_path, **kw)  # another seed: another file
  assert len(list(tmp_path.iterdir())) == 2
  assert pipeline.cache_dir('none') is None
