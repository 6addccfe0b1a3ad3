"""Seeds per minute of each paper's training step, JAX against PyTorch, each framework's best way.

    python -m benchmarks.throughput --paper=all        # writes benchmarks/throughput.json
    python -m benchmarks.throughput --paper=atss --quick  # smoke shapes; figures meaningless

A seed is `Workload.total_steps` steps of the paper's own training step (`benchmarks/workloads.py`,
shapes of its reproduction config; compile, data and evaluation excluded: `benchmarks.seeds`
times those end to end). With N = the machine's cores, the ways:
- JAX, one seed: one process, one seed (a sweep's `--jobs=1`);
- JAX, vmapped: N seeds in one program (`jax.vmap` over seed-stacked state and batches);
- JAX, one seed per device: N seeds, each device of N CPU devices running the one-seed step
  on its own (`jax.shard_map`; `--xla_force_host_platform_device_count=N`, a worker process);
- JAX, process per core: N one-seed processes side by side (a sweep's `--jobs=N`); each
  process's XLA:CPU thread pool spans every core, so they contend;
- JAX, process per core, pinned: the same, process i pinned to core i (`os.sched_setaffinity`
  before XLA starts its threads);
- PyTorch, one process: one seed at the faster of N threads and 1;
- PyTorch, process per core: N one-thread processes side by side.
The in-process ways (JAX one seed and vmapped, PyTorch one process) are timed in turns
(`harness.interleaved_medians`); side-by-side processes start their timed steps together, after
each has compiled and warmed up. seeds/min = seeds per step / median step s / steps x 60.
A row also records the 1-minute load average before it, the JAX compile times, the optimised
HLO's convolutions (grouped ones: `jax.vmap` of a convolution over seeds with their own weights
is one convolution with a feature group per seed), transposes and copies per JAX way
(`harness.hlo_counts`) and, where JAX's best way is slower than PyTorch's, the JAX step's op
profile (`benchmarks.profile`).
PROPS is an RL loop, not one step: its row comes from `benchmarks.rl.measure_props` (whole jitted
runs of its `props` arm, one seed and vmapped, against the PyTorch loop; `props_row`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import select
import statistics
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import common
from benchmarks import harness
from benchmarks.workloads import Workload
from common import results

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAPERS = ('parscale', 'edlm', 'redi', 'rs2', 'atss', 'sampling_free', 'unpg', 'props')
WORKER_TIMEOUT_S = 900.0


def _entries():
  from benchmarks.run import ENTRIES  # after the XLA flags are set
  return ENTRIES


def stacked(tree: Any, n: int) -> Any:
  """`n` copies of every leaf along a new leading (seed) axis."""
  return jax.tree.map(lambda x: jnp.stack([x] * n), tree)


def seed_batches(workload: Workload, n: int) -> dict[str, np.ndarray]:
  """Seed i's batch is the loader's batch i, stacked along a leading seed axis."""
  batches = [workload.loader(i) for i in range(n)]
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def vmapped_step(workload: Workload, n: int):
  """(`run()`, compile s, HLO counts) of the step vmapped over `n` seeds in one program."""
  step, state = workload.step_and_state()
  run, compile_s, _, hlo = harness.compile_step(jax.vmap(step), stacked(state, n),
                                                seed_batches(workload, n))
  return run, compile_s, hlo


def per_device(step, mesh: Mesh):
  """`step` on seed-stacked state and batch, one seed per device of `mesh`'s 'seed' axis
  (`jax.shard_map`): each device runs the one-seed step on its own seed. (`jax.vmap` under a
  sharding of the seed axis instead turns every convolution into a grouped one, which the
  partitioner all-gathers.)"""
  squeeze = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
  expand = lambda tree: jax.tree.map(lambda x: x[None], tree)  # noqa: E731
  return jax.shard_map(lambda s, b: expand(step(squeeze(s), squeeze(b))), mesh=mesh,
                       in_specs=P('seed'), out_specs=P('seed'))


def per_device_step(workload: Workload, n: int):
  """(`run()`, compile s, HLO counts) of `n` seeds on `n` devices, one seed each."""
  step, state = workload.step_and_state()
  mesh = Mesh(np.array(jax.devices()[:n]), ('seed',))
  state, batch = jax.device_put((stacked(state, n), seed_batches(workload, n)),
                                NamedSharding(mesh, P('seed')))
  run, compile_s, _, hlo = harness.compile_step(per_device(step, mesh), state, batch)
  return run, compile_s, hlo


def one_seed_step(workload: Workload):
  """(`run()`, compile s, HLO counts) of the one-seed step."""
  step, state = workload.step_and_state()
  run, compile_s, _, hlo = harness.compile_step(step, state, workload.loader(0))
  return run, compile_s, hlo


def _worker(kind: str, paper: str, quick: bool, n: int, repeats: int, min_total_s: float,
            core: int) -> None:
  """Builds one way's step (on core `core` alone when >= 0), prints 'ready', waits for a line
  on stdin, then prints the samples of its timed steps as JSON."""
  if core >= 0:
    os.sched_setaffinity(0, {core})
  workload = _entries()[paper](quick)
  if kind == 'torch':
    from benchmarks import torch_steps
    torch_steps.set_threads(1)
    run, compile_s, hlo = workload.torch_step(workload.loader(0)), 0.0, {}
  elif kind == 'devices':
    run, compile_s, hlo = per_device_step(workload, n)
  else:
    run, compile_s, hlo = one_seed_step(workload)
  print('ready', flush=True)
  sys.stdin.readline()
  times = harness.sample_seconds(run, repeats, 1, min_total_s)
  print(json.dumps({'times': times, 'compile_s': compile_s, 'hlo': hlo}), flush=True)


def _last_line(stderr: str) -> str:
  lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(('-', 'For '))]
  return lines[-1][:300] if lines else '(no stderr)'


def side_by_side(kind: str, paper: str, quick: bool, processes: int, n: int, repeats: int,
                 min_total_s: float, pinned: bool = False) -> list[dict[str, Any]]:
  """Starts `processes` workers of `kind` (worker i on core i when `pinned`), releases them
  together once all are ready, and returns each one's samples."""
  env = dict(os.environ)
  if kind == 'devices':
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '')
                        + f' --xla_force_host_platform_device_count={n}').strip()
  args = [sys.executable, '-m', 'benchmarks.throughput', f'--worker={kind}', f'--paper={paper}',
          f'--seeds={n}', f'--repeats={repeats}', f'--min-seconds={min_total_s}',
          *(['--quick'] if quick else [])]
  cores = sorted(os.sched_getaffinity(0))
  procs = [subprocess.Popen(args + [f'--core={cores[i % len(cores)] if pinned else -1}'],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for i in range(processes)]
  return [json.loads(line) for line in
          release_together(procs, f'{kind} worker for {paper}', WORKER_TIMEOUT_S)]


def _ready(p: subprocess.Popen, deadline: float) -> bool:
  """Reads worker `p`'s stdout (unbuffered, other lines skipped) up to its 'ready' line; False
  when it closes stdout first or `deadline` (time.monotonic()) passes."""
  seen = b''
  while 'ready' not in seen.decode(errors='replace').splitlines():
    if not select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
      return False
    chunk = os.read(p.stdout.fileno(), 4096)
    if not chunk:
      p.wait(max(1.0, deadline - time.monotonic()))
      return False
    seen += chunk
  return True


def release_together(procs: list[subprocess.Popen], what: str, timeout_s: float) -> list[str]:
  """Waits until every worker printed 'ready', writes 'go' to all, and returns each one's last
  stdout line; a worker that fails, or does not finish within `timeout_s` of the call, ends the
  wait with a one-line RuntimeError naming `what`. Every worker is killed on the way out."""
  deadline = time.monotonic() + timeout_s
  late = RuntimeError(f'{what} made no progress in {timeout_s:.0f} s '
                      '(benchmarks.throughput.release_together)')
  try:
    for p in procs:
      if not _ready(p, deadline):
        raise late if p.poll() is None else RuntimeError(
            f'{what} failed: {_last_line(p.communicate()[1])}')
    for p in procs:
      p.stdin.write('go\n')
      p.stdin.flush()
    out = []
    for p in procs:
      stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
      if p.returncode != 0:
        raise RuntimeError(f'{what} failed: {_last_line(stderr)}')
      out.append(stdout.strip().splitlines()[-1])
    return out
  except subprocess.TimeoutExpired as e:
    raise late from e
  finally:
    for p in procs:
      p.kill()


def _way(seeds: int, step_s: float, steps: int) -> dict[str, float]:
  return {'seeds': seeds, 'step_s': step_s, 'seeds_per_min': 60 * seeds / step_s / steps}


def props_row(rl: dict[str, Any]) -> dict[str, Any]:
  """PROPS, from `benchmarks.rl.measure_props`'s row of its arm: a whole jitted RL run, so a
  'step' is one environment step (collection and updates included) and a seed is the
  config's total env steps; PyTorch runs the official-style loop as one process."""
  steps, seeds = rl['total_steps'], rl['vmap_seeds']
  row = {'paper': 'props', 'load_before': rl['load_avg_1min_start'], 'seeds': seeds,
         'steps_per_seed': steps, 'shape': rl['shape'] + ' (a step: one env step)',
         'compile_s': rl['jax_compile_s'],
         'jax': {'one seed': _way(1, 1 / rl['jax_env_steps_per_s'], steps)},
         'torch': {'one process': dict(_way(1, 1 / rl['torch_env_steps_per_s'], steps),
                                       threads=rl['torch_threads'])}}
  if rl.get('vmap_status') == 'ok':
    row['jax']['vmapped'] = _way(seeds, seeds / rl['vmap_env_steps_per_s'], steps)
  return _verdict(row)


def _verdict(row: dict[str, Any]) -> dict[str, Any]:
  """Adds each framework's best way and the JAX / PyTorch ratios."""
  best = lambda ways: max(ways, key=lambda w: ways[w]['seeds_per_min'])  # noqa: E731
  row['jax_best'] = best(row['jax'])
  if row['torch']:
    row['torch_best'] = best(row['torch'])
    row['step_ratio'] = (row['torch']['one process']['step_s']
                         / row['jax']['one seed']['step_s'])
    row['best_ratio'] = (row['jax'][row['jax_best']]['seeds_per_min']
                         / row['torch'][row['torch_best']]['seeds_per_min'])
  return row


def measure(paper: str, quick: bool, n: int, repeats: int, min_total_s: float,
            rounds: int) -> dict[str, Any]:
  """One paper's row: step seconds and seeds per minute of every way."""
  row: dict[str, Any] = {'paper': paper, 'load_before': os.getloadavg()[0], 'seeds': n}
  workload = _entries()[paper](quick)
  row['steps_per_seed'] = workload.total_steps
  row['shape'] = workload.note
  row['hlo'] = {}
  one, row['compile_s'], row['hlo']['one seed'] = one_seed_step(workload)
  fns = {('jax', 'one seed'): one}
  try:
    fns[('jax', 'vmapped')], row['compile_s_vmapped'], row['hlo']['vmapped'] = vmapped_step(
        workload, n)
  except Exception as e:  # noqa: BLE001 - a step that cannot be vmapped: say why in the row
    row['vmapped_error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
  torch_fn = None
  if workload.torch_step is not None:
    from benchmarks import torch_steps
    torch_fn = workload.torch_step(workload.loader(0))
    for threads in sorted({n, 1}, reverse=True):
      fns[('torch', threads)] = torch_fn

  def before(key):
    if key[0] == 'torch':
      torch_steps.set_threads(key[1])

  medians = harness.interleaved_medians(fns, repeats, rounds, min_total_s, before)
  jax_s = {'one seed': (1, medians[('jax', 'one seed')])}
  if ('jax', 'vmapped') in medians:
    jax_s['vmapped'] = (n, medians[('jax', 'vmapped')])
  try:
    dev = side_by_side('devices', paper, quick, 1, n, repeats, min_total_s)[0]
    jax_s['one seed per device'] = (n, statistics.median(dev['times']))
    row['compile_s_devices'], row['hlo']['one seed per device'] = dev['compile_s'], dev['hlo']
  except RuntimeError as e:
    row['devices_error'] = str(e)
  for way, pinned in (('process per core', False), ('process per core, pinned', True)):
    procs = side_by_side('jax', paper, quick, n, n, repeats, min_total_s, pinned)
    jax_s[way] = (n, n / sum(1 / statistics.median(p['times']) for p in procs))
  steps = row['steps_per_seed']
  row['jax'] = {way: _way(k, s, steps) for way, (k, s) in jax_s.items()}
  row['torch'] = {}
  if torch_fn is not None:
    threads = min((k[1] for k in medians if k[0] == 'torch'), key=lambda t: medians[('torch', t)])
    procs = side_by_side('torch', paper, quick, n, n, repeats, min_total_s)
    row['torch'] = {
        'one process': dict(_way(1, medians[('torch', threads)], steps), threads=threads),
        'process per core': _way(n, n / sum(1 / statistics.median(p['times']) for p in procs),
                                 steps)}
  _verdict(row)
  if row.get('best_ratio', 1) < 1 and not quick:  # the evidence for why JAX's step is slower
    from benchmarks import profile
    prof = profile.profile(paper, quick)
    row['profile'] = {'op_ms_per_step': prof['op_ms_per_step'],
                      'category_share': prof['category_share'],
                      'op_share': {k: v['share'] for k, v in prof['op_share'].items()}}
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--paper', default='all', help=f'all, or comma-separated of {PAPERS}')
  parser.add_argument('--quick', action='store_true', help='smoke shapes, few repeats')
  parser.add_argument('--seeds', type=int, default=os.cpu_count() or 1,
                      help='N: seeds vmapped, devices, processes side by side')
  parser.add_argument('--repeats', type=int, default=0, help='timed steps (default 10; quick 2)')
  parser.add_argument('--min-seconds', type=float, default=-1.0,
                      help='timed seconds per way at least (default 3; quick 0)')
  parser.add_argument('--out', default='', help='default: benchmarks/throughput.json (full runs)')
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  parser.add_argument('--core', type=int, default=-1, help=argparse.SUPPRESS)
  args = parser.parse_args()
  common.add_xla_flags(*common.CPU_XLA_FLAGS)
  if args.quick:
    common.add_xla_flags(*common.FAST_COMPILE_XLA_FLAGS)
  repeats = args.repeats or (2 if args.quick else 10)
  min_s = args.min_seconds if args.min_seconds >= 0 else (0.0 if args.quick else 3.0)
  if args.worker:
    _worker(args.worker, args.paper, args.quick, args.seeds, repeats, min_s, args.core)
    return
  names = PAPERS if args.paper == 'all' else tuple(args.paper.split(','))
  if set(names) - set(PAPERS):
    parser.error(f'--paper={args.paper}: choose from all, {", ".join(PAPERS)}')
  out = pathlib.Path(args.out or ('' if args.quick else ROOT / 'benchmarks' / 'throughput.json'))
  started = time.time()
  rows = []
  for name in names:
    if name == 'props':  # an RL loop, not one step: benchmarks/rl.py times whole runs
      from benchmarks import rl
      rows.append(props_row(rl.measure_props(args.quick, arms=('props',))[0]))
    else:
      rows.append(measure(name, args.quick, args.seeds, repeats, min_s, 1 if args.quick else 3))
    print(json.dumps(rows[-1]), flush=True)
  result = {'command': 'python -m benchmarks.throughput ' + ' '.join(sys.argv[1:]),
            'date': datetime.date.today().isoformat(),
            'machine': f'{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}',
            'wall_time_s': time.time() - started, 'rows': rows}
  if str(out) not in ('', '.'):
    results.write_json(out, result)
    print(f'wrote {out}')


if __name__ == '__main__':
  main()
