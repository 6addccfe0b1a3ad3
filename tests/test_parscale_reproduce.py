"""ParScale reproduction: arms as config overrides, floors by hand, and one quick arm through the
sweep == the same command through `python -m common.main` (bit-identical metrics)."""

import dataclasses

import numpy as np
import pytest

from common import sweep
from papers.parscale import floors, reproduce
from tests.testutil import assert_sweep_run_equals_its_command


def test_floors_by_hand():
  train = np.array([0, 1, 0, 1, 1])  # unigram counts 2, 3 (+1 each: 3/7, 4/7)
  windows = np.array([[0, 1, 1]])  # targets 1, 1 after contexts 0, 1
  np.testing.assert_allclose(floors.unigram_cross_entropy(train, windows, 2), -np.log(4 / 7))
  # bigrams of train: 01, 10, 01, 11 -> counts +1: from 0: [1, 3]; from 1: [2, 2]
  expected = -(np.log(3 / 4) + np.log(2 / 4)) / 2
  np.testing.assert_allclose(floors.bigram_cross_entropy(train, windows, 2), expected)


def test_arms_are_config_overrides_and_recycling_starts_from_p1():
  arms = {a.name: a for a in reproduce.arms(quick=False)}
  assert len(arms) == 3 * 4 + 3
  for arm in arms.values():
    sweep.load_config(arm.config, {k: v for k, v in arm.overrides.items()
                                   if not isinstance(v, sweep.After)})
  for name in ('recycle_P1', 'recycle_P4', 'recycle_P4_frozen'):
    o = arms[name].overrides
    assert o['parscale.init_from'] == sweep.After('d12_P1') and o['data.first_batch'] == 400
  assert arms['recycle_P4_frozen'].overrides['parscale.freeze_backbone'] is True


@pytest.mark.slow
def test_quick_arm_sweep_equals_common_main(tmp_path):
  arm = next(a for a in reproduce.arms(quick=True) if a.name == 'd8_P2')
  arm = dataclasses.replace(arm, overrides={**arm.overrides, 'num_devices': 1})
  run = assert_sweep_run_equals_its_command(arm, 1, tmp_path)
  assert np.isfinite(run.metrics['loss'])
