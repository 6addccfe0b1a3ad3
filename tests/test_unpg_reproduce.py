"""UNPG reproduction: one quick arm through the sweep == the same command through common.main;
the experiment's verification evaluator every `train.eval_every` steps; the floors; the splits
(no test alphabet seen in training, a validation alphabet held out); the official shuffled
batches; the pilot's choice."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import verification
from configs.unpg import omniglot as cfgmod
from papers.unpg import omniglot, reproduce, sampling
from tests.testutil import assert_sweep_run_equals_its_command


def smoke(arg='arcface,unpg', **train):
  config = cfgmod.get_config(f'{arg},smoke')
  with config.unlocked():
    config.num_devices = 1
    config.train.update(train)
  return config


def test_evaluator_runs_every_eval_every_steps(tmp_path):
  config = smoke(eval_every=1)
  result = omniglot.train_and_evaluate(config, str(tmp_path))
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').open()]
  evals = [r for r in rows if 'eval/tar@far=0.001' in r]
  assert [r['step'] for r in evals] == [1, 2, 3]
  m = result.eval_metrics
  assert evals[-1]['eval/tar@far=0.001'] == m['tar@far=0.001']
  assert evals[-1]['eval/accuracy'] == m['accuracy']
  # the test set: the first num_test_classes unseen characters, 20 drawers each
  _, _, test_x, test_y = omniglot.load_data(config)
  assert set(test_y.tolist()) == set(range(30)) and len(test_x) == 30 * 20
  assert m['num_positive_pairs'] == 30 * 190 and m['num_negative_pairs'] == 600 * 599 // 2 - 5700
  # the ROC at the end: TAR non-decreasing in FAR, up to FAR = 1e-1
  assert m['roc_far'][-1] == pytest.approx(0.1) and np.all(np.diff(m['roc_tar']) >= 0)
  emb = np.load(tmp_path / 'test_embeddings.npy')
  every = verification.all_pairs(emb, test_y, max_far=0.1)
  assert verification.tar_at_far(every, fars=(0.1,))[0.1]['tar'] == pytest.approx(
      m['roc_tar'][-1])
  # partial AUC and the character bootstrap (resample seed 0, whatever the run's seed)
  assert m['pauc@far=0.01'] == pytest.approx(verification.partial_auc(every, 0.01))
  boot = m['bootstrap/tar@far=0.001']
  assert len(boot) == omniglot.BOOTSTRAP_RESAMPLES
  np.testing.assert_allclose(boot, verification.bootstrap_tar_at_far(
      every, 1e-3, omniglot.BOOTSTRAP_RESAMPLES, seed=0))


def test_floors_use_the_same_pairs_and_the_seed_initialisation():
  a, b = (omniglot.floor_metrics(smoke('arcface,unpg')) for _ in range(2))
  assert a == b  # deterministic
  with_seed = smoke()
  with with_seed.unlocked():
    with_seed.seed = 1
  c = omniglot.floor_metrics(with_seed)
  assert c['raw_pixels'] == a['raw_pixels']  # pixels do not depend on the seed
  assert c['untrained'] != a['untrained']
  _, _, test_x, test_y = omniglot.load_data(with_seed)
  pairs = omniglot.test_pairs(with_seed, test_y)
  pixels = verification.evaluate_embeddings(test_x.reshape(len(test_x), -1), test_y, pairs)
  assert pixels == {k: v for k, v in a['raw_pixels'].items() if k in pixels}
  assert len(a['raw_pixels']['bootstrap/tar@far=0.001']) == omniglot.BOOTSTRAP_RESAMPLES


def _named(names):
  """(images, labels, names): one 2x2 image per character, its label as the pixel value."""
  labels = np.arange(len(names), dtype=np.int32)
  return np.broadcast_to(labels[:, None, None, None], (len(names), 2, 2, 1)).astype(
      np.float32), labels, tuple(names)


def test_splits_test_alphabets_unseen_and_validation_alphabet_held_out():
  train = _named(['A/c1', 'A/c2', 'B/c1', 'C/c1', 'C/c2'])
  test = _named(['B/c1', 'D/c1', 'D/c2', 'E/c1'])  # B is also a training alphabet
  config = cfgmod.get_config('arcface')
  tx, ty, ex, ey = omniglot.omniglot_split(config, train, test)
  assert tx[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4] and ty.tolist() == [0, 1, 2, 3, 4]
  assert ex[:, 0, 0, 0].tolist() == [1, 2, 3] and ey.tolist() == [0, 1, 2]  # D/c1, D/c2, E/c1
  with config.unlocked():
    config.data.update(split='validation', val_alphabet='C')
  tx, ty, ex, ey = omniglot.omniglot_split(config, train, test)
  assert tx[:, 0, 0, 0].tolist() == [0, 1, 2] and ty.tolist() == [0, 1, 2]
  assert ex[:, 0, 0, 0].tolist() == [3, 4] and ey.tolist() == [0, 1]
  with config.unlocked():
    config.data.update(split='test', num_train_classes=3)
  tx, ty, _, _ = omniglot.omniglot_split(config, train, test)
  assert ty.tolist() == [0, 1, 2] and len(set(tx[:, 0, 0, 0].tolist())) == 3
  with config.unlocked():
    config.data.update(split='validation', val_alphabet='D')
  with pytest.raises(omniglot.cfglib.ConfigError, match='val_alphabet'):
    omniglot.omniglot_split(config, train, test)


def test_no_test_image_is_a_training_image(data_dir):
  if data_dir is None:
    pytest.skip('needs $PAPERS_DATA_DIR (the Omniglot zips share two alphabets)')
  for split in ('test', 'validation'):
    config = cfgmod.get_config(f'arcface{",validation" if split == "validation" else ""}')
    train_x, train_y, test_x, test_y = omniglot.load_data(config)
    seen = {im.tobytes() for im in train_x}
    assert not any(im.tobytes() in seen for im in test_x)
    expected = (136, 106) if split == 'test' else (112, 24)
    assert (int(train_y.max()) + 1, int(test_y.max()) + 1) == expected
    assert len(train_x) == 20 * expected[0] and len(test_x) == 20 * expected[1]


def test_shuffled_batches_are_epoch_permutations():
  n, b = 50, 8  # 6 batches per epoch, 2 examples dropped
  epoch0 = [sampling.shuffled_batch(n, b, 3, s) for s in range(6)]
  assert all(len(r) == b for r in epoch0) and len(set(np.concatenate(epoch0))) == 48
  epoch1 = np.concatenate([sampling.shuffled_batch(n, b, 3, s) for s in range(6, 12)])
  assert len(set(epoch1)) == 48 and not np.array_equal(np.concatenate(epoch0), epoch1)
  np.testing.assert_array_equal(sampling.shuffled_batch(n, b, 3, 7), epoch1[8:16])
  assert not np.array_equal(sampling.shuffled_batch(n, b, 4, 0), epoch0[0])
  with pytest.raises(ValueError, match='batch_size'):
    sampling.shuffled_batch(5, 8, 0, 0)


def test_affine_warp_matches_scipy_and_random_affine_stays_in_range():
  from scipy import ndimage
  rng = np.random.default_rng(0)
  images = rng.random((3, 11, 9, 2)).astype(np.float32)
  offset, angle, zoom = np.array([[1.5, -0.5], [0, 0], [-2, 1]]), np.array([0.3, 0, -1.0]), \
      np.array([1.1, 1.0, 0.9])
  out = np.asarray(omniglot.affine_warp(jnp.asarray(images), jnp.asarray(offset),
                                        jnp.asarray(angle), jnp.asarray(zoom)))
  centre = (np.array(images.shape[1:3]) - 1) / 2
  for b in range(3):  # scipy: input = matrix @ output + shift
    cos, sin = np.cos(angle[b]) / zoom[b], np.sin(angle[b]) / zoom[b]
    matrix = np.array([[cos, -sin], [sin, cos]])
    for ch in range(2):
      ref = ndimage.affine_transform(images[b, ..., ch].astype(np.float64), matrix,
                                     centre - matrix @ centre - offset[b], order=1,
                                     mode='grid-constant', cval=0.0)  # 0 beyond the edge
      np.testing.assert_allclose(out[b, ..., ch], ref, atol=1e-5)
  np.testing.assert_allclose(out[1], images[1], atol=1e-6)  # the identity map
  # random maps: the centre pixel is moved by the shift only
  dots = np.zeros((64, 9, 9, 1), np.float32)
  dots[:, 4, 4] = 1.0  # the centre: rotation and zoom leave it, only the shift moves it
  moved = np.asarray(omniglot.random_affine(jnp.asarray(dots), jax.random.key(0), 2.0, 10.0,
                                            0.1))
  ys, xs = np.meshgrid(np.arange(9), np.arange(9), indexing='ij')
  mass = moved[..., 0].sum(axis=(1, 2))
  cy, cx = ((moved[..., 0] * g).sum(axis=(1, 2)) / mass for g in (ys, xs))
  # (bilinear sampling of a one-pixel dot blurs its centre by a fraction of a pixel)
  assert np.all(np.abs(cy - 4) <= 2.25) and np.all(np.abs(cx - 4) <= 2.25)
  assert cy.min() < 3 and cy.max() > 5  # both directions drawn
  assert len({round(float(v), 4) for v in cx}) == 64  # each image its own map


class _FakeRun:
  def __init__(self, tar):
    self.metrics = {'tar@far=0.001': tar}


def test_pilot_chooses_the_best_validation_tar_per_head_first_on_ties():
  pilot = {}
  for head, grid in reproduce.PILOT_GRID.items():
    for i, g in enumerate(grid):
      tar = 0.5 if i in (1, 2) else 0.1  # settings 1 and 2 tie: 1 wins
      pilot[reproduce.pilot_name(head, g)] = [_FakeRun(tar), _FakeRun(tar)]
  choice = reproduce.choose(pilot)
  for head, grid in reproduce.PILOT_GRID.items():
    assert choice[head] == dict(zip(reproduce.CHOICE_KEYS, grid[1], strict=True))
  arms = {a.name: a for a in reproduce.arms(False, choice)}
  assert arms['cosface_unpg'].overrides == choice['cosface']
  assert arms['arcface_unpg_nofilter'].overrides == choice['arcface']


@pytest.mark.slow
def test_sweep_run_equals_common_main(tmp_path):
  arm = next(a for a in reproduce.arms(quick=True) if a.name == 'arcface_unpg')
  run = assert_sweep_run_equals_its_command(arm, 1, tmp_path)
  assert len(run.history('eval/tar@far=0.001')[0]) == 3  # the quick arm evaluates every step
