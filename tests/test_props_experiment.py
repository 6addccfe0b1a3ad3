"""End to end: the smoke config runs all three arms' code path through train_and_evaluate."""

import json

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
