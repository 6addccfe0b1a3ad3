"""Shared verification metrics: 10-fold accuracy on a pair list, TAR at FAR on all pairs."""

import numpy as np
import pytest

from common import verification as v


def test_best_threshold_separable():
  scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
  same = np.array([0, 0, 0, 1, 1, 1])
  t = v.best_threshold(scores, same)
  assert t == pytest.approx(0.5)


def test_kfold_threshold_chosen_on_other_folds():
  # fold 0 holds scores that its own best threshold would separate differently: a threshold
  # chosen on folds 1..9 (0.5) misclassifies fold 0's positive at 0.45.
  scores, same = [], []
  for f in range(10):
    if f == 0:
      scores += [0.45, 0.1]
    else:
      scores += [0.8, 0.2]
    same += [1, 0]
  out = v.kfold_accuracy(np.array(scores), np.array(same), num_folds=10)
  assert out['accuracy'] == pytest.approx(0.95)  # fold 0: 1 of 2 right, others 2 of 2
  perfect = v.kfold_accuracy(np.array([0.9, 0.1] * 10), np.array([1, 0] * 10))
  assert perfect['accuracy'] == 1.0 and perfect['accuracy_std'] == 0.0


def test_make_pairs_balanced_folds_and_deterministic():
  labels = np.repeat(np.arange(12), 5)
  pairs = v.make_pairs(labels, num_pairs=200, num_folds=10, seed=3)
  assert pairs.shape == (200, 3)
  np.testing.assert_array_equal(pairs, v.make_pairs(labels, 200, 10, seed=3))
  for fold in np.split(pairs, 10):
    assert fold[:, 2].sum() == 10
  same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
  np.testing.assert_array_equal(same, pairs[:, 2].astype(bool))
  assert np.all(pairs[pairs[:, 2] == 1, 0] != pairs[pairs[:, 2] == 1, 1])


def test_tar_at_far_hand_checked():
  neg = np.arange(1000) / 1000.0  # 1000 negatives 0.000 .. 0.999
  pos = np.array([0.9985, 0.995, 0.95, 0.5])
  scores = np.concatenate([neg, pos])
  same = np.concatenate([np.zeros(1000, bool), np.ones(4, bool)])
  out = v.tar_at_far(scores, same, fars=(1e-4, 1e-3, 1e-2))
  # FAR 1e-4: k = 0 false accepts allowed -> threshold = max negative 0.999
  assert out[1e-4]['false_accepts'] == 0 and out[1e-4]['threshold'] == 0.999
  assert out[1e-4]['tar'] == 0.0 and out[1e-4]['far'] == 0.0
  # FAR 1e-3: k = 1 -> threshold = 2nd highest negative 0.998; 0.9985 passes
  assert out[1e-3]['false_accepts'] == 1 and out[1e-3]['threshold'] == 0.998
  assert out[1e-3]['tar'] == 0.25 and out[1e-3]['far'] == pytest.approx(1e-3)
  # FAR 1e-2: k = 10 -> threshold 0.989; 0.9985 and 0.995 pass
  assert out[1e-2]['false_accepts'] == 10 and out[1e-2]['tar'] == 0.5
  assert out[1e-2]['num_negatives'] == 1000


def brute_force_tar_at_far(embeddings, labels, far):
  """The best TAR of any threshold t whose FAR (share of negatives scoring > t) is <= far, over
  every i < j pair scored one at a time: an independent definition of TAR at FAR."""
  x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  pos, neg = [], []
  for i in range(len(x)):
    for j in range(i + 1, len(x)):
      (pos if labels[i] == labels[j] else neg).append(float(np.dot(x[i], x[j])))
  pos, neg = np.array(pos), np.array(neg)
  best = 0.0
  for t in np.concatenate([neg, pos, [np.inf]]):
    if np.mean(neg > t) <= far:
      best = max(best, float(np.mean(pos > t)))
  return best, len(pos), len(neg)


@pytest.mark.parametrize('seed', [0, 1])
def test_all_pairs_tar_at_far_matches_brute_force(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 7, 70)
  emb = rng.normal(size=(7, 5))[labels] + 1.5 * rng.normal(size=(70, 5))
  fars = (1e-3, 0.01, 0.05, 0.2)
  for block in (1, 9, 70):  # blocks of rows, never the 70 x 70 matrix at once (except 70)
    every = v.all_pairs(emb, labels, max_far=0.2, block_rows=block)
    out = v.tar_at_far(every, fars=fars)
    for far in fars:
      tar, num_pos, num_neg = brute_force_tar_at_far(emb, labels, far)
      assert out[far]['tar'] == pytest.approx(tar, abs=1e-12)
      assert len(every.positives) == num_pos and every.num_negatives == num_neg
      assert out[far]['false_accepts'] == int(np.floor(far * num_neg))
      assert out[far]['far'] <= far
  # the ROC at each FAR is the same brute-force TAR
  far, tar = v.roc_curve(every, np.array([0.01, 0.1]))
  np.testing.assert_allclose(tar, [brute_force_tar_at_far(emb, labels, f)[0] for f in far])
  with pytest.raises(ValueError, match='larger max_far'):
    v.tar_at_far(v.all_pairs(emb, labels, max_far=0.01), fars=(0.2,))


