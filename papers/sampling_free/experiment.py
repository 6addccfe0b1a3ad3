"""Sampling-Free RetinaNet experiment: 9 anchors per location, the IoU matcher, and the method
of `config.method`: the classification loss (focal or BCE), the initial classification bias
(the counted optimal prior, a fixed prior or zero), guided loss scaling on or off, and the test
threshold (adaptive prior x (C + 1) or fixed).

    python -m common.main --config=configs/sampling_free/mnist_canvas.py:smoke --workdir=/tmp/sf

Data comes from `common.detection.pipeline.load_data`: MNIST canvases, or a COCO folder when
`config.data.coco_train` is set (`configs/sampling_free/paper_coco_r50_fpn_1x.py`); the backbone
starts from a pretraining run when `config.detector.backbone_init` names its workdir. COCO
metrics of the validation set at the method's test threshold are logged every
`train.eval_every` steps as `eval/<metric>` and at the end; the final metrics add the prior the
bias starts at, the threshold, the ratio of classification to regression gradient norms at step
0 and at the end and, with the adaptive threshold, the same weights scored at the fixed
threshold (`<metric>_thr005`).
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
import optax

from common import config as cfglib
from common import data, parallel, train
from common.detection import boxes as boxlib
from common.detection import pipeline
from common.detection.assign import iou_assign
from papers.sampling_free import loss as sfl
from papers.sampling_free import prior as sfp

PAIRS_PER_CHUNK = 1 << 22  # anchor-gt pairs per jitted prior count
LOSSES, BIASES, THRESHOLDS = ('focal', 'bce'), ('optimal', 'prior', 'zero'), ('adaptive', 'fixed')


def dataset_prior(config: ml_collections.ConfigDict, train_set: dict, anchors,
                  num_classes: int) -> float:
  """The foreground prior over the training boxes (no images are decoded); with
  `config.prior_images` > 0, over that many images drawn with a fixed seed."""
  boxes, mask = train_set['boxes'], train_set['mask']
  limit = config.get('prior_images', 0)
  if 0 < limit < len(boxes):
    rows = np.sort(np.random.default_rng(0).choice(len(boxes), limit, replace=False))
    boxes, mask = boxes[rows], mask[rows]
  # one jitted count over a chunk of images' padded [G] boxes + masks (an image without boxes,
  # COCO has ~1k, counts only background); chunks hold about 4M anchor-gt pairs
  count = jax.jit(jax.vmap(functools.partial(sfp.match_counts, anchors,
                                             fg_iou=config.matcher.fg_iou,
                                             bg_iou=config.matcher.bg_iou)))
  chunk = max(1, PAIRS_PER_CHUNK // (len(anchors) * boxes.shape[1]))
  fg = total = 0
  for start in range(0, len(boxes), chunk):
    b, m = boxes[start:start + chunk], mask[start:start + chunk]
    pad = chunk - len(b)  # padded images have no gts: masked out of the sums below
    f, t = count(np.concatenate([b, np.zeros((pad,) + b.shape[1:], b.dtype)]),
                 np.concatenate([m, np.zeros((pad,) + m.shape[1:], bool)]))
    fg += int(np.asarray(f)[:len(b)].sum())
    total += int(np.asarray(t)[:len(b)].sum())
  return sfp.optimal_prior([(fg, total)], num_classes)


def targets(config: ml_collections.ConfigDict, anchors, batch: dict
            ) -> tuple[jax.Array, jax.Array]:
  """(labels [B, N], regression targets [B, N, 4]) of RetinaNet's IoU matcher."""
  fn = functools.partial(iou_assign, jnp.asarray(anchors), fg_iou=config.matcher.fg_iou,
                         bg_iou=config.matcher.bg_iou)
  out = jax.vmap(fn)(batch['boxes'], batch['labels'], batch['mask'])
  matched = jnp.take_along_axis(batch['boxes'], jnp.maximum(out['assigned_gt'], 0)[..., None], 1)
  reg_t = boxlib.encode(matched, jnp.broadcast_to(jnp.asarray(anchors), matched.shape))
  return out['labels'], jnp.where((out['labels'] > 0)[..., None], reg_t, 0.0)


def split_losses(config: ml_collections.ConfigDict, model, anchors, num_classes: int, params,
                 batch: dict) -> tuple[jax.Array, jax.Array]:
  """(L_cls, L_reg) of the method's classification loss (focal or BCE) and smooth-L1."""
  cls_logits, box, _ = model.apply(params, pipeline.images_to_float(batch['image']))
  labels, reg_t = targets(config, anchors, batch)
  return sfl.retinanet_losses(cls_logits, box, reg_t, labels, num_classes, config.method.loss,
                              config.loss.beta, config.loss.reg_norm)


