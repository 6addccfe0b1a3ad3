"""Seeds per minute of each paper's reproduction, for each way of running several seeds.

    python -m benchmarks.seeds --paper=all [--seeds=2]   # writes benchmarks/seeds.json

For each paper, its first full arm (`papers.<paper>.reproduce.arms(False)[0]`) runs `--seeds`
seeds end to end through `python -m common.main` (compile, data loading and evaluation
included, as a reproduction spends them), timed up to four ways on this machine:
- one after another (one process at a time: a reproduction's `--jobs=1`);
- side by side, one process per seed (`--jobs=N`; they share the machine's cores);
- vmapped in one program (where the arm sets `Arm.vmap_seeds`);
- one after another with `--block` steps per jitted call (`train.steps_per_dispatch`; where the
  arm trains with `common.train.fit` and its logged, evaluated and saved steps allow it).
Seeds per minute = seeds / wall minutes; the fastest way is the one to run a reproduction with.
`--ways` measures only some ways and merges them into the rows already in `--out`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

from common import report, results, sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]


WAYS = report.SEED_WAYS


def _commands(arm: sweep.Arm, seeds: list[int], root: str, vmapped: bool,
              extra: dict) -> list[list[str]]:
  if vmapped:
    overrides = dict(arm.overrides, seed=seeds[0], num_seeds=len(seeds), **extra)
    return [sweep.command(arm.config, overrides, os.path.join(root, 'vmapped'))]
  return [sweep.command(arm.config, dict(arm.overrides, seed=s, **extra),
                        os.path.join(root, f'seed_{s}')) for s in seeds]


def _block(arm: sweep.Arm, block: int) -> int:
  """The most steps per dispatch, up to `block`, that the arm's logged, evaluated and saved
  steps allow (1: the arm does not train with `common.train.fit`)."""
  cfg = sweep.load_config(arm.config, arm.overrides, lock=False).get('train', {})
  if 'steps_per_dispatch' not in cfg:
    return 1
  return math.gcd(block, *(cfg.get(k, 0) for k in ('log_every', 'eval_every', 'checkpoint_every')))


def _time(commands: list[list[str]], parallel: bool) -> float:
  env = dict(os.environ)
  started = time.perf_counter()
  run = lambda args: subprocess.Popen([sys.executable, '-m', 'common.main', *args,  # noqa: E731
                                       '--compilation_cache='],  # every way compiles
                                      cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
  procs = [run(c) for c in commands] if parallel else []
  if not parallel:
    for c in commands:
      p = run(c)
      if p.wait() != 0:
        raise RuntimeError(p.stderr.read()[-2000:])
  for p in procs:
    if p.wait() != 0:
      raise RuntimeError(p.stderr.read()[-2000:])
  return time.perf_counter() - started


def measure(paper: str, seeds: list[int], ways: tuple[str, ...], block: int,
            row: dict | None = None) -> dict:
  arm = importlib.import_module(f'papers.{paper}.reproduce').arms(False)[0]
  row = dict(row or {}, paper=paper, arm=arm.name, seeds=len(seeds))
  block = _block(arm, block)
  possible = {'vmapped': arm.vmap_seeds, 'one after another': True, 'side by side': True,
              'k steps per dispatch': block > 1}
  for way in ways:
    if not possible[way]:
      continue
    extra = {'train.steps_per_dispatch': block} if way == 'k steps per dispatch' else {}
    row['block'] = block if extra else row.get('block')
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as root:
      wall = _time(_commands(arm, seeds, root, way == 'vmapped', extra), way == 'side by side')
    row[way] = {'wall_s': wall, 'seeds_per_min': 60 * len(seeds) / wall, 'load_before': load}
  row['best'] = max((w for w in WAYS if w in row), key=lambda w: row[w]['seeds_per_min'])
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--paper', default='all')
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument('--block', type=int, default=10,
                      help='k of the "k steps per dispatch" way (at most)')
  parser.add_argument('--ways', default=','.join(WAYS), help=f'comma-separated, of {WAYS}')
  parser.add_argument('--out', default=str(ROOT / 'benchmarks' / 'seeds.json'))
  args = parser.parse_args()
  names = report.papers() if args.paper == 'all' else args.paper.split(',')
  ways = tuple(args.ways.split(','))
  if set(ways) - set(WAYS):
    parser.error(f'--ways={args.ways}: choose from {WAYS}')
  path = pathlib.Path(args.out)
  command = 'python -m benchmarks.seeds ' + ' '.join(sys.argv[1:])
  result = {'commands': [], 'rows': []}
  if path.exists() and ways != WAYS:  # merge into the rows measured before
    result = json.loads(path.read_text())
  rows = {r['paper']: r for r in result['rows']}
  for name in names:
    rows[name] = measure(name, list(range(args.seeds)), ways, args.block, rows.get(name))
    print(json.dumps(rows[name]), flush=True)
  result.update(commands=[*result.get('commands', []), command],
                date=datetime.date.today().isoformat(), rows=list(rows.values()),
                machine=f'{platform.machine()}, {os.cpu_count()} cores')
  results.write_json(path, result)
  print(report.seeds_table(result))


if __name__ == '__main__':
  main()
