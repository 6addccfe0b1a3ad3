"""UNPG loss: margin heads, the box-and-whisker filter, the loss against a direct formula,
gradient flow through the pair term, and global-batch negatives on 8 devices == 1 device."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import parallel
from papers.unpg import loss as unpg


def _np_normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _official_filter(sn, wisk):
  """The official box_and_whisker_algorithm on a plain list, in numpy."""
  s = np.sort(sn)
  lo, hi = s[int(0.25 * len(s))], s[int(0.75 * len(s))]
  iqr = hi - lo
  return s[(s <= hi + wisk * iqr) & (s >= lo - wisk * iqr)]


def test_margin_logits_hand_checked():
  w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # [C, D]
  x = 3.0 * jnp.array([[0.5, math.sqrt(3) / 2]])  # 60 degrees from class 0, 30 from class 1
  arc = unpg.margin_logits(x, w, jnp.array([0]), 'arcface', math.pi / 6)
  np.testing.assert_allclose(arc, [[0.0, math.sqrt(3) / 2, -0.5]], atol=1e-6)  # cos(90 deg)
  cos = unpg.margin_logits(x, w, jnp.array([1]), 'cosface', 0.35)
  np.testing.assert_allclose(cos, [[0.5, math.sqrt(3) / 2 - 0.35, -0.5]], atol=1e-6)
  # a flax-Dense-layout kernel [D, C] gives the same logits
  np.testing.assert_allclose(unpg.margin_logits(x, w.T, jnp.array([0]), 'arcface', math.pi / 6),
                             arc, atol=1e-6)


def test_whisker_bounds_floor_quartiles_inclusive_both_tails():
  # 10 valid values: Q1 = sorted[int(2.5)] = 1, Q3 = sorted[int(7.5)] = 3, IQR = 2;
  # wisk 0.75 -> [-0.5, 4.5]: both bounds kept (inclusive), -3 and 9 dropped (both tails).
  valid_vals = [9.0, 1.0, -0.5, 2.0, 1.0, 4.5, -3.0, 3.0, 1.0, 2.0]
  invalid = [100.0, -100.0, 50.0]  # not negative pairs: ignored by the quartiles
  values = jnp.array(valid_vals + invalid)
  valid = jnp.array([True] * 10 + [False] * 3)
  low, high = unpg.whisker_bounds(values, valid, 0.75)
  assert float(low) == -0.5 and float(high) == 4.5
  np.testing.assert_allclose(_official_filter(np.array(valid_vals), 0.75),
                             [-0.5, 1, 1, 1, 2, 2, 3, 4.5])
  # interpolated quartiles (numpy's default) would give other bounds here
  assert np.percentile(valid_vals, 25) != 1.0 or np.percentile(valid_vals, 75) != 3.0
  low, high = unpg.whisker_bounds(values, valid, math.inf)
  assert float(low) == -math.inf and float(high) == math.inf


def _features_at_angles(degrees):
  r = np.deg2rad(np.asarray(degrees, np.float64))
  return jnp.asarray(np.stack([np.cos(r), np.sin(r)], -1), jnp.float32)


def test_filtered_negative_pairs_on_unit_circle():
  # 5 features; labels make pairs (0,1) positive; the rest negative
  x = _features_at_angles([0, 10, 60, 90, 180])
  labels = jnp.array([0, 0, 1, 2, 3])
  values, mask = unpg.filtered_negative_pairs(x, labels, math.inf)
  i, j = np.triu_indices(5, k=1)
  deg = np.array([0, 10, 60, 90, 180])
  np.testing.assert_allclose(values, np.cos(np.deg2rad(deg[j] - deg[i])), atol=1e-6)
  np.testing.assert_array_equal(mask, np.asarray(labels)[i] != np.asarray(labels)[j])
  # with r = 1.5 the kept set equals the official filter of the negative similarities
  values, mask = unpg.filtered_negative_pairs(x, labels, 1.5)
  neg = np.asarray(values)[np.asarray(labels)[i] != np.asarray(labels)[j]]
  np.testing.assert_allclose(np.sort(np.asarray(values)[np.asarray(mask)]),
                             _official_filter(neg, 1.5), atol=1e-6)


def test_filter_drops_outlier_negative_pairs():
  # 9 negatives near cos 0 and one pair almost parallel: the near-duplicate is an outlier
  x = _features_at_angles([0, 88, 90, 92, 178, 181, 270, 2])
  labels = jnp.arange(8)
  values, mask = unpg.filtered_negative_pairs(x, labels, 1.5)
  i, j = np.triu_indices(8, k=1)
  pair = int(np.flatnonzero((i == 0) & (j == 7))[0])
  assert bool(mask[pair]) is False and float(values[pair]) > 0.99
  assert int(mask.sum()) < len(values)


def _direct_unpg(features, weights, labels, head, scale, margin, wisk):
  """Eq. 8 row by row in float64 numpy, with the official filter."""
  x, w = _np_normalize(np.float64(features)), _np_normalize(np.float64(weights))
  cos = x @ w.T
  n = len(x)
  sn = [x[a] @ x[b] for a in range(n) for b in range(a + 1, n) if labels[a] != labels[b]]
  kept = _official_filter(np.array(sn), wisk) if wisk is not None else np.zeros(0)
  losses = []
  for r in range(n):
    y = labels[r]
    target = (np.cos(np.arccos(cos[r, y]) + margin) if head == 'arcface'
              else cos[r, y] - margin)
    others = [cos[r, c] for c in range(w.shape[0]) if c != y]
    denominator = np.exp(scale * target) + np.sum(np.exp(scale * np.array(others))) + \
        np.sum(np.exp(scale * kept))
    losses.append(-(scale * target - np.log(denominator)))
  return np.mean(losses)


@pytest.mark.parametrize('head,margin', [('arcface', 0.5), ('cosface', 0.35)])
def test_loss_matches_direct_formula(head, margin):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(12, 6)).astype(np.float32)
  weights = rng.normal(size=(5, 6)).astype(np.float32)
  labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 0, 1])
  for wisk in (1.5, 0.3, math.inf):
    got = unpg.unpg_loss(jnp.asarray(features), jnp.asarray(weights), jnp.asarray(labels),
                         head=head, scale=8.0, margin=margin, wisk=wisk)
    want = _direct_unpg(features, weights, labels, head, 8.0, margin, wisk)
    np.testing.assert_allclose(float(got), want, rtol=2e-5)
  base = unpg.margin_loss(jnp.asarray(features), jnp.asarray(weights), jnp.asarray(labels),
                          head=head, scale=8.0, margin=margin)
  np.testing.assert_allclose(float(base),
                             _direct_unpg(features, weights, labels, head, 8.0, margin, None),
                             rtol=2e-5)


def test_gradients_flow_through_pair_term():
  rng = np.random.default_rng(1)
  features = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)
  labels = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
  loss_u = jax.jit(lambda f: unpg.unpg_loss(f, weights, labels, scale=4.0, wisk=math.inf))
  loss_b = jax.jit(lambda f: unpg.margin_loss(f, weights, labels, scale=4.0))
  g_unpg = jax.jit(jax.grad(loss_u))(features)
  g_base = jax.jit(jax.grad(loss_b))(features)
  assert np.all(np.isfinite(g_unpg))
  assert float(jnp.abs(g_unpg - g_base).max()) > 1e-3
  # the analytic gradient matches central differences (float32, smooth at scale 4)
  eps = 1e-2
  for (r, c) in [(0, 0), (3, 2), (7, 1)]:
    d = jnp.zeros_like(features).at[r, c].set(eps)
    numeric = (loss_u(features + d) - loss_u(features - d)) / (2 * eps)
    np.testing.assert_allclose(float(g_unpg[r, c]), float(numeric), rtol=2e-2, atol=2e-3)
  # raising a negative pair's similarity raises the loss: d loss / d s_n > 0
  values, keep = unpg.filtered_negative_pairs(features, labels, math.inf)
  cls = unpg.margin_logits(features, weights, labels, 'arcface', 0.5)

  def loss_of_pairs(v):
    logits = 4.0 * jnp.concatenate([cls, jnp.broadcast_to(v, (8, v.shape[0]))], -1)
    return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[jnp.arange(8), labels])

  g_pairs = jax.jit(jax.grad(loss_of_pairs))(values)
  assert np.all(np.asarray(g_pairs)[np.asarray(keep)] > 0)


@pytest.fixture(scope='module')
def small_setup():
  from configs.unpg import omniglot as cfgmod
  from papers.unpg import omniglot

  config = cfgmod.get_config('arcface,unpg,smoke')
  config.model.features = (8, 16)
  config.model.embedding_dim = 16
  model = omniglot.Embedder(tuple(config.model.features), config.model.embedding_dim)
  rng = np.random.default_rng(0)
  images = rng.random((32, 12, 12, 1)).astype(np.float32)
  labels = np.repeat(np.arange(8), 4).astype(np.int32)
  params = {'embedder': model.init(jax.random.key(0), images[:1]),
            'class_weights': jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)}
  return config, model, params, {'image': images, 'label': labels}


def test_eight_devices_equal_one_device_global_negatives(small_setup):
  from papers.unpg import omniglot

  config, model, params, batch = small_setup
  assert jax.device_count() >= 8
  one = omniglot.loss_on_mesh(config, params, batch, parallel.make_mesh(1))
  eight = omniglot.loss_on_mesh(config, params, batch, parallel.make_mesh(8))
  np.testing.assert_allclose(float(one[0]), float(eight[0]), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               jax.device_get(one[1]), jax.device_get(eight[1]))
  # negatives from each device's 4 rows alone would give another loss: the 8-device loss
  # really saw all 32 rows' pairs
  features = model.apply(params['embedder'], batch['image'])
  local = np.mean([float(unpg.unpg_loss(features[k:k + 4], params['class_weights'],
                                        batch['label'][k:k + 4], scale=32.0))
                   for k in range(0, 32, 4)])
  assert abs(local - float(eight[0])) > 1e-2
