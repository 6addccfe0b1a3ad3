"""Orbax checkpoints of the train state: atomic, keep-last-N, verified on restore.

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-write never leaves a half checkpoint that looks finished. On top of that every checkpoint
stores a sha256 of its state; a checkpoint that fails to load or whose checksum differs is
skipped with a warning and the previous one is used.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from common.config import ConfigError


def state_checksum(state: Any) -> str | None:
  """sha256 over every leaf's bytes; None when the state is not fully on this host."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(state):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      return None
    digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  return digest.hexdigest()


class CheckpointWriteError(RuntimeError):
  """Writing a checkpoint failed (disk full, permissions); older checkpoints are intact."""


class Checkpointer:
  """Saves and restores `{state, meta}` under `<workdir>/checkpoints/<step>`."""

  def __init__(self, directory: str, keep: int, config_json: str, strict: bool = True):
    self.config = json.loads(config_json)
    self.strict = strict
    self.manager = ocp.CheckpointManager(  # orbax needs an absolute path
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def save(self, step: int, state: Any) -> None:
    if step in self.manager.all_steps():
      return
    meta = {'step': step, 'checksum': state_checksum(state), 'config': self.config}
    try:
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    except OSError as e:
      try:  # let earlier checkpoints still being written finish
        self.manager.wait_until_finished()
      finally:
        raise self._write_error(step, e) from None

  def wait(self) -> None:
    try:
      self.manager.wait_until_finished()
    except OSError as e:  # an async write that failed in the background
      raise self._write_error(None, e) from None

  def _write_error(self, step: int | None, e: OSError) -> CheckpointWriteError:
    good = [s for s in self.manager.all_steps() if s != step]
    kept = f'checkpoint {max(good)} is intact' if good else 'no earlier checkpoint exists'
    return CheckpointWriteError(
        f'writing checkpoint {step if step is not None else ""} to {self.manager.directory} '
        f'failed ({e.strerror or e}): free disk space or pass another --workdir; {kept}')

  def restore_latest(self, target: Any) -> tuple[Any, int]:
    """Newest good checkpoint shaped and sharded like `target`, else (target, 0)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
      except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint is skipped
        logging.warning('checkpoint %d is unreadable (%s); trying the previous one',
                        step, str(e).splitlines()[0][:200])
        continue
      meta = restored['meta']
      if self.strict:
        self._check_same_model(meta.get('config', {}))
      expected = meta.get('checksum')
      if expected is not None and state_checksum(restored['state']) != expected:
        logging.warning('checkpoint %d fails its checksum; trying the previous one', step)
        continue
      logging.info('resumed from checkpoint %d', step)
      return restored['state'], step
    return target, 0

  def _check_same_model(self, saved: dict) -> None:
    for section in ('experiment', 'model'):
      if saved.get(section) != self.config.get(section):
        raise ConfigError(
            f'the workdir holds checkpoints of a different config.{section} '
            f'({saved.get(section)} != {self.config.get(section)}): '
            'pass a fresh --workdir, or --force_resume to resume anyway')


def restore_state(workdir: str) -> Any:
  """The whole state of the newest checkpoint in another run's `workdir` (a stage that starts
  from that run), as numpy arrays in the saved tree structure (dataclasses come back as dicts).
  One line naming the workdir when it holds no checkpoint."""
  manager = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'))
  step = manager.latest_step()
  if step is None:
    raise ConfigError(f'{workdir} holds no checkpoint to start from: run that stage first')
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return jax.tree.map(np.asarray, restored['state'])


def restore_params(workdir: str) -> Any:
  """The parameters (`state['params']` or `state.params`) of `restore_state(workdir)`."""
  state = restore_state(workdir)
  return state['params'] if isinstance(state, dict) else state.params
