"""Results files: what every reproduction writes, with the provenance to trust it.

`papers/<name>/results.json` holds the claims (paper's number beside ours, each judged by
`common.stats`, with its per-seed values, interval, floor and convergence), every run's final
metrics (`runs`: arm -> one entry per seed, with the command that reproduces it), tables, plot
file names and provenance. When a rerun changes a claim's verdict, the claim keeps the earlier
ones in `history` (verdict, date, commit). `python -m common.report` turns it into the README
results section and the WORKSPACE.md status table; numbers are never typed by hand.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

PROVENANCE = ('command', 'git_commit', 'date', 'machine', 'seeds', 'wall_time_s', 'versions')
_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'grain', 'numpy')


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
  return {'title': title, 'columns': list(columns), 'rows': [list(r) for r in rows]}


def _git_commit() -> str:
  try:
    out = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                         cwd=pathlib.Path(__file__).parent, check=True).stdout.strip()
    # '+dirty': uncommitted code or settings (not results, plots or docs, which runs rewrite)
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--',
                            ':(top)*.py', ':(top)pyproject.toml'], capture_output=True, text=True,
                           cwd=pathlib.Path(__file__).parent).stdout.strip()
    return out + ('+dirty' if dirty else '')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def provenance(seeds: Sequence[int], wall_time_s: float, command: str | None = None
               ) -> dict[str, Any]:
  import jax
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return {
      'command': command or 'python ' + ' '.join(
          [f'-m {_module_name()}'] + sys.argv[1:]).strip(),
      'git_commit': _git_commit(),
      'date': datetime.date.today().isoformat(),
      'machine': f'{platform.machine()}, {os.cpu_count()} cores, '
                 f'{jax.device_count()} x {jax.devices()[0].platform}',
      'seeds': list(seeds),
      'wall_time_s': round(float(wall_time_s), 1),
      'versions': versions,
  }


def _module_name() -> str:
  main = sys.modules.get('__main__')
  spec = getattr(main, '__spec__', None)
  return spec.name if spec is not None else sys.argv[0]


def with_history(claims: Sequence[dict], previous: dict | None) -> list[dict]:
  """`claims` with each one's earlier verdicts (from the `previous` results of the same path)
  in `history` when the verdict changed; matched by claim text."""
  if not previous:
    return [dict(c) for c in claims]
  p = previous.get('provenance', {})
  old = {c['claim']: c for c in previous.get('claims', [])}
  out = []
  for c in claims:
    c = dict(c)
    before = old.get(c['claim'])
    if before is not None:
      history = list(before.get('history', []))
      if before['verdict'] != c['verdict']:
        history.append({'verdict': before['verdict'], 'date': p.get('date', ''),
                        'commit': p.get('git_commit', '')[:12], 'ours': before.get('ours', '')})
      if history:
        c['history'] = history
    out.append(c)
  return out


def write_results(path: str | os.PathLike, *, paper: str, title: str,
                  claims: Sequence[dict], tables: Sequence[dict] = (),
                  plots: Sequence[str] = (), notes: Sequence[str] = (),
                  seeds: Sequence[int] = (0,), wall_time_s: float = 0.0,
                  command: str | None = None, runs: dict | None = None) -> dict[str, Any]:
  """Writes results.json atomically; plot names are relative to its folder."""
  path = pathlib.Path(path)
  previous = json.loads(path.read_text()) if path.exists() else None
  results = {'paper': paper, 'title': title, 'claims': with_history(claims, previous),
             'tables': list(tables), 'plots': list(plots), 'notes': list(notes),
             'runs': runs or {}, 'provenance': provenance(seeds, wall_time_s, command)}
  write_json(path, results, indent=2)
  return results


def write_json(path: str | os.PathLike, obj: Any, indent: int = 1) -> None:
  """Writes `obj` as JSON atomically (a temporary file, then a rename): a crash never leaves a
  half-written file."""
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_text(json.dumps(obj, indent=indent, default=float) + '\n')
  os.replace(tmp, path)
