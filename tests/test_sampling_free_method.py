"""Sampling-Free: prior counting, bias, guided loss scaling, threshold, step-0 probabilities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.detection import losses
from common.detection.model import DenseDetector
from papers.sampling_free import loss as sfl
from papers.sampling_free import prior as sfp

ANCHORS = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [30, 30, 39, 39], [0, 0, 19, 19],
                    [50, 50, 59, 59]], np.float32)


def test_counts_hand_countable():
  gts = np.array([[0, 0, 9, 9], [0, 0, 0, 0]], np.float32)
  # IoUs: 1, 50/150, 0, 100/400, 0 -> fg {0}; bg {1, 2, 3, 4}; nothing in between
  assert sfp.anchor_match_counts(ANCHORS, gts, [True, False]) == (1, 5)
  # in-between anchor [4, 0, 13, 9]: IoU 60/140 = .43 is excluded from both counts
  a = np.concatenate([ANCHORS, [[4, 0, 13, 9]]]).astype(np.float32)
  assert sfp.anchor_match_counts(a, gts, [True, False]) == (1, 5)


def test_counts_low_quality_only():
  # gt [30, 30, 49, 49]: best IoU .25 (anchor 2) < .4 -> foreground only via low-quality match
  gts = np.array([[30, 30, 49, 49]], np.float32)
  assert sfp.anchor_match_counts(ANCHORS, gts, [True]) == (1, 5)


def test_prior_bias_threshold():
  p = sfp.optimal_prior([(1, 5), (3, 15)], num_classes=2)
  assert p == pytest.approx(4 / 20 / 2)
  b = sfp.bias_from_prior(p)
  assert b == pytest.approx(-np.log(0.9 / 0.1)) and jax.nn.sigmoid(b) == pytest.approx(p)
  assert sfp.bias_from_prior(1e-5) == pytest.approx(-11.5129, abs=1e-3)
  assert sfp.adaptive_threshold(0.01, 80) == pytest.approx(0.81)


def test_guided_loss_scaling_value_and_gradient():
  logits = jnp.array([[-2.0, 1.0], [0.5, -3.0]])
  targets = jnp.array([[0.0, 1.0], [1.0, 0.0]])
  reg = jnp.array(0.37)
  cls = lambda z: losses.sigmoid_bce(z, targets).sum()  # noqa: E731
  scaled = lambda z: sfl.guided_loss_scaling(cls(z), reg)  # noqa: E731
  assert float(scaled(logits)) == pytest.approx(0.37, rel=1e-6)
  ratio = float(reg / cls(logits))
  np.testing.assert_allclose(jax.grad(scaled)(logits), ratio * jax.grad(cls)(logits), rtol=1e-6)
  # the regression loss gets no gradient through the scale
  g = jax.grad(lambda r: sfl.guided_loss_scaling(cls(logits), r))(reg)
  assert float(g) == 0.0


def test_step0_mean_probability_equals_prior():
  prior = 1e-3
  model = DenseDetector(num_classes=3, num_anchors=9, backbone_features=(8, 8, 8),
                        fpn_features=8, num_convs=1, prior_bias=sfp.bias_from_prior(prior),
                        centerness=False)
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1))
  params = model.init(jax.random.key(0), x)
  cls, _, _ = model.apply(params, x)
  assert float(jax.nn.sigmoid(cls).mean()) == pytest.approx(prior, rel=0.05)


def test_retinanet_losses_normalisers_and_ignored_anchors():
  # one image, anchors labelled positive (class 1), background, ignored (-1); 2 classes; logits
  # 0 (p = 1/2); the official losses divide the classification sum by num_pos + num_images = 2
  labels = jnp.array([[1, 0, -1]])
  logits = jnp.zeros((1, 3, 2))
  box, reg_t = jnp.ones((1, 3, 4)) * 0.5, jnp.zeros((1, 3, 4))
  cls, reg = sfl.retinanet_losses(logits, box, reg_t, labels, 2)
  # BCE: every anchor counts, the ignored one as a negative of both classes: 6 x log 2
  assert float(cls) == pytest.approx(6 * np.log(2) / 2)
  # smooth-L1 over the positive's 4 deltas (|0.5| > beta: 0.5 - 0.055) / (4 x 1)
  assert float(reg) == pytest.approx(4 * (0.5 - 0.055) / 4)
  # focal: the ignored anchor contributes nothing; (1 - p_t)^2 = 1/4, alpha 0.25 for the
  # positive's own class, 0.75 for the other three (anchor, class) pairs
  focal, _ = sfl.retinanet_losses(logits, box, reg_t, labels, 2, 'focal')
  assert float(focal) == pytest.approx((0.25 + 3 * 0.75) * 0.25 * np.log(2) / 2)
  # the regression normaliser: reg_norm x num_pos, at least 1
  _, reg1 = sfl.retinanet_losses(logits, box, reg_t, labels, 2, reg_norm=1.0)
  assert float(reg1) == pytest.approx(4 * (0.5 - 0.055))
