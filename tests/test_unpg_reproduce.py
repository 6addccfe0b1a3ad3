"""UNPG reproduction: one quick arm through the sweep == the same command through common.main;
the experiment's verification evaluator every `train.eval_every` steps; the floors."""

import json

import numpy as np
import pytest

from common import verification
from configs.unpg import omniglot as cfgmod
from papers.unpg import omniglot, reproduce
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
  assert pixels == a['raw_pixels']


@pytest.mark.slow
def test_sweep_run_equals_common_main(tmp_path):
  arm = next(a for a in reproduce.arms(quick=True) if a.name == 'arcface_unpg')
  run = assert_sweep_run_equals_its_command(arm, 1, tmp_path)
  assert len(run.history('eval/tar@far=0.001')[0]) == 3  # the quick arm evaluates every step
