"""Sampling-Free experiment end to end on the smoke config (prior recorded, ablation scored)."""

import pytest

from configs.sampling_free import mnist_canvas
from papers.sampling_free import experiment


@pytest.mark.slow
def test_smoke_end_to_end(tmp_path):
  config = mnist_canvas.get_config('smoke')
  result = experiment.train_and_evaluate(config, str(tmp_path))
  m = result.eval_metrics
  assert 0 < m['prior'] < 0.1 and round(m['threshold'] / m['prior']) in (6, 11)  # (C + 1)
  assert 'AP' in m and 'AP_thr005' in m and m['grad_ratio_step0'] > 0
  assert config.prior == m['prior']
