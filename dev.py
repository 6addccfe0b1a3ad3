#!/usr/bin/env python3
"""Set up `.venv` on first use, then run a reproduction or the test suite.

    python3 dev.py                               # the papers, their verdicts and wall times
    python3 dev.py reproduce [PAPER] [FLAGS]     # default: props (no data needed)
    python3 dev.py reproduce quickstart          # the tiny character LM of the foundation
    python3 dev.py test [PYTEST ARGS]            # the whole suite (what CI runs)

Every reproduction takes the same flags: --quick (few-step form), --workdir=DIR (resumes:
finished runs are skipped), --seeds=0,1,2, --arms=a,b, --jobs=N. Needs Python >= 3.11 and pip;
reinstalls when pyproject.toml changes. Set PAPERS_EXTRAS (default "test") to install more
extras, e.g. "test,hf" as CI does, or "test,gpu" on an NVIDIA machine.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent
VENV = ROOT / '.venv'
PY = VENV / 'bin' / 'python'
STAMP = VENV / '.installed-pyproject'
DEFAULT_PAPER = 'props'  # needs no dataset: gymnax CartPole and a bandit
SUPPORTED = ((3, 13), (3, 12), (3, 11))


def _python() -> str:
  if sys.version_info[:2] >= (3, 11):  # noqa: UP036 -- dev.py runs on any python3
    return sys.executable
  for major, minor in SUPPORTED:
    found = shutil.which(f'python{major}.{minor}')
    if found:
      return found
  sys.exit('error: Python >= 3.11 is required: install python3.11, 3.12 or 3.13')


def ensure_env() -> None:
  """Creates the venv and installs the project (editable, with test extras) when stale."""
  extras = os.environ.get('PAPERS_EXTRAS', 'test')
  pyproject = (ROOT / 'pyproject.toml').read_text() + f'\n# extras: {extras}\n'
  if STAMP.exists() and STAMP.read_text() == pyproject:
    return
  if not PY.exists():
    print('setting up .venv (first use, a few minutes) ...', flush=True)
    subprocess.run([_python(), '-m', 'venv', str(VENV)], check=True)
  subprocess.run([str(PY), '-m', 'pip', 'install', '-q', '--upgrade', 'pip'], check=True)
  subprocess.run([str(PY), '-m', 'pip', 'install', '-q', '-e', f'{ROOT}[{extras}]'], check=True)
  STAMP.write_text(pyproject)


def papers() -> str:
  """One line per paper: its verdicts and the wall time of its last full reproduction."""
  lines = [f'{"paper":<15} {"verdicts":<58} wall time']
  for readme in sorted((ROOT / 'papers').glob('*/README.md')):
    results = readme.with_name('results.json')
    if not results.exists():
      lines.append(f'{readme.parent.name:<15} {"not yet reproduced":<58}')
      continue
    r = json.loads(results.read_text())
    counts = {}
    for c in r['claims']:
      counts[c['verdict']] = counts.get(c['verdict'], 0) + 1
    verdicts = ', '.join(f'{n} {v}' for v, n in sorted(counts.items()))
    lines.append(f'{readme.parent.name:<15} {verdicts:<58} '
                 f'{r["provenance"]["wall_time_s"] / 60:.0f} min')
  return '\n'.join(lines)


def main(argv: list[str]) -> int:
  if not argv:
    print(__doc__)
    print(papers())
    return 0
  if argv[0] not in ('reproduce', 'test'):
    print(__doc__)
    return 2
  ensure_env()
  env = dict(os.environ)
  default_data = ROOT.parent / 'shared' / 'data'
  if 'PAPERS_DATA_DIR' not in env and default_data.is_dir():
    env['PAPERS_DATA_DIR'] = str(default_data)
  if argv[0] == 'test':
    code = subprocess.run([str(PY), '-m', 'pytest', *argv[1:]], cwd=ROOT, env=env).returncode
    if code == 5:
      print('error: pytest collected no tests', file=sys.stderr)
    return code
  rest = argv[1:]
  paper = rest.pop(0) if rest and not rest[0].startswith('-') else DEFAULT_PAPER
  if paper != 'quickstart' and not (ROOT / 'papers' / paper / 'reproduce.py').exists():
    print(f'error: no reproduction named {paper!r}\n{papers()}', file=sys.stderr)
    return 2
  module = 'common.quickstart' if paper == 'quickstart' else f'papers.{paper}.reproduce'
  code = subprocess.run([str(PY), '-m', module, *rest], cwd=ROOT, env=env).returncode
  if code == 0 and paper != 'quickstart' and '--quick' not in rest:  # its results table
    show = ('import json, sys; from common import report; '
            'print(report.paper_section(json.load(open(sys.argv[1]))))')
    subprocess.run([str(PY), '-c', show, str(ROOT / 'papers' / paper / 'results.json')],
                   cwd=ROOT, env=env)
  return code


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
