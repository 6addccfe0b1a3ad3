"""Sampling-Free RetinaNet experiment: 9 anchors per location, IoU matcher, and one of
focal (prior 0.01), plain BCE (zero bias) or sampling-free (BCE + optimal bias + guided scaling).

    python -m common.main --config=configs/sampling_free/mnist_canvas.py:smoke --workdir=/tmp/sf

Data comes from `common.detection.pipeline.load_data`, as for ATSS: MNIST canvases, or a COCO
folder when `config.data.coco_train` is set (`configs/sampling_free/paper_coco_r50_fpn_1x.py`).
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import config as cfglib
from common import data, parallel, train
from common.detection import boxes as boxlib
from common.detection import pipeline
from papers.atss.assigner import iou_assign
from papers.sampling_free import loss as sfl
from papers.sampling_free import prior as sfp

ARMS = ('focal', 'bce', 'sampling_free')


def dataset_prior(config, train_set, anchors, num_classes: int) -> float:
  """The foreground prior over the training boxes (no images are decoded); with
  `config.prior_images` > 0, over that many images drawn with a fixed seed."""
  boxes, mask = train_set['boxes'], train_set['mask']
  limit = config.get('prior_images', 0)
  if 0 < limit < len(boxes):
    rows = np.sort(np.random.default_rng(0).choice(len(boxes), limit, replace=False))
    boxes, mask = boxes[rows], mask[rows]
  # one jitted count for the padded [G] boxes + mask of every image (an image without boxes,
  # COCO has ~1k, counts only background)
  count = jax.jit(functools.partial(sfp.match_counts, anchors))
  counts = (tuple(map(int, count(b, m))) for b, m in zip(boxes, mask, strict=True))
  return sfp.optimal_prior(counts, num_classes)


def targets(anchors, batch):
  fn = functools.partial(iou_assign, jnp.asarray(anchors))
  out = jax.vmap(fn)(batch['boxes'], batch['labels'], batch['mask'])
  matched = jnp.take_along_axis(batch['boxes'], jnp.maximum(out['assigned_gt'], 0)[..., None], 1)
  reg_t = boxlib.encode(matched, jnp.broadcast_to(jnp.asarray(anchors), matched.shape))
  return out['labels'], jnp.where((out['labels'] > 0)[..., None], reg_t, 0.0)


def split_losses(model, anchors, num_classes, arm, params, batch):
  cls_logits, box, _ = model.apply(params, pipeline.images_to_float(batch['image']))
  labels, reg_t = targets(anchors, batch)
  return sfl.retinanet_losses(cls_logits, box, reg_t, labels, num_classes,
                              'focal' if arm == 'focal' else 'bce')


def total_loss(arm, cls, reg):
  if arm == 'sampling_free':
    cls = sfl.guided_loss_scaling(cls, reg)
  return cls + reg, {'cls_loss': cls, 'reg_loss': reg}


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.validate_train(config, num_devices)
  cfglib.check_choice(config, 'arm', ARMS)


def setup(config):
  tr, val, coco, num_classes = pipeline.load_data(config)
  anchors, nums = pipeline.anchors_from_config(config)
  if config.arm == 'sampling_free':
    prior = dataset_prior(config, tr, anchors, num_classes)
    bias = sfp.bias_from_prior(prior)
  else:
    prior, bias = (0.01, sfp.bias_from_prior(0.01)) if config.arm == 'focal' else (0.5, 0.0)
  model = pipeline.detector_from_config(config, num_classes, prior_bias=bias, centerness=False)
  return tr, val, coco, num_classes, anchors, nums, prior, model


def make_grad_norm_ratio(model, anchors, num_classes, arm):
  """(params, batch) -> |d L_cls / d theta| / |d L_reg / d theta| (L_cls after guided scaling
  when used)."""
  def parts(p, batch):
    cls, reg = split_losses(model, anchors, num_classes, arm, p, batch)
    return total_loss(arm, cls, reg)[1]

  def ratio(params, batch):
    out, vjp = jax.vjp(lambda p: parts(p, batch), params)  # one forward, two backward passes
    one, zero = jnp.ones_like(out['cls_loss']), jnp.zeros_like(out['cls_loss'])
    gc, = vjp({'cls_loss': one, 'reg_loss': zero})
    gr, = vjp({'cls_loss': zero, 'reg_loss': one})
    return optax.global_norm(gc) / optax.global_norm(gr)

  return ratio


def grad_norm_ratio(model, anchors, num_classes, arm, params, batch) -> float:
  """|d L_cls / d theta| / |d L_reg / d theta| (L_cls after guided scaling when used)."""
  return float(jax.jit(make_grad_norm_ratio(model, anchors, num_classes, arm))(params, batch))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  tr, val, coco, num_classes, anchors, nums, prior, model = setup(config)
  with config.unlocked():
    config.prior = prior  # recorded in the run's config
  params = pipeline.init_params(model, config.seed, tr['image'].shape[1:])
  first = data.take(tr, np.arange(config.train.batch_size))
  # measured at step 0 and at the end only: compiled once, unoptimised
  ratio_fn = pipeline.compile_once(make_grad_norm_ratio(model, anchors, num_classes, config.arm),
                                   params, first)
  ratio0 = float(ratio_fn(params, first))

  def loss_fn(params, batch, rng):
    del rng
    cls, reg = split_losses(model, anchors, num_classes, config.arm, params, batch)
    return total_loss(config.arm, cls, reg)

  order = data.batch_indices(len(tr['image']), config.train.batch_size, config.seed)
  result = train.fit(config, workdir, mesh=mesh, params=params, loss_fn=loss_fn,
                     train_batch=lambda step: data.take(tr, order[step]))
  params = jax.device_get(result.state.params)
  thr = (sfp.adaptive_threshold(prior, num_classes) if config.arm == 'sampling_free'
         else config.post.score_threshold)
  metrics = {'prior': prior, 'threshold': thr, 'grad_ratio_step0': ratio0,
             'grad_ratio_final': float(ratio_fn(params, first))}
  thresholds = {'': thr}
  if config.arm == 'sampling_free':
    thresholds['_thr005'] = 0.05  # eval-only ablation of the same weights
  predict = pipeline.make_predict(model, anchors, nums, config.data.canvas, config.post)
  for suffix, t in thresholds.items():
    m = pipeline.coco_eval(functools.partial(predict, score_threshold=t), params, val, coco,
                           config.eval_batch_size, tuple(config.eval_area_ranges))
    metrics.update({k + suffix: v for k, v in m.items()})
  result.eval_metrics = metrics
  with open(os.path.join(workdir, 'eval.json'), 'w') as f:
    json.dump(metrics, f, indent=1)
  return result
