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


def test_all_pairs_and_evaluate_embeddings():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(6, 16))
  labels = np.repeat(np.arange(6), 10)
  emb = centers[labels] + 0.05 * rng.normal(size=(60, 16))
  sims, same = v.all_pair_scores(emb, labels)
  assert len(sims) == 60 * 59 // 2 and same.sum() == 6 * 45
  pairs = v.make_pairs(labels, 200, seed=0)
  out = v.evaluate_embeddings(emb, labels, pairs, fars=(1e-2,))
  assert out['accuracy'] == 1.0 and out['tar@far=0.01'] == 1.0
  assert out['negatives@far=0.01'] == int(0.01 * out['num_negative_pairs'])
  far, tar = v.roc_curve(sims, same)
  assert np.all(np.diff(tar) >= 0) and tar[-1] == 1.0
