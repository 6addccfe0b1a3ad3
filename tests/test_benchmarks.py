"""The benchmark script's quick form runs (it asserts nothing about speed)."""

import json
import subprocess
import sys

from tests.testutil import ROOT


def test_quick_benchmark_runs_every_entry(tmp_path):
  out = tmp_path / 'bench.json'
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.run', '--paper=all', '--quick',
                         f'--out={out}'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  from benchmarks.run import ENTRIES
  assert [r['entry'] for r in result['rows']] == list(ENTRIES)
  for row in result['rows']:
    assert row['flops'] > 0 and row['step_s'] > 0 and row['roofline_fraction'] > 0
