"""A small backbone + FPN + dense head (RetinaNet / ATSS style), GroupNorm throughout.

Outputs are flattened in the anchor order of `boxes.pyramid_anchors`: level, then row-major
location, then anchor within the location.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _conv_gn(x, features, stride, groups, name):
  x = nn.Conv(features, (3, 3), strides=stride, use_bias=False, name=f'{name}_conv')(x)
  return nn.relu(nn.GroupNorm(min(groups, features), name=f'{name}_gn')(x))


class Backbone(nn.Module):
  """conv stem (stride 2), then stages that halve resolution: features at strides 4, 8, 16..."""
  features: Sequence[int] = (32, 64, 96)
  stem: int = 16
  groups: int = 8

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    x = _conv_gn(x, self.stem, 2, self.groups, 'stem')
    outs = []
    for i, f in enumerate(self.features):
      x = _conv_gn(x, f, 2, self.groups, f'stage{i}a')
      x = _conv_gn(x, f, 1, self.groups, f'stage{i}b')
      outs.append(x)
    return outs


class FPN(nn.Module):
  """Lateral 1x1 + top-down nearest upsampling + 3x3 output convs; extra levels are stride-2
  3x3 convs, the first on the last output level, each later one on the ReLU of the previous."""
  features: int = 64
  num_levels: int = 3

  @nn.compact
  def __call__(self, stages: Sequence[jax.Array]) -> list[jax.Array]:
    lat = [nn.Conv(self.features, (1, 1), name=f'lateral{i}')(c) for i, c in enumerate(stages)]
    for i in range(len(lat) - 2, -1, -1):
      up = jax.image.resize(lat[i + 1], lat[i].shape[:1] + lat[i].shape[1:3] + lat[i + 1].shape[3:],
                            'nearest')
      lat[i] = lat[i] + up
    outs = [nn.Conv(self.features, (3, 3), name=f'output{i}')(p) for i, p in enumerate(lat)]
    while len(outs) < self.num_levels:  # LastLevelP6P7: P6 = conv(P5), P7 = conv(relu(P6))
      src = nn.relu(outs[-1]) if len(outs) > len(stages) else outs[-1]
      outs.append(nn.Conv(self.features, (3, 3), strides=2, name=f'extra{len(outs)}')(src))
    return outs[:self.num_levels]


class DenseHead(nn.Module):
  """Shared towers over levels: class logits [B, N, C], box deltas [B, N, 4] (times a learnable
  per-level scale), centerness logits [B, N] (zeros when `centerness` is off)."""
  num_classes: int
  num_anchors: int = 1
  features: int = 64
  num_convs: int = 2
  groups: int = 8
  prior_bias: float = -4.59511985  # -log((1 - 0.01) / 0.01)
  centerness: bool = True

  @nn.compact
  def __call__(self, feats: Sequence[jax.Array]):
    a, c = self.num_anchors, self.num_classes
    cls_convs = [nn.Conv(self.features, (3, 3), kernel_init=nn.initializers.normal(0.01),
                         name=f'cls_tower{i}') for i in range(self.num_convs)]
    box_convs = [nn.Conv(self.features, (3, 3), kernel_init=nn.initializers.normal(0.01),
                         name=f'box_tower{i}') for i in range(self.num_convs)]
    cls_gns = [nn.GroupNorm(min(self.groups, self.features), name=f'cls_gn{i}')
               for i in range(self.num_convs)]
    box_gns = [nn.GroupNorm(min(self.groups, self.features), name=f'box_gn{i}')
               for i in range(self.num_convs)]
    init = nn.initializers.normal(0.01)
    cls_out = nn.Conv(a * c, (3, 3), kernel_init=init,
                      bias_init=nn.initializers.constant(self.prior_bias), name='cls_logits')
    box_out = nn.Conv(a * 4, (3, 3), kernel_init=init, name='bbox_pred')
    ctr_out = nn.Conv(a, (3, 3), kernel_init=init, name='centerness') if self.centerness else None
    cls_all, box_all, ctr_all = [], [], []
    for level, f in enumerate(feats):
      x, y = f, f
      for conv, gn in zip(cls_convs, cls_gns, strict=True):
        x = nn.relu(gn(conv(x)))
      for conv, gn in zip(box_convs, box_gns, strict=True):
        y = nn.relu(gn(conv(y)))
      scale = self.param(f'scale{level}', nn.initializers.ones, ())
      b = f.shape[0]
      cls_all.append(cls_out(x).reshape(b, -1, c))
      box_all.append((box_out(y) * scale).reshape(b, -1, 4))
      if ctr_out is not None:
        ctr_all.append(ctr_out(y).reshape(b, -1))
    cls = jnp.concatenate(cls_all, 1)
    box = jnp.concatenate(box_all, 1)
    ctr = jnp.concatenate(ctr_all, 1) if ctr_all else jnp.zeros(cls.shape[:2], cls.dtype)
    return cls, box, ctr


class DenseDetector(nn.Module):
  """Backbone + FPN + DenseHead; images [B, H, W, ch] in [0, 1]."""
  num_classes: int
  num_anchors: int = 1
  backbone_features: Sequence[int] = (32, 64, 96)
  fpn_features: int = 64
  num_levels: int = 3
  num_convs: int = 2
  prior_bias: float = -4.59511985
  centerness: bool = True
  first_stride: int = 4  # stride of the first pyramid level (backbone stage i has 4 * 2^i)

  @nn.compact
  def __call__(self, images: jax.Array):
    stages = Backbone(self.backbone_features, name='backbone')(images)
    used = [s for i, s in enumerate(stages) if 4 * 2 ** i >= self.first_stride]
    feats = FPN(self.fpn_features, self.num_levels, name='fpn')(used[:self.num_levels])
    return DenseHead(self.num_classes, self.num_anchors, self.fpn_features, self.num_convs,
                     prior_bias=self.prior_bias, centerness=self.centerness, name='head')(feats)