def total_loss(guided_scaling: bool, cls: jax.Array, reg: jax.Array) -> tuple[jax.Array, dict]:
  """L_cls + L_reg, with guided loss scaling of L_cls when on."""
  if guided_scaling:
    cls = sfl.guided_loss_scaling(cls, reg)
  return cls + reg, {'cls_loss': cls, 'reg_loss': reg}


def make_loss_fn(config: ml_collections.ConfigDict, model, anchors, num_classes: int
                 ) -> Callable:
  """`loss_fn(params, batch, rng) -> (loss, metrics)` of `config.method`."""
  def loss_fn(params, batch, rng):
    del rng
    return total_loss(config.method.guided_scaling,
                      *split_losses(config, model, anchors, num_classes, params, batch))

  return loss_fn


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.validate_train(config, num_devices)
  cfglib.check_choice(config, 'method.loss', LOSSES)
  cfglib.check_choice(config, 'method.bias', BIASES)
  cfglib.check_choice(config, 'method.threshold', THRESHOLDS)
  cfglib.check_range(config, 'method.prior_prob', 0.0, 1.0, low_open=True)


def setup(config: ml_collections.ConfigDict):
  """(train, val, val COCO dict, num_classes, anchors, anchors per level, prior, threshold,
  model). The foreground prior is counted on the training set when the bias or the threshold
  needs it; `prior` is the probability the classification bias starts at."""
  tr, val, coco, num_classes = pipeline.load_data(config)
  anchors, nums = pipeline.anchors_from_config(config)
  m = config.method
  counted = (dataset_prior(config, tr, anchors, num_classes)
             if m.bias == 'optimal' or m.threshold == 'adaptive' else None)
  prior = {'optimal': counted, 'prior': m.prior_prob, 'zero': 0.5}[m.bias]
  threshold = (sfp.adaptive_threshold(counted, num_classes) if m.threshold == 'adaptive'
               else m.fixed_threshold)
  model = pipeline.detector_from_config(config, num_classes, centerness=False,
                                        prior_bias=sfp.bias_from_prior(prior))
  return tr, val, coco, num_classes, anchors, nums, prior, threshold, model


def make_grad_norm_ratio(config: ml_collections.ConfigDict, model, anchors, num_classes: int
                         ) -> Callable:
  """(params, batch) -> |d L_cls / d theta| / |d L_reg / d theta| (L_cls after guided scaling
  when used)."""
  def parts(p, batch):
    return total_loss(config.method.guided_scaling,
                      *split_losses(config, model, anchors, num_classes, p, batch))[1]

  def ratio(params, batch):
    out, vjp = jax.vjp(lambda p: parts(p, batch), params)  # one forward, two backward passes
    one, zero = jnp.ones_like(out['cls_loss']), jnp.zeros_like(out['cls_loss'])
    gc, = vjp({'cls_loss': one, 'reg_loss': zero})
    gr, = vjp({'cls_loss': zero, 'reg_loss': one})
    return optax.global_norm(gc) / optax.global_norm(gr)

  return ratio


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains `config.method`, with COCO AP at its test threshold every `train.eval_every`
  steps."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  tr, val, coco, num_classes, anchors, nums, prior, threshold, model = setup(config)
  params = pipeline.init_params(model, config.seed, tr['image'].shape[1:],
                                config.detector.get('backbone_init', ''))
  first = data.take(tr, np.arange(config.train.batch_size))
  # measured at step 0 and at the end only: compiled once, unoptimised
  ratio_fn = pipeline.compile_once(make_grad_norm_ratio(config, model, anchors, num_classes),
                                   params, first)
  ratio0 = float(ratio_fn(params, first))
  predict = pipeline.make_predict(model, anchors, nums, config.data.canvas, config.post,
                                  score_threshold=threshold)
  area_ranges = tuple(config.eval_area_ranges)

  def evaluator(params, threshold=threshold):
    return pipeline.coco_eval(functools.partial(predict, score_threshold=threshold), params, val,
                              coco, config.eval_batch_size, area_ranges)

  order = data.batch_indices(len(tr['image']), config.train.batch_size, config.seed)
  result = train.fit(config, workdir, mesh=mesh, params=params,
                     loss_fn=make_loss_fn(config, model, anchors, num_classes),
                     train_batch=lambda step: data.take(tr, order[step]), evaluator=evaluator)
  if result.preempted:
    return result
  params = result.state.params
  metrics = dict(result.eval_metrics)
  metrics.update(prior=prior, threshold=threshold, grad_ratio_step0=ratio0,
                 grad_ratio_final=float(ratio_fn(params, first)))
  if config.method.threshold == 'adaptive':  # eval-only ablation of the same weights
    fixed = evaluator(params, config.method.fixed_threshold)
    metrics.update({k + '_thr005': v for k, v in fixed.items()})
  result.eval_metrics = metrics
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'eval.json'), 'w') as f:
      json.dump(metrics, f, indent=1)
  return result