def test_all_pairs_keeps_only_the_negatives_the_fars_need():
  labels = np.repeat(np.arange(10), 10)
  emb = np.random.default_rng(0).normal(size=(100, 8))
  every = v.all_pairs(emb, labels, max_far=0.01, block_rows=16)
  assert every.num_negatives == 100 * 99 // 2 - 10 * 45
  assert len(every.top_negatives) == int(0.01 * every.num_negatives) + 1
  assert np.all(np.diff(every.top_negatives) <= 0)


def test_all_pairs_and_evaluate_embeddings():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(6, 16))
  labels = np.repeat(np.arange(6), 10)
  emb = centers[labels] + 0.05 * rng.normal(size=(60, 16))
  every = v.all_pairs(emb, labels, max_far=1.0)
  assert len(every.positives) + every.num_negatives == 60 * 59 // 2
  assert len(every.positives) == 6 * 45
  pairs = v.make_pairs(labels, 200, seed=0)
  out = v.evaluate_embeddings(emb, labels, pairs, fars=(1e-2,))
  assert out['accuracy'] == 1.0 and out['tar@far=0.01'] == 1.0
  assert out['negatives@far=0.01'] == int(0.01 * out['num_negative_pairs'])
  far, tar = v.roc_curve(every)
  assert np.all(np.diff(tar) >= 0) and tar[-1] == 1.0 and far[-1] == 1.0


def brute_force_partial_auc(embeddings, labels, max_far):
  """Area under the ROC up to max_far / max_far, from the full N x N matrix: ROC points at every
  distinct score (accept score >= t, as scikit-learn's `roc_curve`), trapezoids, the last one
  cut at max_far by linear interpolation."""
  x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  i, j = np.triu_indices(len(x), k=1)
  scores, same = (x @ x.T)[i, j], labels[i] == labels[j]
  pos, neg = scores[same], scores[~same]
  thresholds = np.sort(np.unique(scores))[::-1]
  fpr = np.concatenate([[0.0], [np.mean(neg >= t) for t in thresholds]])
  tpr = np.concatenate([[0.0], [np.mean(pos >= t) for t in thresholds]])
  inside = fpr <= max_far
  f = np.concatenate([fpr[inside], [max_far]])
  t = np.concatenate([tpr[inside], [np.interp(max_far, fpr, tpr)]])
  return float(np.sum(np.diff(f) * (t[1:] + t[:-1]) / 2) / max_far)


@pytest.mark.parametrize('seed', [0, 1])
def test_partial_auc_matches_brute_force_roc(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 7, 80)
  emb = rng.normal(size=(7, 5))[labels] + 1.5 * rng.normal(size=(80, 5))
  for max_far in (1e-3, 0.01, 0.0537, 0.2, 1.0):
    every = v.all_pairs(emb, labels, max_far=max_far, block_rows=9)
    assert v.partial_auc(every, max_far) == pytest.approx(
        brute_force_partial_auc(emb, labels, max_far), abs=1e-12)
  with pytest.raises(ValueError, match='larger max_far'):
    v.partial_auc(v.all_pairs(emb, labels, max_far=0.01), 0.1)


def test_partial_auc_hand_checked_and_with_ties():
  # 1-d embeddings [cos a, sin a]: scores are cosines of angle differences
  angles = np.array([0.0, 0.1, 1.0, 1.05, 2.5])
  emb = np.stack([np.cos(angles), np.sin(angles)], 1)
  labels = np.array([0, 0, 1, 1, 2])
  every = v.all_pairs(emb, labels, max_far=1.0)
  assert every.num_negatives == 8 and len(every.positives) == 2
  # both positives (cos 0.1, cos 0.05) beat every negative: perfect separation
  assert v.partial_auc(every, 1.0) == pytest.approx(1.0)
  assert v.partial_auc(every, 0.3) == pytest.approx(1.0)
  # identical embeddings: every score ties, the ROC is the diagonal, pAUC(f) / f = f / 2
  same = v.all_pairs(np.ones((6, 3)), np.repeat([0, 1, 2], 2), max_far=1.0)
  assert v.partial_auc(same, 1.0) == pytest.approx(0.5)
  assert v.partial_auc(same, 0.25) == pytest.approx(brute_force_partial_auc(
      np.ones((6, 3)), np.repeat([0, 1, 2], 2), 0.25))


