"""End to end: the reproduction's short form (the `common.main` path is in test_reliability)."""

import json
import subprocess
import sys

import pytest

from tests.testutil import ROOT


@pytest.mark.slow
def test_reproduce_quick_writes_results(tmp_path):
  """The reproduction's short form: every claim gets a verdict, tables, plot and curves."""
  proc = subprocess.run([sys.executable, '-m', 'papers.props.reproduce', '--quick', '--out',
                         str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / 'results.json').read_text())
  assert len(results['claims']) == 7
  assert {c['verdict'] for c in results['claims']} <= {'reproduced', 'partly', 'not'}
  assert (tmp_path / 'props.png').stat().st_size > 0
  curves = json.loads((tmp_path / 'curves.json').read_text())
  assert len(curves['props']['Hopper-v5_eval_return']) == 2  # seeds
