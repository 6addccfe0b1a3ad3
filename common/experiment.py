"""The one run path: `train_and_evaluate(config, workdir)` for any experiment.

`python -m common.main` and `common.sweep` both call it, so a reproduction's run and the same
config run by hand give the same numbers. It validates the config, refuses a workdir of another
experiment or model, writes `config.json`, calls the experiment module's
`train_and_evaluate(config, workdir)` and, when the run finished (not preempted), writes its
final metrics to `<workdir>/result.json` atomically.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from common import config as cfglib
from common import data

RESULT = 'result.json'


def _check_resume_target(workdir: str, config_json: str) -> None:
  """Refuses a workdir whose checkpoints come from another experiment or model."""
  path = os.path.join(workdir, 'config.json')
  if not (os.path.exists(path) and os.path.isdir(os.path.join(workdir, 'checkpoints'))):
    return
  with open(path) as f:
    saved = json.load(f)
  new = json.loads(config_json)
  for section in ('experiment', 'model'):
    if saved.get(section) != new.get(section):
      raise cfglib.ConfigError(
          f'--workdir={workdir} holds checkpoints of a different config.{section}: '
          'pass a fresh --workdir, or --force_resume to resume anyway')


def _plain(value: Any) -> Any:
  """JSON-ready copy of a metric value (numbers, lists, dicts of them)."""
  if isinstance(value, dict):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    return np.asarray(value).tolist()
  return value


def final_metrics(result: Any) -> tuple[dict[str, Any], bool]:
  """(metrics, preempted) of what an experiment's `train_and_evaluate` returned: a
  `common.train.FitResult` (its eval metrics) or a dict of metrics."""
  if result is None:
    return {}, False
  if hasattr(result, 'eval_metrics'):
    return _plain(dict(result.eval_metrics)), bool(getattr(result, 'preempted', False))
  metrics = _plain(dict(result))
  return metrics, bool(metrics.get('preempted', False))


def config_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True)


def read_result(workdir: str) -> dict[str, Any] | None:
  """The finished run's `{'metrics': ..., 'config': ...}`, or None if it has not finished."""
  path = os.path.join(workdir, RESULT)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, obj: Any) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1, sort_keys=True, default=float)
    f.write('\n')
  os.replace(tmp, path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs `config.experiment`'s `train_and_evaluate` in `workdir`; returns its final metrics."""
  if 'experiment' not in config:
    raise cfglib.ConfigError('config.experiment is missing: name the experiment module, '
                             "e.g. c.experiment = 'common.lm'")
  try:
    module = importlib.import_module(config.experiment)
  except ModuleNotFoundError as e:
    if e.name and config.experiment.startswith(e.name):
      raise cfglib.ConfigError(f'config.experiment={config.experiment!r} is not an importable '
                               'module: name one that defines train_and_evaluate') from None
    raise
  if hasattr(module, 'validate'):
    num_devices = config.get('num_devices', -1)
    module.validate(config, num_devices if num_devices > 0 else jax.device_count())
  if 'data' in config and 'data_dir' in config.data:
    data.data_dir(config.data.data_dir)  # an explicit but missing data path fails here
  cfglib.check_workdir(workdir)
  resolved = config_json(config)
  if not config.get('force_resume', False):
    _check_resume_target(workdir, resolved)
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, 'config.json.tmp')
    with open(tmp, 'w') as f:
      f.write(resolved)
    os.replace(tmp, os.path.join(workdir, 'config.json'))
  metrics, preempted = final_metrics(module.train_and_evaluate(config, workdir))
  if not preempted and jax.process_index() == 0:
    _write_json(os.path.join(workdir, RESULT), {'metrics': metrics,
                                                'config': json.loads(resolved)})
  return metrics
