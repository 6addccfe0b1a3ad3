"""The RS2 sampler (common.data.subsets) and the CIFAR-10 readers."""

import pickle

import numpy as np
import pytest

from common.data import cifar10, subsets
from common.data import subset_round_indices as exported


def test_exported_from_common_data():
  assert exported is subsets.subset_round_indices


@pytest.mark.parametrize('n, fraction', [(100, 0.1), (50, 0.2), (12, 0.25)])
def test_each_example_exactly_once_per_pass_when_k_divides_n(n, fraction):
  k = subsets.subset_size(n, fraction)
  per_pass = subsets.rounds_per_pass(n, fraction)
  assert per_pass * k == n
  for p in range(3):
    seen = np.concatenate([subset_round(n, fraction, 7, p * per_pass + c) for c in range(per_pass)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(n))


def subset_round(n, fraction, seed, r, replacement=False):
  return subsets.subset_round_indices(n, fraction, seed, r, replacement=replacement)


def test_partial_last_chunk_wraps_around_within_the_pass():
  n, fraction = 10, 0.3  # k = 3, 4 rounds per pass, last chunk 1 example + 2 wrapped
  assert subsets.subset_size(n, fraction) == 3 and subsets.rounds_per_pass(n, fraction) == 4
  rounds = [subset_round(n, fraction, 0, r) for r in range(4)]
  perm = np.concatenate(rounds[:3] + [rounds[3][:1]])
  np.testing.assert_array_equal(np.sort(perm), np.arange(n))  # the pass covers all 10
  np.testing.assert_array_equal(rounds[3][1:], rounds[0][:2])  # wrap-around to the start
  assert all(len(set(r.tolist())) == 3 for r in rounds)
  # the next pass is a fresh permutation
  nxt = np.concatenate([subset_round(n, fraction, 0, r) for r in range(4, 7)])
  assert not np.array_equal(nxt, perm[:9])


@pytest.mark.parametrize('replacement', [False, True])
def test_sizes_range_distinct_and_determinism(replacement):
  for n, fraction in [(1000, 0.02), (1000, 0.1), (37, 0.5), (5, 1.0), (3, 0.01)]:
    k = subsets.subset_size(n, fraction)
    assert k == max(1, min(n, round(fraction * n)))
    for r in (0, 1, 13):
      idx = subset_round(n, fraction, 3, r, replacement)
      assert idx.shape == (k,) and len(np.unique(idx)) == k
      assert idx.min() >= 0 and idx.max() < n
      np.testing.assert_array_equal(idx, subset_round(n, fraction, 3, r, replacement))


@pytest.mark.parametrize('replacement', [False, True])
def test_independent_across_seeds_and_rounds(replacement):
  n, fraction = 1000, 0.1
  a = [set(subset_round(n, fraction, 0, r, replacement).tolist()) for r in range(5)]
  b = [set(subset_round(n, fraction, 1, r, replacement).tolist()) for r in range(5)]
  for x, y in zip(a, b, strict=True):
    assert x != y and len(x & y) < 40  # ~10 expected overlap of two random 100-subsets
  assert a[0] != a[1]


def test_with_replacement_rounds_are_independent_uniform():
  n, fraction, rounds = 50, 0.2, 2000
  counts = np.bincount(np.concatenate([subset_round(n, fraction, 0, r, True)
                                       for r in range(rounds)]), minlength=n)
  expected = rounds * 10 / n  # 400 per example, sd ~ 18
  assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected))
  # without replacement every example appears exactly rounds / 5 times
  counts = np.bincount(np.concatenate([subset_round(n, fraction, 0, r) for r in range(rounds)]))
  assert np.all(counts == rounds // 5)


def test_static_subset_is_fixed():
  s = subsets.SubsetBatchStream(100, 0.2, 5, seed=4, mode='static')
  for r in range(4):
    np.testing.assert_array_equal(np.sort(s.round_batches(r).ravel()),
                                  np.sort(subsets.static_subset_indices(100, 0.2, 4)))


def test_batch_stream_steps_and_resume_mid_pass():
  n, fraction, b = 100, 0.2, 6  # k = 20 -> 3 steps per round (drop_last drops 2)
  s = subsets.SubsetBatchStream(n, fraction, b, seed=2)
  assert s.steps_per_round == 3
  assert subsets.total_steps(n, fraction, b, rounds=10) == 30
  stream = np.stack([s[t] for t in range(30)])
  # a fresh stream (as after a restart) started mid-pass at step 13 continues the sequence
  resumed = subsets.SubsetBatchStream(n, fraction, b, seed=2)
  np.testing.assert_array_equal(np.stack([resumed[t] for t in range(13, 30)]), stream[13:])
  for r in range(10):  # each round's batches come from that round's subset
    rows = stream[3 * r:3 * r + 3].ravel()
    assert len(np.unique(rows)) == 18
    assert set(rows.tolist()) <= set(subset_round(n, fraction, 2, r).tolist())


def test_batch_sampler_from_config_and_errors():
  fn = subsets.batch_sampler({'mode': 'with_replacement', 'fraction': 0.5}, 40, 4, seed=0)
  assert fn(0).shape == (4,)
  with pytest.raises(ValueError, match='smaller than batch_size'):
    subsets.SubsetBatchStream(100, 0.02, 4, seed=0)
  with pytest.raises(ValueError, match='fraction'):
    subsets.subset_size(10, 0.0)
  with pytest.raises(ValueError, match='mode'):
    subsets.SubsetBatchStream(100, 0.5, 4, seed=0, mode='bogus')


def _cifar_like(n, seed):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, n).astype(np.int32)
  flat = images.transpose(0, 3, 1, 2).reshape(n, -1)  # channel-major rows, as CIFAR stores them
  return images, labels, flat


def test_cifar10_python_and_binary_readers(tmp_path):
  images, labels, flat = _cifar_like(5, 0)
  (tmp_path / 'cifar-10-batches-py').mkdir()
  for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
    with (tmp_path / 'cifar-10-batches-py' / name).open('wb') as f:
      pickle.dump({b'data': flat, b'labels': labels.tolist(), b'batch_label': b'x'}, f)
  x, y = cifar10.read_cifar10_python(tmp_path / 'cifar-10-batches-py' / 'test_batch')
  np.testing.assert_array_equal(x, images)
  np.testing.assert_array_equal(y, labels)
  assert x[0, 0, 1, 2] == flat[0, 2 * 1024 + 1]  # pixel (row 0, col 1), blue channel
  x, y = cifar10.load_cifar10(tmp_path, 'train')
  assert x.shape == (25, 32, 32, 3) and y.dtype == np.int32

  bin_dir = tmp_path / 'bin' / 'cifar-10-batches-bin'
  bin_dir.mkdir(parents=True)
  records = np.concatenate([labels[:, None].astype(np.uint8), flat], axis=1)
  (bin_dir / 'test_batch.bin').write_bytes(records.tobytes())
  x, y = cifar10.load_cifar10(tmp_path / 'bin', 'test')
  np.testing.assert_array_equal(x, images)
  np.testing.assert_array_equal(y, labels)
  (bin_dir / 'bad.bin').write_bytes(records.tobytes()[:-1])
  with pytest.raises(cifar10.DataError, match='multiple of 3073'):
    cifar10.read_cifar10_binary(bin_dir / 'bad.bin')
  with pytest.raises(cifar10.DataError, match='neither'):
    cifar10.load_cifar10(tmp_path / 'nothing')
