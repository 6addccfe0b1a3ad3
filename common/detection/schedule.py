"""How long a detector trains: a pilot at constant lr (`constant`) finds the step where
validation AP stops rising (`plateau_step`); the main runs train that long with the shape of the
COCO 1x schedule (`one_x`: lr x0.1 at 2/3 and 8/9 of training, as 60k and 80k of 90k steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MAIN_EVALS = 5  # evaluations of a main run (every steps / 5): two in its last fifth


def smooth(curve: Sequence[float], window: int = 3) -> np.ndarray:
  """Centred running mean over `window` points (fewer at the ends)."""
  c = np.asarray(curve, np.float64)
  half = window // 2
  return np.array([c[max(i - half, 0):i + half + 1].mean() for i in range(len(c))])


def plateau_step(steps: Sequence[int], curves: Sequence[Sequence[float]], tol: float,
                 window: int = 3) -> int:
  """The first evaluated step s after which the (seed-mean, `window`-smoothed) curve never
  rises more than `tol` above its value at s; the last step if no earlier one qualifies."""
  c = smooth(np.mean(np.asarray(curves, np.float64), 0), window)
  if len(c) != len(steps):
    raise ValueError(f'{len(steps)} steps for curves of {len(c)} evaluations')
  for i in range(len(c)):
    if c[i:].max() - c[i] <= tol:
      return int(steps[i])
  return int(steps[-1])  # unreachable: the last point always qualifies


def round_steps(steps: int, multiple: int = 100) -> int:
  """`steps` rounded up to a positive multiple of `multiple`."""
  return max(-(-int(steps) // multiple) * multiple, multiple)


def one_x(steps: int, evals: int = MAIN_EVALS) -> dict[str, Any]:
  """Config overrides of a run of `steps` steps with the 1x schedule's shape, evaluated every
  steps / evals steps and checkpointed there (a cut-off run resumes from its last evaluation)."""
  return {**constant(steps, evals), 'optim.schedule': 'step',
          'optim.decay_steps': (round(steps * 2 / 3), round(steps * 8 / 9))}


def constant(steps: int, evals: int) -> dict[str, Any]:
  """Config overrides of a pilot run: `steps` steps at constant lr, evaluated (and
  checkpointed) `evals` times."""
  if steps % evals:
    raise ValueError(f'{steps} steps do not split into {evals} evaluations')
  return {'train.steps': steps, 'train.eval_every': steps // evals,
          'train.checkpoint_every': steps // evals, 'optim.schedule': 'constant'}
