"""ParScale reproduction: arms as config overrides, floors by hand, and quick arms (from scratch,
and the frozen stage from the base arm's run) through the sweep == the same command through
`python -m common.main` (bit-identical metrics)."""

import dataclasses
import shlex

import jax
import numpy as np
import pytest

from common import experiment, sweep
from papers.parscale import floors, reproduce
from tests.testutil import assert_sweep_run_equals_its_command, run_main


def test_floors_by_hand():
  train = np.array([0, 1, 0, 1, 1])  # unigram counts 2, 3 (+1 each: 3/7, 4/7)
  windows = np.array([[0, 1, 1]])  # targets 1, 1 after contexts 0, 1
  np.testing.assert_allclose(floors.unigram_cross_entropy(train, windows, 2), -np.log(4 / 7))
  # bigrams of train: 01, 10, 01, 11 -> counts +1: from 0: [1, 3]; from 1: [2, 2]
  expected = -(np.log(3 / 4) + np.log(2 / 4)) / 2
  np.testing.assert_allclose(floors.bigram_cross_entropy(train, windows, 2), expected)


def test_arms_are_config_overrides_and_the_frozen_stage_starts_from_base():
  arms = {a.name: a for a in reproduce.arms(quick=False)}
  assert set(arms) == {'base', 'frozen_P1', 'frozen_P2', 'frozen_P4', 'frozen_P8',
                       'frozen_P1_slots64', 'scratch_P4'}
  for arm in arms.values():
    config = sweep.load_config(arm.config, {k: v for k, v in arm.overrides.items()
                                            if not isinstance(v, sweep.After)})
    assert (config.model.d_model, config.model.num_heads) == (64, 2)  # head_dim 32
  base = sweep.load_config(arms['base'].config)
  for name in ('frozen_P1', 'frozen_P2', 'frozen_P8', 'frozen_P1_slots64'):
    o = arms[name].overrides
    config = sweep.load_config(arms[name].config, {k: v for k, v in o.items()
                                                   if not isinstance(v, sweep.After)})
    assert o['parscale.init_from'] == sweep.After('base')
    assert config.data.first_batch == base.train.steps  # continues the base data stream
    assert config.parscale.freeze_backbone and config.parscale.stream_init == 'snippets'
    assert config.parscale.zero_aggregator_out
  slots = sweep.load_config(arms['frozen_P1_slots64'].config, {
      k: v for k, v in arms['frozen_P1_slots64'].overrides.items()
      if not isinstance(v, sweep.After)})
  assert (slots.parscale.num_streams, slots.parscale.num_prefix, slots.parscale.snippet_len,
          slots.parscale.prefix_at_p1) == (1, 64, 8, True)
  assert arms['frozen_P1'].overrides['parscale.prefix_at_p1'] is True
  assert list(arms['scratch_P4'].seeds) == [0, 1, 2] and len(reproduce.SEEDS) >= 4


@pytest.mark.slow
def test_quick_arm_sweep_equals_common_main(tmp_path):
  arm = next(a for a in reproduce.arms(quick=True) if a.name == 'scratch_P2')
  arm = dataclasses.replace(arm, overrides={**arm.overrides, 'num_devices': 1})
  run = assert_sweep_run_equals_its_command(arm, 1, tmp_path)
  assert np.isfinite(run.metrics['loss'])


@pytest.mark.slow
def test_quick_frozen_stage_sweep_equals_common_main(tmp_path):
  """The second stage through the sweep (its backbone from the base arm's run) == its recorded
  command, which names that run's workdir."""
  one = lambda a: dataclasses.replace(a, overrides={**a.overrides, 'num_devices': 1})  # noqa: E731
  arms = {a.name: one(a) for a in reproduce.arms(quick=True)}
  runs = sweep.run_sweep([arms['base'], arms['frozen_P2']], [1], str(tmp_path / 'sweep'))
  run = runs['frozen_P2'][0]
  assert f'--config.parscale.init_from={runs["base"][0].workdir}' in run.command
  args = [a for a in shlex.split(run.command)[3:] if not a.startswith('--workdir=')]
  proc = run_main(*args, f'--workdir={tmp_path / "main"}', devices=jax.device_count())
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert experiment.read_result(run.workdir) == experiment.read_result(tmp_path / 'main')
