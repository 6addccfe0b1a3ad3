"""End to end: `python -m papers.unpg.reproduce --quick` trains, verifies and writes results."""

import json
import os
import subprocess
import sys

import pytest

from tests.testutil import ROOT, xla_flags


@pytest.mark.slow
def test_reproduce_quick(tmp_path, data_dir):
  env = dict(os.environ, XLA_FLAGS=xla_flags(1))
  if data_dir is None:
    env.pop('PAPERS_DATA_DIR', None)
  proc = subprocess.run(
      [sys.executable, '-m', 'papers.unpg.reproduce', '--quick', '--out', str(tmp_path / 'out'),
       '--workdir', str(tmp_path / 'runs')],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert (tmp_path / 'out' / 'roc.png').stat().st_size > 1000
  assert results['provenance']['command'] == 'python -m papers.unpg.reproduce --quick'
  assert {c['verdict'] for c in results['claims']} <= {'reproduced', 'partly', 'not'}
  metrics = json.loads((tmp_path / 'runs' / 'ArcFace+UNPG' / 'seed0' /
                        'verification.json').read_text())
  assert 0.0 <= metrics['tar@far=0.0001'] <= 1.0 and 0.4 < metrics['accuracy'] <= 1.0
