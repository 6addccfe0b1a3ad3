"""The statistics behind every verdict, on cases checkable by hand (t quantiles from tables)."""

import math

import pytest

from common import stats

T975_2, T95_2, T80_2 = 4.302653, 2.919986, 1.060660  # Student t, 2 degrees of freedom


def test_paired_t_interval_with_three_seeds():
  ci = stats.t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1
  half = T975_2 / math.sqrt(3)
  assert (ci.mean, ci.sd, ci.n) == (2.0, 1.0, 3)
  assert ci.lo == pytest.approx(2 - half, abs=1e-6) and ci.hi == pytest.approx(2 + half, abs=1e-6)


def test_compare_pairs_seeds_and_gives_all_three_verdicts():
  # b varies a lot between seeds, a - b does not: pairing makes the difference clear
  per_seed = {'a': [12.0, 5.1, 8.9], 'b': [10.0, 3.0, 7.0]}  # differences 2.0, 2.1, 1.9
  up = stats.compare('a beats b', 'p', per_seed, 'a', 'b', 'a>b', metric='m')
  half = T975_2 * 0.1 / math.sqrt(3)
  assert up['ci95'] == pytest.approx([2 - half, 2 + half], abs=1e-6)
  assert up['verdict'] == 'reproduced'
  assert stats.compare('b beats a', 'p', per_seed, 'a', 'b', 'a<b', metric='m')[
      'verdict'] == 'contradicted'
  wide = stats.compare('x', 'p', {'a': [1.0, 2.0, 3.0], 'b': [0.0, 0.0, 0.0]}, 'a', 'b', 'a>b',
                       metric='m')
  assert wide['verdict'] == 'inconclusive'  # [2 - 2.48, 2 + 2.48] covers 0
  assert wide['mde'] == pytest.approx((T975_2 + T80_2) / math.sqrt(3), abs=1e-5)
  assert 'smallest detectable' in wide['ours']


def test_compare_with_a_reference_value_is_one_sample():
  out = stats.compare('close to theory', 'p', {'a': [2.0, 2.1, 1.9]}, 'a', 'theory', 'a>b',
                      metric='m', reference=1.0)
  assert out['mean_diff'] == pytest.approx(1.0) and out['verdict'] == 'reproduced'


def test_fewer_than_three_seeds_is_not_tested():
  out = stats.compare('x', 'p', {'a': [5.0, 6.0], 'b': [0.0, 0.0]}, 'a', 'b', 'a>b', metric='m')
  assert out['verdict'] == 'not tested' and '2 paired seeds < 3' in out['reasons'][0]


def test_an_arm_at_its_floor_is_not_tested():
  floor = stats.Floor('chance', 0.10, margin=0.05)
  out = stats.compare('x', 'p', {'a': [0.5, 0.6, 0.7], 'b': [0.11, 0.12, 0.10]}, 'a', 'b', 'a>b',
                      metric='acc', floor=floor)
  assert out['verdict'] == 'not tested' and out['floor']['ok'] is False
  assert 'b not beyond the floor chance' in out['reasons'][0]
  loss_floor = stats.Floor('unigram', 3.0, margin=0.1, higher_is_better=False)
  assert loss_floor.check({'a': [2.5, 2.6, 2.7]})['ok']
  assert not loss_floor.check({'a': [2.95, 2.9, 2.95]})['ok']


def test_convergence_of_flat_and_rising_curves():
  flat = stats.convergence([[0, 5, 9, 10, 10.5, 10.6]], tol=0.2)  # last 20%: 10.5 -> 10.6
  assert flat['ok'] and flat['improvement'] == pytest.approx(0.1)
  rising = stats.convergence([[0, 2, 4, 6, 8, 10], [0, 2, 4, 6, 8, 12]], tol=0.2)
  assert not rising['ok'] and rising['improvement'] == pytest.approx(3.0)
  loss = stats.convergence([[5, 4, 3, 2, 1, 0]], tol=0.2, higher_is_better=False)
  assert not loss['ok'] and loss['improvement'] == pytest.approx(1.0)
  out = stats.compare('x', 'p', {'a': [2.0, 2.1, 1.9], 'b': [0.0, 0.0, 0.0]}, 'a', 'b', 'a>b',
                      metric='m', converged={'a': rising, 'b': flat})
  assert out['verdict'] == 'not tested' and 'a still improving' in out['reasons'][0]


def test_two_one_sided_tests():
  near = {'a': [1.1, 0.9, 1.0], 'b': [1.0, 1.0, 1.0]}  # differences 0.1, -0.1, 0: sd 0.1
  half90 = T95_2 * 0.1 / math.sqrt(3)
  out = stats.equivalent('same', 'p', near, 'a', 'b', 0.5, metric='m')
  assert out['ci90'] == pytest.approx([-half90, half90], abs=1e-6)
  assert out['verdict'] == 'reproduced'
  assert stats.equivalent('same', 'p', near, 'a', 'b', 0.1, metric='m')['verdict'] == \
      'inconclusive'
  far = {'a': [3.0, 3.1, 2.9], 'b': [1.0, 1.0, 1.0]}
  assert stats.equivalent('same', 'p', far, 'a', 'b', 0.5, metric='m')['verdict'] == \
      'contradicted'


def test_noninferiority():
  slightly_worse = {'a': [9.8, 9.7, 9.9], 'b': [10.0, 10.0, 10.0]}  # a - b = -0.2 +- 0.1
  assert stats.noninferior('x', 'p', slightly_worse, 'a', 'b', 1.0, metric='AP')[
      'verdict'] == 'reproduced'
  much_worse = {'a': [7.0, 7.1, 6.9], 'b': [10.0, 10.0, 10.0]}
  assert stats.noninferior('x', 'p', much_worse, 'a', 'b', 1.0, metric='AP')[
      'verdict'] == 'contradicted'
  lower_better = {'a': [10.2, 10.3, 10.1], 'b': [10.0, 10.0, 10.0]}  # a's loss 0.2 higher
  assert stats.noninferior('x', 'p', lower_better, 'a', 'b', 1.0, metric='loss',
                           higher_is_better=False)['verdict'] == 'reproduced'


def test_deterministic_facts_compare_exact_values():
  out = stats.deterministic('flatter', 'p', {'atss': 1.16, 'iou': 1.22}, 'atss', 'iou', 'a<b',
                            metric='spread')
  assert out['deterministic'] is True and out['verdict'] == 'reproduced'
  assert stats.deterministic('x', 'p', {'a': 1.0, 'b': 1.0}, 'a', 'b', 'a>b', metric='m')[
      'verdict'] == 'contradicted'
