"""RS2 experiment: the budget-adapted schedule, 8 devices == 1 device, end-to-end reproduction."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from common import train
from configs.rs2 import mnist as mnist_config
from papers.rs2 import experiment


def smoke(mode='rs2', **overrides):
  c = mnist_config.get_config(f'{mode},smoke')
  with c.unlocked():
    c.train.update(overrides)
  return c


def test_adapted_schedule_step_count():
  c = mnist_config.get_config('rs2')  # 8000 x 10% = 800 per round, batch 16 -> 50 steps
  assert experiment.steps_for(c) == 50 * c.train.rounds
  c = mnist_config.get_config('static,r2')  # 160 per round -> 10 steps, same for every arm
  assert experiment.steps_for(c) == 10 * c.train.rounds
  replacement = mnist_config.get_config('rs2_replacement,r2')
  assert experiment.steps_for(replacement) == 10 * c.train.rounds
  c = mnist_config.get_config('full')
  assert experiment.steps_for(c) == 500 * c.train.rounds
  # the cosine reaches lr * final_lr_fraction exactly at the last step of the budget
  total = experiment.steps_for(mnist_config.get_config('rs2,r2'))
  sched = train.make_schedule(c.optim, total)
  np.testing.assert_allclose(float(sched(0)), 0.1)
  np.testing.assert_allclose(float(sched(total)), 1e-4, rtol=1e-4)


def test_validate_rejects_round_smaller_than_batch():
  c = smoke('rs2', batch_size=64)
  with pytest.raises(experiment.cfglib.ConfigError, match='round holds'):
    experiment.validate(c, 1)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  out = {}
  for devices in (1, 8):
    c = smoke('rs2')
    with c.unlocked():
      c.num_devices = devices
      c.data.data_dir = ''
    out[devices] = experiment.train_and_evaluate(c, str(tmp_path_factory.mktemp(f'd{devices}')))
  return out


def test_eight_devices_equal_one(runs):
  assert jax.device_count() >= 8
  a = jax.device_get(runs[1].state.params)
  b = jax.device_get(runs[8].state.params)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5), a, b)
  assert int(runs[1].state.step) == experiment.steps_for(smoke('rs2'))
  np.testing.assert_allclose(runs[1].eval_metrics['accuracy'], runs[8].eval_metrics['accuracy'],
                             atol=1.5 / 80)


@pytest.mark.slow
def test_reproduce_quick_end_to_end(tmp_path):
  subprocess.run([sys.executable, '-m', 'papers.rs2.reproduce', '--quick', '--out',
                  str(tmp_path)], check=True, timeout=300, capture_output=True)
  res = json.loads((tmp_path / 'results.json').read_text())
  assert len(res['claims']) == 5 and (tmp_path / 'time_to_accuracy.png').is_file()
  assert all(c['verdict'] in ('reproduced', 'partly', 'not') for c in res['claims'])
