"""EDLM evaluation: the Kneser-Ney judge by hand and by normalisation, sampler names, the
diversity checks and the forward-pass count."""

import numpy as np
import pytest

from papers.edlm import evaluation, ngram


def test_kneser_ney_bigram_hand_checked():
  """ids 0 1 0 1 0 2, V = 3: bigram counts after 0: [0, 2, 1], after 1: [2, 0, 0]; one bigram
  seen once, two twice: D = 1 / (1 + 2 * 2) = 0.2. Every unigram has one distinct predecessor,
  so the continuation unigram (D = 1) is uniform."""
  model = ngram.KneserNey(np.array([0, 1, 0, 1, 0, 2]), 3, order=2)
  lower = 1 / 3
  expect_after_0 = [0.2 * 2 / 3 * lower, 1.8 / 3 + 0.2 * 2 / 3 * lower,
                    0.8 / 3 + 0.2 * 2 / 3 * lower]
  np.testing.assert_allclose(model.probs((0,)), expect_after_0, rtol=1e-12)
  np.testing.assert_allclose(model.probs((1,))[0], 1.8 / 2 + 0.2 * 1 / 2 * lower, rtol=1e-12)
  np.testing.assert_allclose(model.probs((2,)), [lower] * 3, rtol=1e-12)  # unseen: backs off
  lp = model.log_probs(np.array([[0, 1, 0], [2, 2, 1]]))
  np.testing.assert_allclose(lp, np.log([[expect_after_0[1], model.probs((1,))[0]],
                                         [lower, lower]]), rtol=1e-12)


def test_kneser_ney_unigram_hand_checked():
  """ids 0 0 1 2 0: counts [3, 1, 1] of 5, D = 2 / (2 + 0) = 1: P = (c - 1) / 5 + 3 / 5 / 3."""
  model = ngram.KneserNey(np.array([0, 0, 1, 2, 0]), 3, order=1)
  np.testing.assert_allclose(model.probs(()), [0.6, 0.2, 0.2], rtol=1e-12)


def test_kneser_ney_is_normalised_for_every_context():
  rng = np.random.default_rng(0)
  text = rng.choice(6, 3000, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
  text[::7] = 5  # some structure
  model = ngram.KneserNey(text, 7, order=5)  # symbol 6 never occurs
  for context in [(), (5,), tuple(text[10:14]), tuple(text[:2]), (6, 6, 6, 6), (0, 6, 1, 2, 3)]:
    p = model.probs(context)
    assert (p > 0).all()
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12)
  seen = model.log_probs(text[None, 100:140]).mean()
  assert seen > model.log_probs(rng.integers(0, 7, (1, 40))).mean()


def test_parse_sampler():
  assert evaluation.parse_sampler('mdlm') == evaluation.Sampler('mdlm')
  s = evaluation.parse_sampler('ar_k4_nocarry_plusE')
  assert (s.energy, s.candidates, s.carry_over, s.sign, s.speed) == ('ar', 4, False, -1.0, False)
  s = evaluation.parse_sampler('nce_k2_speed')
  assert (s.energy, s.candidates, s.carry_over, s.sign, s.speed) == ('nce', 2, True, 1.0, True)
  assert s.label == 'EDLM-NCE k=2, speed window'
  for bad in ('ar', 'ar_k0', 'nce_k2_nocarry', 'mdlm_k2', 'ar_k2_fast'):
    with pytest.raises(ValueError, match='sampler'):
      evaluation.parse_sampler(bad)


def test_diversity_checks_catch_repetition():
  text = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [1, 1, 1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 1, 0, 1]])
  np.testing.assert_allclose(evaluation.distinct_ngrams(text, 4), [1.0, 1 / 5, 2 / 5])
  np.testing.assert_allclose(evaluation.unigram_entropy(text), [np.log(8), 0.0, np.log(2)],
                             atol=1e-12)


def test_forward_passes():
  calls = np.array([34, 32])
  assert evaluation.forward_passes(evaluation.parse_sampler('mdlm'), calls) == 34
  assert evaluation.forward_passes(evaluation.parse_sampler('ar_k1'), calls) == 34
  assert evaluation.forward_passes(evaluation.parse_sampler('nce_k4'), calls) == 34 + 4 * 32
