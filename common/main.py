"""The one entry point for every experiment.

    python -m common.main --config=configs/<paper>/<experiment>.py[:arg] --workdir=DIR \
        [--config.train.steps=100 ...]

Sets up XLA flags, logging, (optionally) multi-host JAX and the watchdog, then runs the one
run path `common.experiment.train_and_evaluate(config, workdir)`: it validates the config,
writes the resolved config into the workdir, calls the `train_and_evaluate` of the module named
by `config.experiment` and writes the final metrics to `<workdir>/result.json`. Bad input
ends in one line on stderr and a
non-zero exit; nothing already in the workdir is changed.
"""

from __future__ import annotations

import os
import sys

import common

common.add_xla_flags(*common.CPU_XLA_FLAGS)  # before the first computation

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from common import config as cfglib  # noqa: E402
from common import experiment, watchdog  # noqa: E402

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
flags.DEFINE_float('watchdog_s', 1800, 'Exit with one line naming the phase and step when a '
                   'run makes no progress for this many seconds (0: never).')

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


def run(config, workdir: str) -> None:
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if FLAGS.compilation_cache:
    jax.config.update('jax_compilation_cache_dir', FLAGS.compilation_cache)
  if FLAGS.force_resume:
    with config.unlocked():
      config.force_resume = True
  watchdog.start(FLAGS.watchdog_s)
  logging.info('devices: %s; processes: %d', jax.devices(), jax.process_count())
  experiment.train_and_evaluate(config, workdir)


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
