"""The shared detector experiment plumbing: data from config, anchors, batched inference and COCO
evaluation. A paper supplies only its assigner and loss.

config.data: data_dir, canvas, num_train, num_val, min_size, max_size, max_objects, seed (of
  the training canvases), val_seed (of the validation canvases: the validation digits drawn
  anew), cache_dir ('' = <repo>/.cache/detection, 'none' = no cache), coco_train / coco_val
  (optional COCO-format folders: 'annotations.json:image_dir').
config.detector: strides, anchor_sizes, aspect_ratios, scales, convention, backbone_features,
  fpn_features, num_convs, backbone_init (a pretraining run's workdir, or '').
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import checkpoint
from common.config import ConfigError
from common.detection import boxes as boxlib
from common.detection import data as detdata
from common.detection import evaluation
from common.detection.model import DenseDetector

ROOT = pathlib.Path(__file__).resolve().parents[2]


CACHE_VERSION = 1  # bump when `make_canvases` changes what it draws


def cache_dir(setting: str = '') -> pathlib.Path | None:
  """Where generated canvases are cached: `setting`, or '<repo>/.cache/detection' (git-ignored)
  when empty; None for 'none' (generate every time)."""
  if setting == 'none':
    return None
  return pathlib.Path(setting) if setting else ROOT / '.cache' / 'detection'


def cached_canvases(num_images: int, seed: int, digits, directory: pathlib.Path | None,
                    **kwargs) -> dict[str, np.ndarray]:
  """`data.make_canvases(num_images, seed, digits=digits, **kwargs)`, read from `directory`
  when an earlier call stored it there. The file name hashes every argument and the digits'
  bytes, so a cached file is exactly what the generator returns; it is written atomically."""
  if directory is None:
    return detdata.make_canvases(num_images, seed, digits=digits, **kwargs)
  key = hashlib.sha256(json.dumps([CACHE_VERSION, num_images, seed, sorted(kwargs.items())])
                       .encode())
  for part in digits or ():
    key.update(np.ascontiguousarray(part).tobytes())
  path = directory / f'canvases_{num_images}_{seed}_{key.hexdigest()[:16]}.npz'
  if path.exists():
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  out = detdata.make_canvases(num_images, seed, digits=digits, **kwargs)
  directory.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f'.{os.getpid()}.tmp.npz')
  np.savez(tmp, **out)
  os.replace(tmp, path)
  return out


@functools.lru_cache(maxsize=4)
def _synthetic(data_dir: str, canvas: int, num_train: int, num_val: int, min_size: float,
               max_size: float, max_objects: int, seed: int, val_seed: int, cache: str):
  train_digits = detdata.load_digits(data_dir, 'train')
  val_digits = detdata.load_digits(data_dir, 'val') if train_digits is not None else None
  kw = dict(canvas=canvas, min_size=min_size, max_size=max_size, max_objects=max_objects)
  directory = cache_dir(cache)
  train = cached_canvases(num_train, seed, train_digits, directory, **kw)
  val = cached_canvases(num_val, val_seed, val_digits, directory, **kw)
  nc = detdata.num_classes_of(train_digits)
  return train, val, detdata.to_coco(val, nc), nc


def load_data(config: ml_collections.ConfigDict):
  """(train arrays, val arrays, val COCO dict, num_classes) from config.data."""
  d = config.data
  if d.get('coco_train', ''):
    size, gmax = d.canvas, d.max_objects
    train, _ = detdata.read_coco_folder(*d.coco_train.split(':'), size, gmax, d.channels)
    val, coco = detdata.read_coco_folder(*(d.get('coco_val') or d.coco_train).split(':'), size,
                                         gmax, d.channels)
    return train, val, coco, len(coco['categories'])
  return _synthetic(d.data_dir, d.canvas, d.num_train, d.num_val, d.min_size, d.max_size,
                    d.max_objects, d.seed, d.get('val_seed', d.seed + 1_000_003),
                    d.get('cache_dir', ''))


def anchors_from_config(config: ml_collections.ConfigDict) -> tuple[np.ndarray, tuple[int, ...]]:
  det = config.detector
  return boxlib.pyramid_anchors(config.data.canvas, det.strides, det.anchor_sizes,
                                det.aspect_ratios, det.scales, det.convention)


def detector_from_config(config: ml_collections.ConfigDict, num_classes: int,
                         **head) -> DenseDetector:
  """The dense detector of `config.detector`; `head` sets centerness / prior_bias."""
  det = config.detector
  return DenseDetector(num_classes=num_classes,
                       num_anchors=len(det.aspect_ratios) * len(det.scales),
                       backbone_features=tuple(det.backbone_features),
                       fpn_features=det.fpn_features, num_levels=len(det.strides),
                       num_convs=det.num_convs, first_stride=det.strides[0], **head)


def compile_once(fn, *args):
  """`jax.jit(fn)` compiled for `args`, for programs that run once or twice (init, diagnostics):
  without LLVM optimisation, which compiles ~7x faster on XLA:CPU (results may differ from the
  default compile by ~1 ulp)."""
  return jax.jit(fn).lower(*args).compile(
      compiler_options={'xla_backend_optimization_level': 0})


def init_params(model, seed: int, image_shape: tuple[int, ...], backbone_init: str = ''):
  """The detector's initial parameters for images [*image_shape] (`compile_once`); with
  `backbone_init` (the workdir of a `common.detection.pretrain` run) its backbone is that run's
  newest checkpoint (the ImageNet-init analogue), the FPN and head stay random."""
  image = jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32)
  key = jax.random.key(seed)
  params = compile_once(lambda k: model.lazy_init(k, image), key)(key)
  return load_backbone(params, backbone_init) if backbone_init else params


def load_backbone(params: dict, workdir: str) -> dict:
  """`params` with params['params']['backbone'] replaced by the backbone of the newest
  checkpoint in `workdir`; a ConfigError when its shapes differ (another backbone config)."""
  restored = checkpoint.restore_params(workdir)['params']['backbone']
  mine = params['params']['backbone']
  shapes = lambda tree: jax.tree.map(np.shape, tree)  # noqa: E731
  if shapes(restored) != shapes(mine):
    raise ConfigError(f'{workdir} holds a backbone of other shapes than '
                      'config.detector.backbone_features and the image channels: pretrain the '
                      'same backbone')
  restored = jax.tree.map(lambda a, b: jnp.asarray(a, b.dtype), restored, mine)
  return {**params, 'params': {**params['params'], 'backbone': restored}}


def images_to_float(images) -> jax.Array:
  return jnp.asarray(images, jnp.float32) / 255.0


def make_predict(model, anchors: np.ndarray, num_per_level, image_size: int,
                 post: ml_collections.ConfigDict, score_threshold=None):
  """(params, images, score_threshold=...) -> batched detections (boxes, scores, classes, valid).

  One jitted program: the score threshold is an argument, so evaluating the same weights at
  several thresholds compiles once."""
  anchors = jnp.asarray(anchors)
  default = post.score_threshold if score_threshold is None else score_threshold

  @jax.jit
  def predict_at(params, images, thr):
    cls, box, ctr = model.apply(params, images_to_float(images))
    fn = functools.partial(
        evaluation.postprocess, anchors=anchors, num_per_level=tuple(num_per_level),
        image_size=image_size, score_threshold=thr, pre_nms_top_n=post.pre_nms_top_n,
        nms_threshold=post.nms_threshold, max_detections=post.max_detections,
        use_centerness=post.use_centerness)
    return jax.vmap(fn)(cls, box, ctr)

  def predict(params, images, score_threshold=default):
    return predict_at(params, images, jnp.asarray(score_threshold, jnp.float32))

  return predict


def coco_eval(predict, params, val: dict, coco: dict, batch_size: int = 50,
              area_ranges=None) -> dict[str, float]:
  """Runs `predict` over the validation arrays and scores it with COCOeval."""
  dets = []
  n = len(val['image'])
  for start in range(0, n, batch_size):
    images = val['image'][start:start + batch_size]
    pad = batch_size - len(images)
    if pad:
      images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    out = jax.device_get(predict(params, images))
    ids = [coco['images'][i]['id'] for i in range(start, min(start + batch_size, n))]
    dets += evaluation.detections_to_coco(*(o[:len(ids)] for o in out), ids)
  return evaluation.coco_evaluate(coco, dets, area_ranges)


def throughput(step_fn, state, batch, repeats: int = 5) -> float:
  """Images per second of an already compiled (state, batch) -> (state, metrics) step."""
  jax.block_until_ready(step_fn(state, batch))
  t = time.time()
  for _ in range(repeats):
    state, m = step_fn(state, batch)
  jax.block_until_ready(m)
  return repeats * len(batch['image']) / (time.time() - t)
