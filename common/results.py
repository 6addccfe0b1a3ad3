"""Results files: what every reproduction writes, with the provenance to trust it.

`papers/<name>/results.json` holds the claims (paper's number beside ours, with a verdict),
tables, plot file names and provenance. `python -m common.report` turns it into the README
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

VERDICTS = ('reproduced', 'partly', 'not')
PROVENANCE = ('command', 'git_commit', 'date', 'machine', 'seeds', 'wall_time_s', 'versions')
_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'grain', 'numpy')


def verdict(effect: float, noise: float, expected_sign: int = 1) -> str:
  """The rule in CONTRIBUTING.md: `effect` is ours in the paper's direction when its sign is
  `expected_sign`; reproduced = right direction and |effect| > noise (2 standard errors of the
  difference over seeds); partly = right direction within noise; not = otherwise."""
  if effect * expected_sign <= 0:
    return 'not'
  return 'reproduced' if abs(effect) > noise else 'partly'


def claim(text: str, paper: str, ours: str, verdict_: str) -> dict[str, str]:
  if verdict_ not in VERDICTS:
    raise ValueError(f'verdict {verdict_!r} is not one of {VERDICTS}')
  return {'claim': text, 'paper': paper, 'ours': ours, 'verdict': verdict_}


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


def write_results(path: str | os.PathLike, *, paper: str, title: str,
                  claims: Sequence[dict], tables: Sequence[dict] = (),
                  plots: Sequence[str] = (), notes: Sequence[str] = (),
                  seeds: Sequence[int] = (0,), wall_time_s: float = 0.0,
                  command: str | None = None) -> dict[str, Any]:
  """Writes results.json atomically; plot names are relative to its folder."""
  results = {'paper': paper, 'title': title, 'claims': list(claims), 'tables': list(tables),
             'plots': list(plots), 'notes': list(notes),
             'provenance': provenance(seeds, wall_time_s, command)}
  path = pathlib.Path(path)
  tmp = path.with_suffix('.json.tmp')
  tmp.write_text(json.dumps(results, indent=2, default=float) + '\n')
  os.replace(tmp, path)
  return results
