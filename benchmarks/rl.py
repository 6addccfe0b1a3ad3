"""PROPS / PPO speed: environment steps per second end to end, jitted JAX loop vs PyTorch.

`measure_props(quick)` returns one row per arm (ppo, props) of `configs/props/cartpole.py`
(sampling-error diagnostic off): compile time and env steps/s of the jitted loop
(`papers.props.props.make_runner`) for 1 seed (run only, and end to end with compile) and
vmapped over S seeds (`Runner.train_seeds`: `jax.jit(jax.vmap(run))`); the same loop in the
official PyTorch style (`benchmarks/torch_rl.py`, one gymnasium env, seeds one after another)
with os.cpu_count() threads and with 1, the faster counting (tiny networks gain nothing from
threads, and PyTorch's threads stall when other jobs share the cores); and the ratios.

The vmapped loop has hung inside XLA:CPU before (a vmapped orthogonal init, papers/props), so it
runs in a subprocess (`python -m benchmarks.rl --worker ...`) with a timeout; a timeout is
reported as 'hang' and the benchmark goes on. `quick` shrinks everything to seconds, compiles
with XLA's optimisation off (`common.FAST_COMPILE_XLA_FLAGS`, which `run.py --quick` sets and the
worker inherits) and overlaps the vmapped subprocess with the rest: its numbers say nothing
about speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import jax
import numpy as np

import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARMS = ('ppo', 'props')


def settings(quick: bool) -> tuple[Any, Any, int, int]:
  """(LoopConfig, PROPSConfig, b, seeds) from configs/props/cartpole.py (quick: tiny)."""
  from common.rl import loop as looplib
  from common.rl import ppo as ppolib
  from papers.props import props as P
  path = ROOT / 'configs' / 'props' / 'cartpole.py'
  spec = importlib.util.spec_from_file_location('props_cartpole', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config('smoke' if quick else '')
  loop, ppo = dict(c.loop), dict(c.ppo)
  if quick:
    loop.update(total_steps=128, n=64, m=32, eval_every=1, eval_episodes=2)
    ppo.update(epochs=2, minibatches=4)
  base = looplib.LoopConfig(ppo=ppolib.PPOConfig(**ppo), **loop)
  props_cfg = P.PROPSConfig(**dict(c.props, se_steps=0))
  return base, props_cfg, int(c.b), int(c.num_seeds)


def _make_runner(arm: str, quick: bool):
  import gymnax

  from papers.props import props as P
  base, props_cfg, b, _ = settings(quick)
  env, env_params = gymnax.make('CartPole-v1')
  return P.make_runner(env, env_params, arm, base, props_cfg, b=b), base


def _taken_steps(metrics: dict, k_chunks: int) -> float:
  """Gradient steps taken (not masked) per seed: PPO plus behaviour (a mean over n/m chunks)."""
  steps = np.asarray(metrics['ppo/steps'], np.float64).sum(-1)
  if 'behavior/steps' in metrics:
    steps = steps + k_chunks * np.asarray(metrics['behavior/steps'], np.float64).sum(-1)
  return float(np.mean(steps))


def time_jax(arm: str, quick: bool, seeds: int | None) -> dict[str, Any]:
  """Compile and run one seed's whole run (`seeds=None`: `jit(run(init(key)))`) or S seeds'
  (`jit(vmap(run))` over carries initialised seed by seed, as `Runner.train_seeds` does:
  a vmapped orthogonal init deadlocks XLA:CPU). `setup_s` is that initialisation."""
  runner, base = _make_runner(arm, quick)
  keys = jax.random.split(jax.random.key(0), seeds or 1)
  start = time.perf_counter()
  if seeds is None:
    fn, arg = jax.jit(lambda key: runner.run(runner.init(key))), keys[0]
  else:
    fn, arg = jax.jit(jax.vmap(runner.run)), jax.block_until_ready(runner.init_seeds(keys))
  setup_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = fn.lower(arg).compile()
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  metrics = jax.block_until_ready(compiled(arg))
  run_s = time.perf_counter() - start
  steps = base.total_steps * (seeds or 1)
  return {'setup_s': setup_s, 'compile_s': compile_s, 'run_s': run_s,
          'env_steps_per_s': steps / run_s,
          'env_steps_per_s_end_to_end': steps / (setup_s + compile_s + run_s),
          'grad_steps': _taken_steps(metrics, base.n // base.period),
          'final_eval_return': float(np.mean(metrics['eval_return'][..., -1]))}


def _start_worker(arms: tuple[str, ...], quick: bool, seeds: int) -> subprocess.Popen:
  cmd = [sys.executable, '-m', 'benchmarks.rl', '--worker', f'--seeds={seeds}',
         f'--arms={",".join(arms)}'] + (['--quick'] if quick else [])
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _collect(proc: subprocess.Popen, arms: tuple[str, ...], timeout: float) -> dict[str, dict]:
  """The worker's JSON line per arm; an arm without one is a 'hang' (timeout) or an 'error'."""
  try:
    out, err = proc.communicate(timeout=timeout)
    status = 'error'
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
    status = 'hang'
  done = {}
  for line in out.splitlines():
    if line.startswith('{'):
      row = json.loads(line)
      done[row.pop('arm')] = dict(row, status='ok')
  for arm in arms:
    if arm not in done:
      done[arm] = {'status': status, 'timeout_s': timeout}
      if status == 'error':
        done[arm]['stderr'] = err[-1000:]
        print(f'vmapped {arm} worker failed:\n{err[-2000:]}', file=sys.stderr)
  return done


