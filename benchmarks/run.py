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
`--quick` is a smoke run of every code path (CI): smoke-config shapes, one device, every
program compiled with XLA's optimisation off (`common.FAST_COMPILE_XLA_FLAGS`), PyTorch on one
thread; its figures are not the table's.

The step is timed on the machine's own devices (one CPU device here, as the experiments run):
simulating 8 CPU devices slows a 1-device program by up to a third (the devices split the
host's threads), so the 1 vs 8 device ratio comes from a worker process that simulates 8
(`--dp-worker`), with both device counts timed there.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax

import common
from benchmarks import harness
from benchmarks import workloads as wl
from benchmarks.workloads import Workload
from common import parallel

MIN_TOTAL_S = 3.0  # full runs: each median over 10 steps or more, at least 3 s of them
XLA_FLAGS_GIVEN = os.environ.get('XLA_FLAGS', '')  # as the user set them

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


def time_on_devices(workload: Workload, num_devices: int, repeats: int,
                    min_total_s: float = 0.0) -> dict[str, float]:
  """`harness.bench_step` of the workload's step, data-parallel over `num_devices`."""
  step, state = workload.step_and_state()
  mesh = parallel.make_mesh(num_devices)
  return harness.bench_step(step, parallel.replicate(state, mesh),
                            parallel.shard_batch(workload.loader(0), mesh), repeats, min_total_s)


def data_parallel_overhead(name: str, devices: int = 8, timeout: float = 900) -> dict[str, Any]:
  """Step time on 1 and on `devices` simulated devices, both in one worker process."""
  env = dict(os.environ, XLA_FLAGS=os.environ.get('XLA_FLAGS', '')
             + f' --xla_force_host_platform_device_count={devices}')
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.run', f'--paper={name}',
                         f'--dp-worker={devices}'], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout, check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str, workload: Workload, roofline: float, repeats: int,
            torch_threads: tuple[int, ...] = (1,), min_total_s: float = 0.0,
            rounds: int = 3) -> dict[str, Any]:
  """One row: compile and step time, FLOP/s, loader share, PyTorch step time at its best
  thread count and the ratio (None without PyTorch). JAX and PyTorch (at each count in
  `torch_threads`) are timed in turns (`harness.interleaved_medians`).

  PyTorch's OpenMP threads spin at barriers: when another process holds a core, its step with
  one thread per core can run 10x slower, so each thread count is timed."""
  step, state = workload.step_and_state()
  mesh = parallel.make_mesh(1)
  batch = workload.loader(0)
  run, compile_s, flops, _ = harness.compile_step(step, parallel.replicate(state, mesh),
                                                  parallel.shard_batch(batch, mesh))
  fns: dict[Any, Callable[[], Any]] = {'jax': run}
  torch_steps = None
  if workload.torch_step is not None:
    try:
      from benchmarks import torch_steps
    except ImportError:  # the optional `bench` extra is not installed
      pass
  if torch_steps is not None:
    torch_fn = workload.torch_step(batch)
    fns.update({threads: torch_fn for threads in torch_threads})

  def before(key):  # a PyTorch turn runs at its thread count
    if key != 'jax':
      torch_steps.set_threads(key)

  medians = harness.interleaved_medians(fns, repeats, rounds, min_total_s, before)
  step_s = medians.pop('jax')
  row: dict[str, Any] = {'entry': name, 'shape': workload.note, 'compile_s': compile_s,
                         'step_s': step_s, 'flops': flops, 'flop_per_s': flops / step_s,
                         'roofline_fraction': flops / step_s / roofline,
                         'dp8_over_dp1': None}  # full runs: data_parallel_overhead
  row['loader_s'] = harness.loader_seconds(workload.loader, repeats)
  row['loader_fraction'] = row['loader_s'] / row['step_s']
  row['torch_step_s'] = row['jax_speedup_over_torch'] = None
  if medians:  # the faster thread count counts (JAX uses every core)
    row['torch_threads'] = min(medians, key=medians.get)
    row['torch_step_s'] = medians[row['torch_threads']]
    row['torch_step_s_by_threads'] = {str(t): s for t, s in medians.items()}
    row['jax_speedup_over_torch'] = row['torch_step_s'] / step_s
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
  parser.add_argument('--xla-default', action='store_true',
                      help="without common's XLA:CPU flags (common.CPU_XLA_FLAGS): the before")
  parser.add_argument('--dp-worker', type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.xla_default:  # read when the backend starts, i.e. at the first computation below
    os.environ['XLA_FLAGS'] = ' '.join(f for f in XLA_FLAGS_GIVEN.split()
                                       if f not in common.CPU_XLA_FLAGS)
  else:
    common.add_xla_flags(*common.CPU_XLA_FLAGS)
  if args.quick:  # also inherited by the worker processes
    common.add_xla_flags(*common.FAST_COMPILE_XLA_FLAGS)
  if args.dp_worker:  # one entry on 1 and N simulated devices (data_parallel_overhead)
    stats = {n: time_on_devices(ENTRIES[args.paper](False), n, 10, MIN_TOTAL_S)
             for n in (1, args.dp_worker)}
    print(json.dumps({'step_s_1dev': stats[1]['step_s'], 'compile_s_ndev': stats[
        args.dp_worker]['compile_s'], 'step_s_ndev': stats[args.dp_worker]['step_s']}))
    return
  names = known if args.paper == 'all' else args.paper.split(',')
  unknown = [n for n in names if n not in known]
  if unknown:
    parser.error(f'--paper={unknown[0]} is not one of all, {", ".join(known)}')
  # quick: one device (each extra device count is another compile), two timed steps
  cores = os.cpu_count() or 1
  repeats, threads = (2, (1,)) if args.quick else (10, (cores, 1))
  started = time.time()
  roofline = harness.matmul_roofline(512 if args.quick else 2048, repeats)
  rows = []
  for n in [n for n in names if n in ENTRIES]:
    started_entry = time.time()
    rows.append(measure(n, ENTRIES[n](args.quick), roofline, repeats, threads,
                        *((0.0, 1) if args.quick else (MIN_TOTAL_S, 3))))
    if not (args.quick or args.xla_default):  # the same global batch on 8 simulated devices
      dp = data_parallel_overhead(n)
      rows[-1].update(step_s_8dev=dp['step_s_ndev'], compile_s_8dev=dp['compile_s_ndev'],
                      step_s_1dev_of_8=dp['step_s_1dev'],
                      dp8_over_dp1=dp['step_s_ndev'] / dp['step_s_1dev'])
    rows[-1]['wall_s'] = time.time() - started_entry
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in rows[-1].items()}), flush=True)
  rl_rows = [row for n in names if n in RL_ENTRIES for row in RL_ENTRIES[n](args.quick)]
  for row in rl_rows:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in row.items()}), flush=True)
  result = {'command': 'python -m benchmarks.run ' + ' '.join(
      f'--{k.replace("_", "-")}={v}' if not isinstance(v, bool) else f'--{k.replace("_", "-")}'
      for k, v in vars(args).items()
      if v and k != 'out'),
      'date': time.strftime('%Y-%m-%d'), 'machine': f'{platform.machine()}, '
      f'{os.cpu_count()} cores, jax {jax.__version__} on {jax.devices()[0].platform}',
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'roofline_flop_per_s': roofline, 'wall_time_s': time.time() - started, 'rows': rows,
      'rl_rows': rl_rows}
  out = args.out or ('' if args.quick else str(ROOT / 'benchmarks' / 'results.json'))
  if out:
    result = merge_results(pathlib.Path(out), result)
    pathlib.Path(out).write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
  main()
