#!/usr/bin/env python3
"""Set up `.venv` on first use, then run a reproduction or the test suite.

    python3 dev.py reproduce [PAPER] [--quick]   # default: props (no data needed, ~3 min)
    python3 dev.py reproduce quickstart          # the tiny character LM of the foundation
    python3 dev.py test [PYTEST ARGS]            # the whole suite (what CI runs)

Needs only Python 3.11 and pip. Reinstalls when pyproject.toml changes. Set
PAPERS_EXTRAS (default "test") to install more extras, e.g. "test,hf" as CI does.
"""

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


def _python311() -> str:
  if sys.version_info[:2] == (3, 11):
    return sys.executable
  found = shutil.which('python3.11')
  if not found:
    sys.exit('error: Python 3.11 is required (jax 0.10.2 pins it): install python3.11')
  return found


def ensure_env() -> None:
  """Creates the venv and installs the project (editable, with test extras) when stale."""
  extras = os.environ.get('PAPERS_EXTRAS', 'test')
  pyproject = (ROOT / 'pyproject.toml').read_text() + f'\n# extras: {extras}\n'
  if STAMP.exists() and STAMP.read_text() == pyproject:
    return
  if not PY.exists():
    print('setting up .venv (first use, about a minute) ...', flush=True)
    subprocess.run([_python311(), '-m', 'venv', str(VENV)], check=True)
  subprocess.run([str(PY), '-m', 'pip', 'install', '-q', '--upgrade', 'pip'], check=True)
  subprocess.run([str(PY), '-m', 'pip', 'install', '-q', '-e', f'{ROOT}[{extras}]'], check=True)
  STAMP.write_text(pyproject)


def main(argv: list[str]) -> int:
  if not argv or argv[0] not in ('reproduce', 'test'):
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
