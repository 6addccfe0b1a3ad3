"""Measuring a jitted training step: compile time, steady-state time, FLOP/s vs the roofline."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# XLA compile options for every program the benchmarks compile; `--quick` turns LLVM's backend
# optimisation and XLA:CPU's fusion emitters off (a third of the compile time, slower steps: a
# smoke run, not a measurement).
COMPILER_OPTIONS: dict[str, Any] = {}
QUICK_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0,
                          'xla_cpu_use_fusion_emitters': False}


def jit(fn: Callable, **kwargs) -> Callable:
  """`jax.jit` with the benchmark's compile options."""
  return jax.jit(fn, compiler_options=dict(COMPILER_OPTIONS) or None, **kwargs)


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
  """Median wall time of `fn()` (which must block until its result is ready)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_roofline(n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of a large float32 matmul through jax: the machine's practical limit."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  seconds = median_seconds(lambda: matmul(a, a).block_until_ready(), repeats)
  return 2 * n ** 3 / seconds


def bench_step(step: Callable, state: Any, batch: Any, repeats: int) -> dict[str, float]:
  """Compile time, median step time and XLA's FLOP count of `step(state, batch)`."""
  start = time.perf_counter()  # tracing + lowering + XLA compile
  compiled = jax.jit(step).lower(state, batch).compile(dict(COMPILER_OPTIONS) or None)
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', 0.0)) if cost else 0.0
  holder = {'state': state}

  def run():  # no donation: the same inputs every call
    out = compiled(holder['state'], batch)
    jax.block_until_ready(out)

  step_s = median_seconds(run, repeats)
  return {'compile_s': compile_s, 'step_s': step_s, 'flops': flops,
          'flop_per_s': flops / step_s if step_s else 0.0}


def loader_seconds(batch_fn: Callable[[int], Any], repeats: int) -> float:
  """Median seconds for the data loader alone to produce one batch."""
  counter = iter(range(10 ** 9))
  return median_seconds(lambda: batch_fn(next(counter)), repeats, warmup=1)
