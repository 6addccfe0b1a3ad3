"""The checkpointed block loop of an RL run, for both drivers (gymnax and gymnasium).

A runner's carry is a pytree and a block is `eval_every` PPO updates of every seed followed by an
evaluation. `run_blocks` gives it what `common.train.fit` gives a supervised run: it resumes
from the newest good checkpoint in the workdir (`Checkpointer`), evaluates the untrained policy
first (step 0, fresh runs only), runs the remaining blocks with a tqdm bar and watchdog beats,
writes each block's metrics to metrics.jsonl (`MetricWriter`; on resume, records past the
restored step are dropped), checkpoints the carry every `checkpoint_every` blocks and at the end,
and on SIGTERM (`Preemption`) checkpoints at the current block boundary and returns.

Logged per block at step = env steps per seed: the seed mean of every metric (over seeds and
the block's PPO updates), `<key>/seed<i>` per seed for the keys in `PER_SEED` and for every
measurement (`se/...`, the loop's `hooks.measure`), and
`perf/env_steps_per_s` (wall clock, the first block includes compilation).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import tqdm

from common import checkpoint, watchdog
from common import metrics as metricslib
from common import train as trainlib

PER_SEED = ('eval_return', 'train_return')
PER_SEED_PREFIX = 'se/'  # the measurement hook's metrics (common.rl.loop.Hooks.measure)


@dataclasses.dataclass
class BlocksResult:
  carry: Any
  preempted: bool
  resumed_from: int


def block_scalars(metrics: Mapping[str, Any], num_seeds: int) -> dict[str, float]:
  """Seed means of one block's metrics (leading seed axis), and `<key>/seed<i>` of PER_SEED and
  of the measurements (means over the updates that measured)."""
  def mean(key, v, axis=None):  # measurements are NaN at the updates without one
    return (np.nanmean if key.startswith(PER_SEED_PREFIX) else np.mean)(v, axis)

  out = {k: float(mean(k, v)) for k, v in metrics.items()}
  for key in metrics:
    if key in PER_SEED or key.startswith(PER_SEED_PREFIX):
      per_seed = mean(key, np.asarray(metrics[key], np.float64).reshape(num_seeds, -1), 1)
      out.update({f'{key}/seed{i}': float(v) for i, v in enumerate(per_seed)})
  return out


def run_blocks(workdir: str, carry: Any, block: Callable, evaluate: Callable, *, blocks: int,
               steps_per_block: int, num_seeds: int, checkpoint_every: int, keep: int,
               config_json: str, strict: bool = True) -> BlocksResult:
  """Runs `block(carry) -> (carry, metrics)` up to `blocks` times from the newest checkpoint;
  `evaluate(carry)` -> eval return per seed of the untrained policy (step 0)."""
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), keep, config_json,
                                 strict=strict)
  carry, start = ckpt.restore_latest(carry)
  main = jax.process_index() == 0
  if start and main:
    tqdm.tqdm.write(f'{workdir}: resumed from env step {start} of {blocks * steps_per_block}')
  writer = metricslib.MetricWriter(workdir, resume_step=start)
  if start == 0:
    watchdog.beat('compile and evaluate the untrained policy', 0)
    first = jax.device_get(evaluate(carry))
    writer.write_scalars(0, block_scalars({'eval_return': np.asarray(first)}, num_seeds))
  progress = tqdm.tqdm(total=blocks * steps_per_block, initial=start, disable=not main,
                       mininterval=2.0, unit='step', desc=os.path.basename(workdir.rstrip('/')))
  preempted = False
  with trainlib.Preemption() as preemption:
    for b in range(start // steps_per_block, blocks):
      watchdog.beat('train' if b * steps_per_block > start else 'compile and first block',
                    b * steps_per_block)
      began = time.perf_counter()
      carry, metrics = block(carry)
      scalars = block_scalars(jax.device_get(metrics), num_seeds)
      done = (b + 1) * steps_per_block
      bad = metricslib.nonfinite(scalars)
      if bad:
        ckpt.wait()
        raise trainlib.NonFiniteError(f'env step {done}: {bad} is {scalars[bad]}; stopped, the '
                                      'last good checkpoint is kept (lower the learning rates)')
      rate = num_seeds * steps_per_block / max(time.perf_counter() - began, 1e-9)
      writer.write_scalars(done, scalars | {'perf/env_steps_per_s': rate})
      progress.set_postfix(eval_return=f'{scalars["eval_return"]:.1f}', refresh=False)
      progress.update(steps_per_block)
      if (b + 1) % checkpoint_every == 0 or b + 1 == blocks or preemption.requested:
        watchdog.beat('checkpoint', done)
        ckpt.save(done, carry)
      if preemption.requested:
        preempted = True
        break
  progress.close()
  ckpt.wait()
  writer.close()
  return BlocksResult(carry, preempted, start)
