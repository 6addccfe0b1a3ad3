"""Metric writing: one JSON line per logged step plus TensorBoard event files.

Method names follow clu's `MetricWriter` (whose writers need TensorFlow). Only process 0
writes. On resume, lines past the restored step are dropped so the file has every step once.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import jax
import numpy as np


class MetricWriter:
  def __init__(self, workdir: str, resume_step: int = 0, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not self.enabled:
      return
    _truncate_after(self.path, resume_step)
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                             purge_step=resume_step + 1 if resume_step else None)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {'step': int(step), **{k: _py(v) for k, v in scalars.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    for key, value in record.items():
      if key != 'step' and isinstance(value, float):
        self._tb.add_scalar(key, value, step)

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(workdir: str) -> list[dict]:
  """The JSONL records of a run, in order."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  return [json.loads(line) for line in _complete_lines(path)]


PERF_PREFIX = 'perf/'  # wall-clock measurements (throughput): the only keys a rerun changes


def without_perf(rows: list[dict]) -> list[dict]:
  """The records without their wall-clock keys: what must be identical across reruns."""
  return [{k: v for k, v in r.items() if not k.startswith(PERF_PREFIX)} for r in rows]


def _py(value):
  value = np.asarray(value)
  return float(value) if value.dtype.kind == 'f' else value.item()


def _complete_lines(path: str) -> list[str]:
  """The file's records: a last line without its newline is a write still in progress or cut
  off by a kill, and is left out. One read, so a line appended while reading is never split."""
  with open(path) as f:
    text = f.read()
  return [line + '\n' for line in text[:text.rfind('\n') + 1].split('\n') if line.strip()]


def _truncate_after(path: str, step: int) -> None:
  """Keeps the records with step <= `step` (all of a fresh run's file is dropped)."""
  if not os.path.exists(path):
    return
  lines = _complete_lines(path)
  kept = [line for line in lines if json.loads(line)['step'] <= step] if step else []
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.writelines(kept)
  os.replace(tmp, path)


def nonfinite(scalars: Mapping[str, float]) -> str | None:
  """The name of the first metric that is NaN or infinite, else None."""
  for key, value in scalars.items():
    if isinstance(value, float) and not math.isfinite(value):
      return key
  return None
