"""The one entry point for every experiment.

    python -m common.main --config=configs/<paper>/<experiment>.py[:arg] --workdir=DIR \
        [--config.train.steps=100 ...]

Validates the config, sets up logging, the device mesh and (optionally) multi-host JAX,
writes the resolved config into the workdir and calls `train_and_evaluate(config, workdir)`
of the module named by `config.experiment`. Bad input ends in one line on stderr and a
non-zero exit; nothing already in the workdir is changed.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from common import config as cfglib
from common import data

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file[:arg].',
                                          lock_config=True)
flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and results go.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-host only).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-host only).')
flags.DEFINE_integer('process_id', None, 'This process index (multi-host only).')
flags.DEFINE_bool('force_resume', False,
                  'Resume even if the workdir\'s checkpoints come from another model config.')
flags.DEFINE_string('compilation_cache', os.path.expanduser('~/.cache/papers_jax'),
                    'Persistent XLA compilation cache directory ("" disables it).')

EXIT_BAD_INPUT, EXIT_NONFINITE, EXIT_CHECKPOINT = 2, 3, 4


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with config errors (unknown key, wrong type) as one line."""
  try:
    return FLAGS(argv)
  except (flags.Error, KeyError, TypeError, ValueError, AttributeError, OSError) as e:
    message = ' '.join(str(e).split())
    key = message.strip('\'"')  # config_flags reports an unknown key as just its name
    unknown = [a.split('=')[0] for a in argv
               if a.startswith('--config.') and key in a.split('=')[0].split('.')]
    if unknown:
      _fail(f'{unknown[0]}: no such setting in this config; check the spelling against '
            'the config file')
    _fail(message[:500])


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


def run(config, workdir: str) -> None:
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if FLAGS.compilation_cache:
    jax.config.update('jax_compilation_cache_dir', FLAGS.compilation_cache)
  if 'experiment' not in config:
    raise cfglib.ConfigError('config.experiment is missing: name the experiment module, '
                             "e.g. c.experiment = 'common.lm'")
  try:
    module = importlib.import_module(config.experiment)
  except ModuleNotFoundError:
    raise cfglib.ConfigError(f'config.experiment={config.experiment!r} is not an importable '
                             'module: name one that defines train_and_evaluate') from None
  if hasattr(module, 'validate'):
    num_devices = config.get('num_devices', -1)
    module.validate(config, num_devices if num_devices > 0 else jax.device_count())
  if 'data' in config and 'data_dir' in config.data:
    data.data_dir(config.data.data_dir)  # an explicit but missing data path fails here
  cfglib.check_workdir(workdir)
  if FLAGS.force_resume:
    with config.unlocked():
      config.force_resume = True
  config_json = config.to_json_best_effort(indent=2, sort_keys=True)
  if not FLAGS.force_resume:
    _check_resume_target(workdir, config_json)
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, 'config.json.tmp')
    with open(tmp, 'w') as f:
      f.write(config_json)
    os.replace(tmp, os.path.join(workdir, 'config.json'))
  logging.info('devices: %s; processes: %d', jax.devices(), jax.process_count())
  module.train_and_evaluate(config, workdir)


def main(argv: list[str]) -> None:
  if not FLAGS['verbosity'].present:  # orbax logs every file it writes at INFO
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]}: settings go in --config.KEY=VALUE')
  try:
    config = _CONFIG.value
    if config is not None:
      config.get('experiment')
  except OSError as e:  # config_flags defers a failed load to the first access
    _fail(f'--config={FLAGS["config"].serialize().split("=", 1)[-1]} cannot be loaded '
          f'({str(e).splitlines()[-1].strip()}): pass an existing config file')
  if config is None:
    _fail('--config is required: pass --config=configs/quickstart.py')
  if not FLAGS.workdir:
    _fail('--workdir is required: pass --workdir=/tmp/run')
  from common.checkpoint import CheckpointWriteError
  from common.train import NonFiniteError
  try:
    run(config, FLAGS.workdir)
  except cfglib.ConfigError as e:
    _fail(str(e))
  except NonFiniteError as e:
    _fail(str(e), EXIT_NONFINITE)
  except CheckpointWriteError as e:
    _fail(str(e), EXIT_CHECKPOINT)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