def measure_props(quick: bool, vmap_timeout: float | None = None,
                  arms: tuple[str, ...] = ARMS) -> list[dict[str, Any]]:
  """One row per arm of `arms`: JAX 1 seed and S seeds vmapped, PyTorch, and their ratios."""
  from benchmarks import torch_rl
  from papers.props import props as P
  base, props_cfg, b, seeds = settings(quick)
  seeds = 2 if quick else seeds
  timeout = vmap_timeout or (120.0 if quick else 600.0)
  worker = _start_worker(arms, True, seeds) if quick else None  # overlapped: quick only
  load_start = os.getloadavg()[0]
  jax_1 = {arm: time_jax(arm, quick, None) for arm in arms}
  rows = []
  for arm in arms:  # torch after every JAX compile: in quick, less overlap with the worker
    cfg = P.arm_config(arm, base, b)
    by_threads = {}  # os.cpu_count() threads, and 1 (robust when other jobs share the cores)
    for threads in (1,) if quick else sorted({os.cpu_count() or 1, 1}, reverse=True):
      torch_rl.set_threads(threads)
      by_threads[threads] = torch_rl.train(arm, cfg, props_cfg, seed=0)
    best = max(by_threads, key=lambda t: by_threads[t]['env_steps_per_s'])
    torch_run = by_threads[best]
    rows.append({
        'entry': f'props/{arm}', 'arm': arm,
        'shape': f'CartPole-v1, n={cfg.n}, b={cfg.b}, m={cfg.period}, {cfg.total_steps} steps',
        'total_steps': cfg.total_steps, 'vmap_seeds': seeds,
        **{f'jax_{k}': v for k, v in jax_1[arm].items()},
        'torch_env_steps_per_s': torch_run['env_steps_per_s'], 'torch_threads': best,
        'torch_env_steps_per_s_by_threads': {str(t): r['env_steps_per_s']
                                             for t, r in by_threads.items()},
        'torch_seconds': torch_run['seconds'],
        'torch_grad_steps': float(sum(torch_run['grad_steps'].values())),
        'torch_final_eval_return': torch_run['eval_return'][-1],
        'jax_over_torch': jax_1[arm]['env_steps_per_s'] / torch_run['env_steps_per_s'],
        'jax_over_torch_end_to_end': (jax_1[arm]['env_steps_per_s_end_to_end']
                                      / torch_run['env_steps_per_s'])})
  vmapped = (_collect(worker, arms, timeout) if quick else
             {arm: v for arm in arms  # one worker per arm, after the rest: nothing overlaps
              for v in [_collect(_start_worker((arm,), False, seeds), (arm,), timeout)[arm]]})
  for row in rows:
    v = vmapped[row['arm']]
    row.update({f'vmap_{k}': val for k, val in v.items()})
    row['vmap_over_torch'] = (v['env_steps_per_s'] / row['torch_env_steps_per_s']
                              if v['status'] == 'ok' else None)
  for row in rows:  # other jobs on the machine slow both sides, PyTorch's threads the most
    row['load_avg_1min_start'], row['load_avg_1min_end'] = load_start, os.getloadavg()[0]
  return rows


def _worker() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--worker', action='store_true')
  parser.add_argument('--arms', default=','.join(ARMS))
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument('--quick', action='store_true')
  args = parser.parse_args()
  common.add_xla_flags(*common.CPU_XLA_FLAGS)
  if args.quick:
    common.add_xla_flags(*common.FAST_COMPILE_XLA_FLAGS)
  for arm in args.arms.split(','):
    print(json.dumps({'arm': arm, **time_jax(arm, args.quick, args.seeds)}), flush=True)


if __name__ == '__main__':
  _worker()

