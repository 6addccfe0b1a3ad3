"""Measuring a jitted training step: compile time, steady-state time, FLOP/s vs the roofline."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def sample_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2,
                   min_total_s: float = 0.0) -> list[float]:
  """Wall times of `repeats` or more calls of `fn()` (which must block until its result is
  ready), until they add up to `min_total_s` (short steps get more samples)."""
  for _ in range(warmup):
    fn()
  times: list[float] = []
  while len(times) < repeats or sum(times) < min_total_s:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2,
                   min_total_s: float = 0.0) -> float:
  """Median of `sample_seconds`."""
  return statistics.median(sample_seconds(fn, repeats, warmup, min_total_s))


def interleaved_medians(fns: dict[Any, Callable[[], Any]], repeats: int, rounds: int = 3,
                        min_total_s: float = 0.0,
                        before: Callable[[Any], None] = lambda key: None) -> dict[Any, float]:
  """Median seconds of each of `fns`, timed in turns over `rounds` rounds (`before(key)` runs
  before each turn), so that a machine whose speed drifts, as a shared VM's does, slows every
  contender alike rather than whichever happened to run during the slow minute."""
  times: dict[Any, list[float]] = {key: [] for key in fns}
  for r in range(rounds):
    for key, fn in fns.items():
      before(key)
      times[key] += sample_seconds(fn, -(-repeats // rounds), 2 if r == 0 else 1,
                                   min_total_s / rounds)
  return {key: statistics.median(t) for key, t in times.items()}


def matmul_roofline(n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of a large float32 matmul through jax: the machine's practical limit."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  seconds = median_seconds(lambda: matmul(a, a).block_until_ready(), repeats)
  return 2 * n ** 3 / seconds


def compile_step(step: Callable, state: Any, batch: Any
                 ) -> tuple[Callable[[], None], float, float, dict[str, int]]:
  """(`run()`: one blocking call of the compiled `step(state, batch)`, compile seconds, XLA's
  FLOP count of the step, `hlo_counts` of its optimised HLO)."""
  start = time.perf_counter()  # tracing + lowering + XLA compile
  compiled = jax.jit(step).lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', 0.0)) if cost else 0.0

  def run():  # no donation: the same inputs every call
    jax.block_until_ready(compiled(state, batch))

  return run, compile_s, flops, hlo_counts(compiled.as_text())


def hlo_counts(hlo: str) -> dict[str, int]:
  """Convolutions (all, and grouped: feature or batch group count > 1), transposes and copies
  in an optimised HLO module's text."""
  convs = re.findall(r' convolution\(.*', hlo)
  grouped = [c for c in convs if re.search(r'(feature|batch)_group_count=([2-9]|\d\d)', c)]
  return {'convolutions': len(convs), 'grouped_convolutions': len(grouped),
          'transposes': hlo.count(' transpose('), 'copies': hlo.count(' copy(')}


def bench_step(step: Callable, state: Any, batch: Any, repeats: int,
               min_total_s: float = 0.0) -> dict[str, float]:
  """Compile time, median step time and XLA's FLOP count of `step(state, batch)`."""
  run, compile_s, flops, _ = compile_step(step, state, batch)
  step_s = median_seconds(run, repeats, min_total_s=min_total_s)
  return {'compile_s': compile_s, 'step_s': step_s, 'flops': flops,
          'flop_per_s': flops / step_s if step_s else 0.0}


def loader_seconds(batch_fn: Callable[[int], Any], repeats: int) -> float:
  """Median seconds for the data loader alone to produce one batch."""
  counter = iter(range(10 ** 9))
  return median_seconds(lambda: batch_fn(next(counter)), repeats, warmup=1)
