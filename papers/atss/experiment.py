"""ATSS detector experiment: the dense detector trained with a switchable assigner.

    python -m common.main --config=configs/atss/mnist_canvas.py:smoke --workdir=/tmp/atss

The backbone starts from a pretraining run's checkpoint when `config.detector.backbone_init`
names its workdir (`common.detection.pretrain`).

Loss (official ATSSLossComputation): focal(cls) / num_pos + 2.0 * sum(ctr_t * GIoU) / sum(ctr_t)
+ BCE(centerness) / num_pos, with num_pos and sums over the global batch.

COCO metrics of the validation set (`AP`, `AP50`, ...) are logged every `train.eval_every` steps
as `eval/<metric>` in metrics.jsonl and at the end; the final metrics add the positives per
validation gt by size (`pos_per_gt_<bin>`, a function of the anchors and gts only).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import config as cfglib
from common import data, parallel, train
from common.detection import boxes as boxlib
from common.detection import losses, pipeline
from common.detection.model import DenseDetector
from papers.atss import assigner

SIZE_BINS = ('small', 'medium', 'large')


def anchors_per_location(config: ml_collections.ConfigDict) -> int:
  return len(config.detector.aspect_ratios) * len(config.detector.scales)


def assign_batch(config: ml_collections.ConfigDict, anchors, num_per_level, gt_boxes, gt_labels,
                 gt_mask) -> dict[str, jax.Array]:
  """`assigner.assign` of `config.assigner` over a batch [B, G, ...]; ATSS takes topk x A
  candidates per level with A anchors per location, as the official code."""
  a = config.assigner
  fn = functools.partial(assigner.assign, a.name, jnp.asarray(anchors), tuple(num_per_level),
                         topk=a.topk, convention=a.convention, fg_iou=a.fg_iou, bg_iou=a.bg_iou,
                         in_gt=a.in_gt, num_anchors_per_location=anchors_per_location(config),
                         size_ranges=tuple(tuple(r) for r in a.size_ranges))
  out = jax.vmap(fn)(gt_boxes, gt_labels, gt_mask)
  return {'assigned_gt': out['assigned_gt'], 'labels': out['labels']}


def atss_loss(cls_logits, box_deltas, ctr_logits, anchors, gt_boxes, assigned_gt, labels,
              num_classes: int, reg_weight: float = 2.0):
  """(loss, metrics) of the official ATSS loss for a batch [B, N, ...]."""
  pos = labels > 0
  num_pos = jnp.maximum(pos.sum(), 1.0)
  targets = losses.one_hot_targets(labels, num_classes)
  valid = (labels >= 0)[..., None]
  cls_loss = jnp.sum(losses.sigmoid_focal(cls_logits, targets) * valid) / num_pos
  matched = jnp.take_along_axis(gt_boxes, jnp.maximum(assigned_gt, 0)[..., None], 1)
  anchors_b = jnp.broadcast_to(anchors, matched.shape)
  reg_t = boxlib.encode(matched, anchors_b)
  ctr_t = jnp.where(pos, boxlib.centerness_targets(anchors_b, matched), 0.0)
  giou = losses.giou_loss(box_deltas, jnp.where(pos[..., None], reg_t, 0.0), anchors_b)
  reg_loss = reg_weight * jnp.sum(giou * ctr_t) / jnp.maximum(ctr_t.sum(), 1e-6)
  ctr_loss = jnp.sum(losses.sigmoid_bce(ctr_logits, ctr_t) * pos) / num_pos
  total = cls_loss + reg_loss + ctr_loss
  return total, {'cls_loss': cls_loss, 'reg_loss': reg_loss, 'ctr_loss': ctr_loss,
                 'num_pos': pos.sum() / labels.shape[0]}


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> DenseDetector:
  return pipeline.detector_from_config(config, num_classes, centerness=True)


def make_loss_fn(config: ml_collections.ConfigDict, model: DenseDetector, anchors,
                 num_per_level, num_classes: int) -> Callable:
  """`loss_fn(params, batch, rng) -> (loss, metrics)`: assignment by `config.assigner`, then
  `atss_loss`."""
  anchors_j = jnp.asarray(anchors)

  def loss_fn(params, batch, rng):
    del rng
    cls, box, ctr = model.apply(params, pipeline.images_to_float(batch['image']))
    a = assign_batch(config, anchors, num_per_level, batch['boxes'], batch['labels'],
                     batch['mask'])
    return atss_loss(cls, box, ctr, anchors_j, batch['boxes'], a['assigned_gt'], a['labels'],
                     num_classes, config.loss.reg_weight)

  return loss_fn


def assignment_stats(config, anchors, num_per_level, val: dict, bins,
                     batch_size: int = 50) -> dict[str, float]:
  """Positives per validation gt by size bin (sqrt area) and the share of gts with none.

  Assigned `batch_size` images at a time (the IoU matrix of all COCO val images at once would
  not fit in memory); the last chunk is padded with masked-out rows."""
  assign = jax.jit(functools.partial(assign_batch, config, anchors, num_per_level))
  n, g = val['boxes'].shape[:2]
  parts = []
  for start in range(0, n, batch_size):
    chunk = {k: val[k][start:start + batch_size] for k in ('boxes', 'labels', 'mask')}
    pad = batch_size - len(chunk['boxes'])
    chunk = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
             for k, v in chunk.items()}
    out = assign(chunk['boxes'], chunk['labels'], chunk['mask'])
    parts.append(np.asarray(out['assigned_gt'])[:batch_size - pad])
  assigned = np.concatenate(parts)
  counts = (assigned[:, :, None] == np.arange(g)[None, None, :]).sum(1)  # [B, G]
  b = val['boxes']
  size = np.sqrt((b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1))
  m = val['mask']
  stats = {'pos_per_gt': float(counts[m].mean()), 'no_pos_share': float((counts[m] == 0).mean())}
  edges = [0.0, bins[0], bins[1], np.inf]
  for i, name in enumerate(SIZE_BINS):
    sel = m & (size >= edges[i]) & (size < edges[i + 1])
    stats[f'pos_per_gt_{name}'] = float(counts[sel].mean()) if sel.any() else float('nan')
  return stats


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.validate_train(config, num_devices)
  cfglib.check_choice(config, 'assigner.name', ('atss', 'iou', 'fcos'))
  cfglib.check_choice(config, 'assigner.convention', ('official', 'mmdet'))
  cfglib.check_positive_int(config, 'assigner.topk', 'data.canvas', 'data.max_objects')
  if len(config.detector.strides) != len(config.detector.anchor_sizes):
    raise cfglib.ConfigError('config.detector.strides and anchor_sizes differ in length')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains the detector, with COCO AP every `train.eval_every` steps; final metrics = COCO AP
  metrics and assignment statistics."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  tr, val, coco, num_classes = pipeline.load_data(config)
  anchors, num_per_level = pipeline.anchors_from_config(config)
  model = build_model(config, num_classes)
  params = pipeline.init_params(model, config.seed, tr['image'].shape[1:],
                                config.detector.get('backbone_init', ''))
  predict = pipeline.make_predict(model, anchors, num_per_level, config.data.canvas,
                                  config.post)
  area_ranges = tuple(config.eval_area_ranges)

  def evaluator(params):
    return pipeline.coco_eval(predict, params, val, coco, config.eval_batch_size, area_ranges)

  order = data.batch_indices(len(tr['image']), config.train.batch_size, config.seed)
  result = train.fit(config, workdir, mesh=mesh, params=params,
                     loss_fn=make_loss_fn(config, model, anchors, num_per_level, num_classes),
                     train_batch=lambda step: data.take(tr, order[step]), evaluator=evaluator)
  if result.preempted:
    return result
  metrics = dict(result.eval_metrics)
  metrics.update(assignment_stats(config, anchors, num_per_level, val, area_ranges,
                                  config.eval_batch_size))
  result.eval_metrics = metrics
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'eval.json'), 'w') as f:
      json.dump(metrics, f, indent=1)
  return result
