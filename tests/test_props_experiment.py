"""End to end: the smoke config through train_and_evaluate, and the reproduction's short form."""

import json
import subprocess
import sys

import pytest

from common.quickstart import load_config
from papers.props import experiment
from tests.testutil import ROOT


@pytest.mark.slow
def test_smoke_train_and_evaluate(tmp_path):
  config = load_config(ROOT / 'configs' / 'props' / 'cartpole.py', 'smoke')
  experiment.validate(config, 1)
  summary = experiment.train_and_evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / 'metrics.json').read_text())
  assert saved['arm'] == 'props' and len(saved['eval_return']) == 3
  assert 0.0 < saved['auc'] <= 500.0 and summary['env_steps_per_s_end_to_end'] > 0
  assert all(x >= 0.0 for x in saved['sampling_error'])


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
