"""Config validation: every bad setting becomes one clear line naming the setting and the fix."""

from __future__ import annotations

import os
from typing import Any

import ml_collections


class ConfigError(ValueError):
  """A user-fixable problem with a setting. `str(err)` is the one line shown to the user."""


def get(config: ml_collections.ConfigDict, path: str) -> Any:
  """Reads a dotted key such as 'train.batch_size'; a missing key is a ConfigError."""
  node = config
  for part in path.split('.'):
    if part not in node:
      raise ConfigError(f'config.{path} is missing: add it to the config file or pass '
                        f'--config.{path}=VALUE')
    node = node[part]
  return node


def check_positive_int(config: ml_collections.ConfigDict, *paths: str) -> None:
  for path in paths:
    value = get(config, path)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
      raise ConfigError(f'config.{path}={value!r} must be a positive integer: '
                        f'pass e.g. --config.{path}=1')


def check_nonneg_int(config: ml_collections.ConfigDict, *paths: str) -> None:
  for path in paths:
    value = get(config, path)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ConfigError(f'config.{path}={value!r} must be an integer >= 0: '
                        f'pass e.g. --config.{path}=0')


def check_range(config: ml_collections.ConfigDict, path: str, low: float, high: float,
                *, low_open: bool = False) -> None:
  value = get(config, path)
  ok = isinstance(value, (int, float)) and (low < value if low_open else low <= value)
  if not ok or value > high:
    bound = '(' if low_open else '['
    raise ConfigError(f'config.{path}={value!r} is outside {bound}{low}, {high}]: '
                      f'pass --config.{path}=VALUE within that range')


def check_choice(config: ml_collections.ConfigDict, path: str, choices: tuple[str, ...]) -> None:
  value = get(config, path)
  if value not in choices:
    raise ConfigError(f'config.{path}={value!r} is not one of {", ".join(choices)}: '
                      f'pass --config.{path}={choices[0]}')


def check_divisible(config: ml_collections.ConfigDict, path: str, divisor: int,
                    what: str) -> None:
  value = get(config, path)
  if value % divisor:
    raise ConfigError(f'config.{path}={value} is not divisible by {what} ({divisor}): '
                      f'pass --config.{path}={max(divisor, value // divisor * divisor)}')


def check_workdir(workdir: str) -> None:
  """The workdir must be creatable and writable; nothing in it is touched here."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f'--workdir={workdir} cannot be created ({e.strerror}): '
                      'pass a writable directory') from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise ConfigError(f'--workdir={workdir} is not writable: pass a writable directory')


def validate_train(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Checks the settings every experiment that uses `common.train` shares."""
  check_positive_int(config, 'train.steps', 'train.batch_size', 'train.log_every',
                     'train.checkpoint_every', 'train.keep_checkpoints')
  check_nonneg_int(config, 'seed', 'train.eval_every')
  check_divisible(config, 'train.batch_size', num_devices, 'the number of devices')
  check_choice(config, 'optim.name', ('adamw', 'adam', 'sgd'))
  check_choice(config, 'optim.schedule', ('constant', 'cosine', 'linear', 'step'))
  check_range(config, 'optim.lr', 0.0, 10.0, low_open=True)
  check_nonneg_int(config, 'optim.warmup_steps')
  check_range(config, 'optim.weight_decay', 0.0, 1.0)
  check_range(config, 'optim.grad_clip', 0.0, 1e9)


def config_args(arg: str, allowed: tuple[str, ...]) -> list[str]:
  """Splits a config file's `:a,b,c` argument, rejecting tokens not in `allowed`."""
  tokens = [t for t in arg.split(',') if t]
  unknown = [t for t in tokens if t not in allowed]
  if unknown:
    raise ValueError(f'unknown config argument(s) {unknown}: use a comma-separated subset of '
                     f'{allowed}')
  return tokens
