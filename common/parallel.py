"""Data parallelism with `jax.jit` + `NamedSharding` over a 1-D device mesh.

The same code runs on one CPU, on 8 simulated CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`), on a GPU box and on a TPU slice:
batches are sharded along the `data` axis, parameters and optimizer state are replicated,
and XLA inserts the gradient all-reduce.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (all by default), axis `data`."""
  devices = jax.devices()
  n = len(devices) if not num_devices or num_devices < 0 else num_devices
  if n > len(devices):
    raise ValueError(f'asked for {n} devices but only {len(devices)} exist')
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:n])


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of `tree` on all devices of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def process_rows(global_batch_size: int) -> slice:
  """The rows of a global batch that this process feeds (all of them on one host)."""
  per_process = global_batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Turns this process's rows of a global batch into global arrays sharded along `data`."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
