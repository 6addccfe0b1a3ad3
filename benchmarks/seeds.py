"""Seeds per minute of each paper's reproduction, for each way of running several seeds.

    python -m benchmarks.seeds --paper=all [--seeds=2]   # writes benchmarks/seeds.json

For each paper, its first full arm (`papers.<paper>.reproduce.arms(False)[0]`) runs `--seeds`
seeds end to end through `python -m common.main` (compile, data loading and evaluation
included, as a reproduction spends them), timed three ways on this machine:
- one after another (one process at a time: a reproduction's `--jobs=1`);
- side by side, one process per seed (`--jobs=N`; they share the machine's cores);
- vmapped in one program (`Arm.vmap_seeds`; only where the paper's experiment supports it).
Seeds per minute = seeds / wall minutes; the fastest way is the one to run a reproduction with.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

from common import report, sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _commands(arm: sweep.Arm, seeds: list[int], root: str, vmapped: bool) -> list[list[str]]:
  if vmapped:
    overrides = dict(arm.overrides, seed=seeds[0], num_seeds=len(seeds))
    return [sweep.command(arm.config, overrides, os.path.join(root, 'vmapped'))]
  return [sweep.command(arm.config, dict(arm.overrides, seed=s), os.path.join(root, f'seed_{s}'))
          for s in seeds]


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


def measure(paper: str, seeds: list[int]) -> dict:
  arm = importlib.import_module(f'papers.{paper}.reproduce').arms(False)[0]
  row = {'paper': paper, 'arm': arm.name, 'seeds': len(seeds), 'load_before': os.getloadavg()[0]}
  ways = [('vmapped', True, False)] if arm.vmap_seeds else [
      ('one after another', False, False), ('side by side', False, True)]
  for name, vmapped, parallel in ways:
    with tempfile.TemporaryDirectory() as root:
      wall = _time(_commands(arm, seeds, root, vmapped), parallel)
    row[name] = {'wall_s': wall, 'seeds_per_min': 60 * len(seeds) / wall}
  best = max((k for k, _, _ in ways), key=lambda k: row[k]['seeds_per_min'])
  row['best'] = best
  return row


def table(result: dict) -> str:
  rows = [(r['paper'], r['arm'], r['seeds'],
           *(f'{r[k]["seeds_per_min"]:.2f} ({r[k]["wall_s"]:.0f} s)' if k in r else ''
             for k in ('one after another', 'side by side', 'vmapped')),
           r['best'], f'{r["load_before"]:.1f}') for r in result['rows']]
  return (f'Measured by `{result["command"]}` on {result["date"]} ({result["machine"]}).\n\n'
          + report.markdown_table(('paper', 'arm', 'seeds', 'one after another: seeds/min',
                                   'side by side', 'vmapped', 'fastest', 'load before'), rows))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--paper', default='all')
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument('--out', default=str(ROOT / 'benchmarks' / 'seeds.json'))
  args = parser.parse_args()
  names = report.papers() if args.paper == 'all' else args.paper.split(',')
  rows = []
  for name in names:
    rows.append(measure(name, list(range(args.seeds))))
    print(json.dumps(rows[-1]), flush=True)
  result = {'command': 'python -m benchmarks.seeds ' + ' '.join(sys.argv[1:]),
            'date': datetime.date.today().isoformat(),
            'machine': f'{platform.machine()}, {os.cpu_count()} cores', 'rows': rows}
  path = pathlib.Path(args.out)
  tmp = path.with_suffix('.json.tmp')
  tmp.write_text(json.dumps(result, indent=1) + '\n')
  os.replace(tmp, path)
  print(table(result))


if __name__ == '__main__':
  main()
