"""RS2 pruning baselines: EL2N scores, forgetting events, class-balanced top-k, k-center greedy."""

import jax.numpy as jnp
import numpy as np
import pytest

from papers.rs2 import pruning


def test_el2n_hand_checked():
  logits = jnp.array([[0.0, 0.0], [np.log(3.0), 0.0]])  # softmax: [.5, .5], [.75, .25]
  labels = jnp.array([0, 1])
  expected = [np.sqrt(0.25 + 0.25), np.sqrt(0.75 ** 2 + 0.75 ** 2)]
  np.testing.assert_allclose(pruning.el2n_scores(logits, labels), expected, rtol=1e-6)
  # a confident correct prediction scores ~0, a confident wrong one ~sqrt(2)
  s = pruning.el2n_scores(jnp.array([[20.0, 0.0], [20.0, 0.0]]), jnp.array([0, 1]))
  np.testing.assert_allclose(s, [0.0, np.sqrt(2.0)], atol=1e-6)


def test_top_k_balanced_keeps_class_proportions_and_hardest():
  labels = np.array([0] * 6 + [1] * 4)
  scores = np.arange(10, dtype=float)
  chosen = pruning.top_k_balanced(scores, labels, 5)  # quotas 3 and 2
  np.testing.assert_array_equal(chosen, [3, 4, 5, 8, 9])
  assert len(pruning.top_k_balanced(scores, labels, 7)) == 7


def test_k_center_greedy_picks_farthest_points():
  x = np.array([[0.0], [1.0], [10.0], [4.0], [6.0]])
  chosen = pruning.k_center_greedy(x, 3, seed=0)
  assert len(set(chosen.tolist())) == 3
  first = chosen[0]
  far = int(np.argmax(np.abs(x[:, 0] - x[first, 0])))
  assert chosen[1] == far
  # cover radius of greedy <= 2 x optimum on a line of 3 clusters
  x = np.concatenate([np.zeros((5, 2)), np.full((5, 2), 10.0), np.full((5, 2), -10.0)])
  chosen = pruning.k_center_greedy(x + np.random.default_rng(0).normal(0, 0.1, x.shape), 3, 1)
  assert sorted(np.round(x[chosen, 0]).tolist()) == [-10.0, 0.0, 10.0]
  with pytest.raises(ValueError):
    pruning.k_center_greedy(x, 0, 0)


def test_forgetting_events_hand_checked():
  # looks at 4 examples over 4 epochs (rows): correct -> wrong transitions are events
  correct = np.array([[1, 0, 1, 0],
                      [0, 0, 1, 1],
                      [1, 1, 1, 0],
                      [0, 1, 0, 1]], bool)
  # ex 0: 1->0 twice; ex 1: learnt once, never forgotten; ex 2: forgotten at the end;
  # ex 3: 1->0 once (first look wrong is no event)
  np.testing.assert_array_equal(pruning.forgetting_events(correct), [2, 0, 1, 1])
  assert pruning.forgetting_events(np.zeros((3, 2), bool)).tolist() == [0, 0]
