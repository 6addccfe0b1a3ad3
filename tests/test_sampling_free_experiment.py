"""Sampling-Free experiment end to end on the smoke config: the prior and the adaptive threshold,
COCO AP logged at every eval, and the fixed-threshold ablation of the same weights."""

import numpy as np
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


def test_method_settings_give_prior_bias_and_threshold():
  # focal: RetinaNet's prior 0.01 at threshold 0.05; plain BCE: zero bias (prior 1/2); BCE +
  # bias: the counted prior at 0.05; Sampling-Free: the counted prior, threshold prior x (C + 1)
  got = {}
  for arm in ('focal', 'bce', 'bce_bias', 'sampling_free'):
    *_, num_classes, _, _, prior, threshold, model = experiment.setup(
        mnist_canvas.get_config(f'{arm},smoke'))
    got[arm] = (prior, threshold)
    assert model.prior_bias == pytest.approx(np.log(prior / (1 - prior)))
  counted = got['sampling_free'][0]
  assert 0 < counted < 0.1 and got['bce_bias'] == (counted, 0.05)
  assert got['focal'] == (0.01, 0.05) and got['bce'] == (0.5, 0.05)
  assert got['sampling_free'][1] == pytest.approx(counted * (num_classes + 1))


def test_dataset_prior_in_chunks_equals_the_per_image_counts(monkeypatch):
  from common.detection import data as D
  from common.detection import pipeline
  from papers.sampling_free import prior as sfp
  config = mnist_canvas.get_config('smoke')
  ds = D.make_canvases(7, 5, canvas=64, max_size=40)
  anchors, _ = pipeline.anchors_from_config(config)
  fg = total = 0
  for b, m in zip(ds['boxes'], ds['mask'], strict=True):
    f, t = sfp.anchor_match_counts(anchors, b, m)
    fg, total = fg + f, total + t
  want = fg / total / 10
  monkeypatch.setattr(experiment, 'PAIRS_PER_CHUNK', 3 * len(anchors) * 4)  # chunks of 3: 3+3+1
  assert experiment.dataset_prior(config, ds, anchors, 10) == want
