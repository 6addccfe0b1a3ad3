"""Benchmarks: each paper's training step against the machine's matmul roofline and PyTorch.

    python -m benchmarks.run --paper=all            # full run, writes benchmarks/results.json
    python -m benchmarks.run --paper=lm --quick     # seconds; asserts nothing about speed
    python -m benchmarks.run --paper=atss,unpg      # some entries, merged into results.json

Per entry: compile time, median step time, achieved FLOP/s from XLA's cost analysis as a
fraction of a float32 matmul's FLOP/s measured in the same run, the same step in PyTorch
(when installed: `pip install -e .[bench]`), loader time per batch against step time, and the
same global batch on 1 vs 8 (simulated) devices (full runs only). The supervised entries (one
per paper: its own loss, loader and optimizer) live in `benchmarks/workloads.py`;
`python -m common.report` puts the table in WORKSPACE.md. RL loops (`--paper=props`) are not one
step: `benchmarks/rl.py` measures env steps per second end to end (rows under `rl_rows`). A run
merges its rows into an existing results file, so one paper can be re-measured alone.
`--quick` is a smoke run of every code path (CI): smoke-config shapes, one device, XLA backend
optimisation off (half the compile time), PyTorch on one thread; its figures are not the table's.
"""

from __future__ import annotations

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks import workloads as wl  # noqa: E402
from benchmarks.workloads import Workload  # noqa: E402
from common import parallel  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

# name -> (quick: bool) -> Workload. A plain dict: add an entry to benchmark another step.
ENTRIES: dict[str, Callable[[bool], Workload]] = {
    'lm': wl.lm_workload,
    'convnet': wl.convnet_workload,
    'parscale': wl.parscale_workload,
    'edlm': wl.edlm_workload,
    'redi': wl.redi_workload,
    'rs2': wl.rs2_workload,
    'atss': wl.atss_workload,
    'sampling_free': wl.sampling_free_workload,
    'unpg': wl.unpg_workload,
}


def props_rows(quick: bool) -> list[dict[str, Any]]:
  """PROPS/PPO env steps per second end to end, JAX against PyTorch (benchmarks/rl.py)."""
  from benchmarks import rl  # gymnax and PyTorch only when measured
  return rl.measure_props(quick)


# Not a supervised step: an RL loop has its own measure function (rows under 'rl_rows').
RL_ENTRIES: dict[str, Callable[[bool], list[dict[str, Any]]]] = {'props': props_rows}


def measure(name: str, workload: Workload, roofline: float, repeats: int,
            devices: tuple[int, ...] = (1, 8), torch_threads: tuple[int, ...] = (1,)
            ) -> dict[str, Any]:
  """One row: compile and step time (on each device count), FLOP/s, loader share, PyTorch
  step time at its best thread count and the ratio (None without PyTorch).

  PyTorch's OpenMP threads spin at barriers: when another process holds a core, its step with
  one thread per core can run 10x slower, so each count in `torch_threads` is timed."""
  step, state = workload.step_and_state()
  batch = workload.loader(0)
  row: dict[str, Any] = {'entry': name, 'shape': workload.note}
  for n in devices:
    mesh = parallel.make_mesh(n)
    stats = harness.bench_step(step, parallel.replicate(state, mesh),
                               parallel.shard_batch(batch, mesh), repeats)
    if n == 1:
      row.update(stats)
      row['roofline_fraction'] = stats['flop_per_s'] / roofline
    row[f'compile_s_{n}dev'] = stats['compile_s']
    row[f'step_s_{n}dev'] = stats['step_s']
  row['dp8_over_dp1'] = row['step_s_8dev'] / row['step_s_1dev'] if 8 in devices else None
  row['loader_s'] = harness.loader_seconds(workload.loader, repeats)
  row['loader_fraction'] = row['loader_s'] / row['step_s']
  row['torch_step_s'] = row['jax_speedup_over_torch'] = None
  if workload.torch_step is not None:
    try:
      from benchmarks import torch_steps
    except ImportError:  # the optional `bench` extra is not installed
      return row
    torch_fn = workload.torch_step(batch)
    for threads in torch_threads:  # the faster thread count counts (JAX uses every core)
      torch_steps.set_threads(threads)
      seconds = harness.median_seconds(torch_fn, repeats)
      if row['torch_step_s'] is None or seconds < row['torch_step_s']:
        row['torch_step_s'], row['torch_threads'] = seconds, threads
    row['jax_speedup_over_torch'] = row['torch_step_s'] / row['step_s']
  return row


