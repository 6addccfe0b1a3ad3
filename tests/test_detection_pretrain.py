"""The backbone pretraining stage (common.detection.pretrain) and the detector starting from it
(pipeline.init_params with backbone_init)."""

import jax
import numpy as np
import pytest

from common import checkpoint
from common.config import ConfigError
from common.detection import pipeline, pretrain
from configs.atss import mnist_backbone, mnist_canvas
from papers.atss import experiment as atss_experiment


def test_shapes_set_is_seeded_and_drawn():
  a, b = pretrain.shapes_set(20, 3), pretrain.shapes_set(20, 3)
  np.testing.assert_array_equal(a[0], b[0])
  assert a[0].shape == (20, 28, 28) and set(a[1].tolist()) <= set(range(5))
  assert (a[0].reshape(20, -1).max(1) == 255).all()  # every image holds its shape


def test_detector_starts_from_the_pretrained_backbone(tmp_path):
  config = mnist_backbone.get_config('smoke')
  result = pretrain.train_and_evaluate(config, str(tmp_path / 'bb'))
  assert 0 <= result.eval_metrics['accuracy'] <= 1
  saved = checkpoint.restore_params(str(tmp_path / 'bb'))['params']
  det = mnist_canvas.get_config('smoke')
  model = atss_experiment.build_model(det, 10)
  shape = (64, 64, 1)
  fresh = pipeline.init_params(model, 0, shape)
  loaded = pipeline.init_params(model, 0, shape, str(tmp_path / 'bb'))
  for a, b in zip(jax.tree.leaves(loaded['params']['backbone']),
                  jax.tree.leaves(saved['backbone']), strict=True):
    np.testing.assert_array_equal(a, b)
  for part in ('fpn', 'head'):  # only the backbone comes from the classifier
    for a, b in zip(jax.tree.leaves(loaded['params'][part]),
                    jax.tree.leaves(fresh['params'][part]), strict=True):
      np.testing.assert_array_equal(a, b)
  other = mnist_canvas.get_config('smoke')
  other.detector.backbone_features = (16, 32, 48)
  with pytest.raises(ConfigError, match='backbone of other shapes'):
    pipeline.init_params(atss_experiment.build_model(other, 10), 0, shape, str(tmp_path / 'bb'))
