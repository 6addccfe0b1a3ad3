"""Sampling-Free experiment end to end on the smoke config: the prior and the adaptive threshold,
COCO AP logged at every eval, and the fixed-threshold ablation of the same weights."""

import pytest

from common.metrics import read_metrics
from configs.sampling_free import mnist_canvas
from papers.sampling_free import experiment


@pytest.mark.slow
def test_smoke_end_to_end(tmp_path):
  config = mnist_canvas.get_config('smoke')
  result = experiment.train_and_evaluate(config, str(tmp_path))
  m = result.eval_metrics
  assert 0 < m['prior'] < 0.1 and round(m['threshold'] / m['prior']) in (6, 11)  # (C + 1)
  assert 'AP' in m and 'AP_thr005' in m and m['grad_ratio_step0'] > 0
  rows = [r for r in read_metrics(str(tmp_path)) if 'eval/AP' in r]
  assert [r['step'] for r in rows] == [2, 4] and rows[-1]['eval/AP'] == m['AP']