def merge_results(path: pathlib.Path, result: dict[str, Any]) -> dict[str, Any]:
  """`result` merged over the rows already in `path` (same entry: replaced; others kept), each
  row stamped with the command and date that measured it."""
  old = json.loads(path.read_text()) if path.exists() else {}
  for key in ('rows', 'rl_rows'):
    for r in old.get(key, []):
      r.setdefault('command', old.get('command'))
      r.setdefault('date', old.get('date'))
    fresh = {r['entry']: dict(r, command=result['command'], date=result['date'])
             for r in result.get(key, [])}
    kept = [fresh.pop(r['entry'], r) for r in old.get(key, [])]
    result[key] = kept + list(fresh.values())
  if old and not any(r['command'] == result['command'] for r in result['rows']):
    for k in ('command', 'date', 'roofline_flop_per_s', 'wall_time_s'):  # an RL-only run: the
      result[k] = old.get(k, result.get(k))  # header stays that of the supervised rows' run
  return result


def main() -> None:
  known = [*ENTRIES, *RL_ENTRIES]
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--paper', default='all',
                      help=f'all, or one or more (comma-separated) of {", ".join(known)}')
  parser.add_argument('--quick', action='store_true', help='tiny shapes, few repeats')
  parser.add_argument('--out', default='', help='default: benchmarks/results.json (full runs)')
  args = parser.parse_args()
  names = known if args.paper == 'all' else args.paper.split(',')
  unknown = [n for n in names if n not in known]
  if unknown:
    parser.error(f'--paper={unknown[0]} is not one of all, {", ".join(known)}')
  # quick: one device (each extra device count is another compile), two timed steps
  cores = os.cpu_count() or 1
  if args.quick:
    harness.COMPILER_OPTIONS.update(harness.QUICK_COMPILER_OPTIONS)
  repeats, devices, threads = (2, (1,), (1,)) if args.quick else (10, (1, 8), (cores, 1))
  started = time.time()
  roofline = harness.matmul_roofline(512 if args.quick else 2048, repeats)
  rows = []
  for n in [n for n in names if n in ENTRIES]:
    started_entry = time.time()
    rows.append(measure(n, ENTRIES[n](args.quick), roofline, repeats, devices, threads))
    rows[-1]['wall_s'] = time.time() - started_entry
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in rows[-1].items()}), flush=True)
  rl_rows = [row for n in names if n in RL_ENTRIES for row in RL_ENTRIES[n](args.quick)]
  for row in rl_rows:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in row.items()}), flush=True)
  result = {'command': 'python -m benchmarks.run ' + ' '.join(
      f'--{k}={v}' if not isinstance(v, bool) else f'--{k}' for k, v in vars(args).items()
      if v and k != 'out'),
      'date': time.strftime('%Y-%m-%d'), 'machine': f'{platform.machine()}, '
      f'{os.cpu_count()} cores, jax {jax.__version__} on {jax.devices()[0].platform}',
      'roofline_flop_per_s': roofline, 'wall_time_s': time.time() - started, 'rows': rows,
      'rl_rows': rl_rows}
  out = args.out or ('' if args.quick else str(ROOT / 'benchmarks' / 'results.json'))
  if out:
    result = merge_results(pathlib.Path(out), result)
    pathlib.Path(out).write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
  main()
