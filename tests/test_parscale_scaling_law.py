"""Parallel scaling law: formula, synthetic recovery, and the paper's k from its own 48 points."""

import numpy as np
import pytest

from papers.parscale import scaling_law as sl

# A small grid of starts keeps the tests fast; the reproduction uses the official 300 starts.
STARTS = [(e, a, al, k) for e in (0.5, 1.0) for a in (0.01, 0.2) for al in (0.2, 0.5)
          for k in (0.2, 0.6)]


def test_predict_formula_by_hand():
  fit = {'E': 1.0, 'A': 2.0, 'alpha': 0.5, 'k': 0.4}
  n, p = 5e8, 4
  expected = 1.0 + (2.0 * 1e9 / (n * (0.4 * np.log(4) + 1))) ** 0.5
  np.testing.assert_allclose(sl.predict(fit, n, p), expected, rtol=1e-12)
  np.testing.assert_allclose(sl.predict(fit, n, 1), 1.0 + 4.0 ** 0.5, rtol=1e-12)
  np.testing.assert_allclose(sl.multiplier(0.4, [1, 8]), [1.0, 0.4 * np.log(8) + 1])


def test_huber_is_quadratic_then_linear():
  assert sl.huber(np.array([5e-4]), 1e-3) == pytest.approx(0.5 * 25e-8)
  assert sl.huber(np.array([-3e-3]), 1e-3) == pytest.approx(1e-3 * (3e-3 - 5e-4))


def test_fit_recovers_known_parameters():
  truth = {'E': 1.2, 'A': 0.3, 'alpha': 0.25, 'k': 0.5}
  n = np.repeat(np.geomspace(5e8, 5e9, 6)[None], 4, 0)
  p = np.repeat(np.array([1, 2, 4, 8])[:, None], 6, 1)
  fit = sl.fit(n, p, sl.predict(truth, n, p), starts=STARTS)
  for key, value in truth.items():
    assert fit[key] == pytest.approx(value, rel=2e-2), (key, fit)
  assert fit['r2'] > 0.9999


@pytest.mark.parametrize('corpus', ['stack_v2_python', 'pile'])
def test_fit_gives_the_papers_k_on_its_own_points(corpus):
  assert sl.PAPER_N.shape == sl.PAPER_P.shape == sl.PAPER_LOSS[corpus].shape == (4, 6)
  fit = sl.fit(sl.PAPER_N, sl.PAPER_P, sl.PAPER_LOSS[corpus], starts=STARTS)
  assert fit['k'] == pytest.approx(sl.PAPER_K[corpus], abs=0.01)
  assert fit['r2'] > 0.99
