"""A small conv backbone: stages of (conv3x3 -> GroupNorm -> ReLU) x 2, each halving resolution.

GroupNorm instead of BatchNorm keeps the model a pure function of its parameters (no batch
statistics to carry, identical under any data-parallel split).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvNet(nn.Module):
  """Images [B, H, W, C] -> pooled features [B, F] (or a head's outputs, or all stages)."""
  features: Sequence[int] = (32, 64, 128)
  num_outputs: int | None = None
  groups: int = 8
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, return_stages: bool = False):
    stages = []
    for i, f in enumerate(self.features):
      for j in range(2):
        stride = 2 if (j == 0 and i > 0) else 1
        x = nn.Conv(f, (3, 3), strides=stride, use_bias=False, dtype=self.dtype,
                    name=f'conv{i}_{j}')(x)
        x = nn.relu(nn.GroupNorm(min(self.groups, f), dtype=self.dtype, name=f'gn{i}_{j}')(x))
      stages.append(x)
    if return_stages:
      return stages
    x = jnp.mean(x, axis=(1, 2))
    if self.num_outputs is not None:
      x = nn.Dense(self.num_outputs, dtype=self.dtype, name='head')(x)
    return x
