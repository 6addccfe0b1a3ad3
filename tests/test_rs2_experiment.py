"""RS2 experiment: the budget-adapted schedule and evaluation period, pruning arms from a
pre-training run, the floors, 8 devices == 1 device."""

import json

import jax
import numpy as np
import pytest

from common import checkpoint, train
from common.experiment import train_and_evaluate as run_path
from configs.rs2 import mnist as mnist_config
from papers.rs2 import experiment


def smoke(mode='rs2', **overrides):
  c = mnist_config.get_config(f'{mode},smoke')
  with c.unlocked():
    c.num_devices = 1
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
  np.testing.assert_allclose(float(sched(0)), c.optim.lr)
  np.testing.assert_allclose(float(sched(total)), c.optim.lr * 1e-3, rtol=1e-4)
  # the official per-example step: lr 0.1 at batch 128 -> 0.1 * 16 / 128 at batch 16
  assert c.optim.lr == pytest.approx(0.1 * c.train.batch_size / 128)


def test_eval_every_round_and_fixed_steps():
  r10 = experiment.with_steps(mnist_config.get_config('rs2'))
  assert r10.train.eval_every == 50 and r10.train.steps == 1500  # a round = 800 / 16 steps
  r2 = experiment.with_steps(mnist_config.get_config('static,r2'))
  assert r2.train.eval_every == 30  # every 3 rounds of 10 steps
  full = experiment.with_steps(mnist_config.get_config('full'))
  assert full.train.eval_every == 500 and full.train.steps == 500 * r10.train.rounds
  pre = experiment.with_steps(mnist_config.get_config('pretrain'))
  assert pre.train.steps == mnist_config.PRETRAIN_STEPS and pre.train.eval_every == 0


def test_validate_pruning_arm_needs_a_pretrained_run():
  c = smoke('el2n')
  with pytest.raises(experiment.cfglib.ConfigError, match='pretrained_workdir'):
    experiment.validate(c, 1)
  with c.unlocked():
    c.selection.pretrained_workdir = '/nonexistent'
    c.data.sampler.mode = 'rs2'
  with pytest.raises(experiment.cfglib.ConfigError, match="sampler.mode='static'"):
    experiment.validate(c, 1)


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


def test_pruning_arm_trains_on_the_subset_of_the_pretrained_model(tmp_path):
  run_path(smoke('pretrain'), str(tmp_path / 'pre'))  # the one run path: writes result.json
  pre_params = checkpoint.restore_params(str(tmp_path / 'pre'))
  c = smoke('el2n')
  with c.unlocked():
    c.selection.pretrained_workdir = str(tmp_path / 'pre')
  result = experiment.train_and_evaluate(c, str(tmp_path / 'el2n'))
  m = result.eval_metrics
  assert m['pretrain_steps'] == 5 and m['train_steps'] == experiment.steps_for(c)
  # the subset: EL2N top-k (class-balanced) of the pre-trained model's outputs
  train_x, train_y, test_x, test_y = experiment.load_data(c)
  model = experiment.Classifier(tuple(c.model.features))
  logits, _ = experiment.model_outputs(model, pre_params, train_x, 100)
  k = experiment.subsets.subset_size(len(train_x), c.data.sampler.fraction)
  want = experiment.pruning.top_k_balanced(
      np.asarray(experiment.pruning.el2n_scores(logits, train_y)), train_y, k)
  np.testing.assert_array_equal(experiment.select_subset(
      c, model, pre_params, train_x, train_y), want)
  # floors on the same test split: the majority class and the untrained network
  assert m['chance_accuracy'] == np.bincount(test_y).max() / len(test_y)
  _, eval_fn = experiment.make_loss_and_eval(model)
  init = model.init(jax.random.key(c.seed), experiment.as_float(train_x[:1]))
  logits = model.apply(init, experiment.as_float(test_x))
  assert m['untrained_accuracy'] == pytest.approx(float(np.mean(np.argmax(logits, -1) == test_y)),
                                                  abs=1e-6)
  # per-round evaluation in metrics.jsonl, the last one the final metric
  rows = [json.loads(line) for line in (tmp_path / 'el2n' / 'metrics.jsonl').open()]
  evals = [(r['step'], r['eval/accuracy']) for r in rows if 'eval/accuracy' in r]
  per_round = experiment.steps_per_round(experiment.with_steps(c))
  assert [s for s, _ in evals] == list(range(per_round, m['train_steps'] + 1, per_round))
  assert evals[-1][1] == m['accuracy']
