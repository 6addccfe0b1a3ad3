"""Data parallelism with `jax.jit` + `NamedSharding` over a 1-D device mesh, optionally FSDP.

The same code runs on one CPU, on 8 simulated CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`), on a GPU box and on a TPU slice:
batches are sharded along the `data` axis, parameters and optimizer state are replicated,
and XLA inserts the gradient all-reduce.

Paper scale (`config.mesh.fsdp = F > 1`): the mesh is 2-D, ('data', 'fsdp') of shape
(N / F, F). Batches are sharded over both axes; every parameter and optimizer-state leaf of at
least `fsdp_min_size` elements is sharded along its largest dimension divisible by F over
'fsdp' (ZeRO-3 / FSDP style), so each device holds 1/F of the model and of Adam's moments.
XLA all-gathers weights where a matmul needs them and reduce-scatters their gradients.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'
FSDP_AXIS = 'fsdp'
FSDP_MIN_SIZE = 2 ** 14  # leaves smaller than this (norms, biases, scalars) stay replicated


def make_mesh(num_devices: int | None = None, fsdp: int = 1) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (all by default), axis `data`; with
  `fsdp > 1` a 2-D mesh (num_devices / fsdp, fsdp), axes ('data', 'fsdp')."""
  devices = jax.devices()
  n = len(devices) if not num_devices or num_devices < 0 else num_devices
  if n > len(devices):
    raise ValueError(f'asked for {n} devices but only {len(devices)} exist')
  if fsdp <= 1:
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:n])
  if n % fsdp:
    raise ValueError(f'fsdp={fsdp} does not divide the {n} devices')
  return jax.make_mesh((n // fsdp, fsdp), (DATA_AXIS, FSDP_AXIS),
                       axis_types=(AxisType.Auto, AxisType.Auto), devices=devices[:n])


def mesh_from_config(config: Any) -> Mesh:
  """The mesh a config asks for: `num_devices` (-1: all) and optional `mesh.fsdp` (1: none)."""
  from common.config import ConfigError

  num_devices = config.get('num_devices', -1)
  fsdp = config.get('mesh', {}).get('fsdp', 1)
  n = jax.device_count() if not num_devices or num_devices < 0 else num_devices
  if isinstance(fsdp, bool) or not isinstance(fsdp, int) or fsdp < 1 or n % fsdp:
    raise ConfigError(f'config.mesh.fsdp={fsdp!r} must be a positive integer dividing the '
                      f'{n} devices: pass e.g. --config.mesh.fsdp=1')
  try:
    return make_mesh(num_devices, fsdp)
  except ValueError as e:
    raise ConfigError(f'config.num_devices={num_devices}: {e}; pass --config.num_devices=-1') \
        from None


def fsdp_size(mesh: Mesh) -> int:
  """How many ways parameters are sharded (1 on a data-parallel-only mesh)."""
  return mesh.shape[FSDP_AXIS] if FSDP_AXIS in mesh.axis_names else 1


def fsdp_spec(shape: tuple[int, ...], size: int, min_size: int = FSDP_MIN_SIZE) -> P:
  """Shards the largest dimension divisible by `size` over 'fsdp'; small leaves replicate."""
  if size <= 1 or int(np.prod(shape, dtype=np.int64)) < max(min_size, 1):
    return P()
  candidates = [(dim, -i) for i, dim in enumerate(shape) if dim % size == 0]
  if not candidates:
    return P()
  axis = -max(candidates)[1]
  return P(*([None] * axis + [FSDP_AXIS]))


def param_sharding(tree: Any, mesh: Mesh, min_size: int = FSDP_MIN_SIZE) -> Any:
  """NamedShardings for a tree of parameters or optimizer state (a function of shapes only,
  so Adam's moments get their parameter's sharding); all replicated without an fsdp axis."""
  size = fsdp_size(mesh)
  return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), size, min_size)),
                      tree)


def shard_params(tree: Any, mesh: Mesh, min_size: int = FSDP_MIN_SIZE) -> Any:
  """Places a tree on the mesh FSDP-style (replicated on a data-parallel-only mesh)."""
  return jax.device_put(tree, param_sharding(tree, mesh, min_size))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
  """Rows split over every mesh axis: 'data', or ('data', 'fsdp') on an FSDP mesh; after
  `leading` unsplit axes (1 for a block of stacked batches)."""
  rows = (DATA_AXIS, FSDP_AXIS) if FSDP_AXIS in mesh.axis_names else DATA_AXIS
  return NamedSharding(mesh, P(*(None,) * leading, rows))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of `tree` on all devices of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def process_rows(global_batch_size: int) -> slice:
  """The rows of a global batch that this process feeds (all of them on one host)."""
  per_process = global_batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def shard_batch(local_batch: Any, mesh: Mesh, leading: int = 0) -> Any:
  """Turns this process's rows of a global batch into global arrays sharded along `data`
  (rows on axis `leading`: 1 for a block of batches stacked on axis 0)."""
  sharding = batch_sharding(mesh, leading)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