def test_all_pairs_identities_and_weighted_tar():
  rng = np.random.default_rng(3)
  labels = rng.integers(10, 16, 90)  # arbitrary label values, 6 identities
  emb = rng.normal(size=(16, 6))[labels] + 1.2 * rng.normal(size=(90, 6))
  every = v.all_pairs(emb, labels, max_far=0.2, block_rows=11)
  _, ids = np.unique(labels, return_inverse=True)
  np.testing.assert_array_equal(every.identity_sizes, np.bincount(ids))
  # the identities behind each kept score, checked by recomputing the scores
  x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  for score, (a, b) in zip(every.top_negatives[:50], every.top_negative_ids[:50], strict=True):
    rows_a, rows_b = np.flatnonzero(ids == a), np.flatnonzero(ids == b)
    assert a != b and np.isclose(np.abs(x[rows_a] @ x[rows_b].T - score).min(), 0, atol=1e-12)
  assert np.all(np.bincount(every.positive_ids) == [n * (n - 1) // 2 for n in np.bincount(ids)])
  # weights all 1: the same TAR as tar_at_far
  for far in (0.01, 0.05, 0.2):
    assert v.tar_at_far_weighted(every, far, np.ones((1, 6)))[0] == pytest.approx(
        v.tar_at_far(every, fars=(far,))[far]['tar'])
  # integer weights == the identities duplicated (pairs between two copies left out):
  # drop identity 0, double identity 1 -> embeddings with identity 1 copied under a new label
  w = np.array([[0.0, 2.0, 1.0, 1.0, 1.0, 1.0]])
  keep = ids != 0
  copy = ids == 1
  emb2 = np.concatenate([emb[keep], emb[copy]])
  lab2 = np.concatenate([ids[keep], np.full(copy.sum(), 99)])
  far = 0.05
  # the copies' cross pairs (identity 1 vs its copy) are not in the weighted count: brute force
  # over the duplicated set without them
  x2 = emb2 / np.linalg.norm(emb2, axis=1, keepdims=True)
  i, j = np.triu_indices(len(x2), k=1)
  s2 = (x2 @ x2.T)[i, j]
  la, lb = lab2[i], lab2[j]
  cross_copy = ((la == 1) & (lb == 99)) | ((la == 99) & (lb == 1))
  pos, neg = s2[(la == lb)], s2[(la != lb) & ~cross_copy]
  k = int(np.floor(far * len(neg)))
  threshold = np.sort(neg)[::-1][k]
  assert v.tar_at_far_weighted(every, far, w)[0] == pytest.approx(np.mean(pos > threshold))
  boot = v.bootstrap_tar_at_far(every, far, num_resamples=50, seed=0)
  assert boot.shape == (50,) and np.all((boot >= 0) & (boot <= 1))
  np.testing.assert_array_equal(boot, v.bootstrap_tar_at_far(every, far, 50, seed=0))


def test_weighted_tar_searches_beyond_the_first_window():
  """Skewed weights (two identities far apart) put the weighted threshold past the first
  4 far x N negatives: the result equals a direct search over every kept negative."""
  rng = np.random.default_rng(5)
  labels = rng.integers(0, 8, 120)
  emb = rng.normal(size=(8, 6))[labels] + 1.0 * rng.normal(size=(120, 6))
  every = v.all_pairs(emb, labels, max_far=0.5, block_rows=13)
  weights = np.concatenate([rng.multinomial(8, np.full(8, 1 / 8), 20),
                            [[0, 0, 0, 0, 0, 4, 0, 4], [0, 4, 0, 4, 0, 0, 0, 0]]]).astype(float)
  sizes = every.identity_sizes.astype(float)
  far = 0.02
  for w, got in zip(weights, v.tar_at_far_weighted(every, far, weights), strict=True):
    total = ((w @ sizes) ** 2 - (w ** 2) @ (sizes ** 2)) / 2
    cum = np.cumsum(w[every.top_negative_ids[:, 0]] * w[every.top_negative_ids[:, 1]])
    t = every.top_negatives[np.argmax(cum > far * total)]
    pos_w = w[every.positive_ids]
    assert got == pytest.approx(np.sum(pos_w * (every.positives > t)) / np.sum(pos_w))
