"""RS2 experiment: the budget-adapted schedule and evaluation period, seeds trained together equal
each seed alone, the pilot's validation split, pruning arms from a pre-training run, the floors,
8 devices == 1 device."""

import json

import jax
import numpy as np
import pytest

from common import checkpoint, train
from common.experiment import read_result
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
  rounds = mnist_config.ROUNDS
  c = mnist_config.get_config('rs2')  # 8000 x 10% = 800 per round, batch 16 -> 50 steps
  assert experiment.steps_for(c) == 50 * rounds
  c = mnist_config.get_config('static,r2')  # 160 per round -> 10 steps, same for every arm
  assert experiment.steps_for(c) == 10 * rounds
  assert experiment.steps_for(mnist_config.get_config('rs2_replacement,r2')) == 10 * rounds
  # full data matched to the budget of r: the same steps; on its long schedule: ROUNDS epochs
  assert experiment.steps_for(mnist_config.get_config('full,r2')) == 10 * rounds
  assert experiment.steps_for(mnist_config.get_config('full')) == 50 * rounds
  assert experiment.steps_for(mnist_config.get_config('full_long')) == 500 * rounds
  pre = mnist_config.get_config('pretrain')
  assert experiment.steps_for(pre) == 500 * mnist_config.PRETRAIN_EPOCHS
  assert pre.optim.schedule == 'constant'
  # the cosine reaches lr * final_lr_fraction exactly at the last step of the budget
  total = experiment.steps_for(mnist_config.get_config('rs2,r2'))
  sched = train.make_schedule(c.optim, total)
  np.testing.assert_allclose(float(sched(0)), c.optim.lr)
  np.testing.assert_allclose(float(sched(total)), c.optim.lr * 1e-3, rtol=1e-4)
  # the official per-example step: lr 0.1 at batch 128 -> 0.1 * B / 128 at batch B
  assert c.optim.lr == pytest.approx(0.1 * c.train.batch_size / 128)


def test_eval_periods_hit_both_budgets():
  r10 = experiment.with_steps(mnist_config.get_config('rs2'))
  assert r10.train.eval_every == 250 and r10.train.steps == 5000  # every 5 rounds of 50 steps
  r2 = experiment.with_steps(mnist_config.get_config('static,r2'))
  assert r2.train.eval_every == 50  # every 5 rounds of 10 steps
  long = experiment.with_steps(mnist_config.get_config('full_long'))
  assert long.train.eval_every == 250 and long.train.steps == 500 * mnist_config.ROUNDS
  # the stopping-point ablation reads full_long's evaluation at each budget's step count
  assert r10.train.steps % long.train.eval_every == 0
  assert r2.train.steps % long.train.eval_every == 0
  pre = experiment.with_steps(mnist_config.get_config('pretrain'))
  assert pre.train.eval_every == 500  # every epoch: the forgetting record
  pilot = experiment.with_steps(mnist_config.get_config('pilot,r2'))
  assert pilot.train.steps == r2.train.steps and pilot.data.num_val == mnist_config.NUM_VAL


def test_validate_pruning_arm_needs_a_pretrained_run():
  c = smoke('el2n')
  with pytest.raises(experiment.cfglib.ConfigError, match='pretrained_workdir'):
    experiment.validate(c, 1)
  with c.unlocked():
    c.selection.pretrained_workdir = '/nonexistent'
    c.data.sampler.mode = 'without_replacement'
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


def test_vmapped_seeds_equal_each_seed_alone(tmp_path):
  c = smoke('rs2')
  with c.unlocked():
    c.num_seeds = 2
  both = run_path(c, str(tmp_path / 'both'))
  assert len(both['per_seed']) == 2
  for i, seed in enumerate((0, 1)):
    one = smoke('rs2')
    with one.unlocked():
      one.seed = seed
    alone = run_path(one, str(tmp_path / f'seed{seed}'))['per_seed'][0]
    assert set(alone) == set(both['per_seed'][i])
    for key, value in alone.items():
      np.testing.assert_allclose(both['per_seed'][i][key], value, rtol=1e-4, atol=1e-5,
                                 err_msg=key)
    params = checkpoint.restore_params(str(tmp_path / f'seed{seed}'))
    stacked = checkpoint.restore_params(str(tmp_path / 'both'))
    jax.tree.map(lambda x, y, i=i: np.testing.assert_allclose(x[i], y[0], rtol=2e-4, atol=2e-5),
                 stacked, params)


def test_pilot_holds_out_validation_from_training(tmp_path):
  c = smoke('pilot')
  train_x, train_y, val_x, val_y = experiment.splits(c)
  all_x, all_y, test_x, _ = experiment.load_data(c)
  assert len(val_x) == c.data.num_val and len(train_x) == c.data.num_train - c.data.num_val
  np.testing.assert_array_equal(np.concatenate([train_x, val_x]), all_x)
  np.testing.assert_array_equal(np.concatenate([train_y, val_y]), all_y)
  # its accuracy is on the validation split: the majority class of val, not of test
  m = run_path(c, str(tmp_path / 'pilot'))
  assert m['chance_accuracy'] == np.bincount(val_y).max() / len(val_y)
  assert m['train_steps'] == experiment.steps_for(c)  # full data for the budget of r


def test_pruning_arms_select_with_the_pretrained_run(tmp_path):
  pre_config = smoke('pretrain')
  with pre_config.unlocked():
    pre_config.num_seeds = 2
  run_path(pre_config, str(tmp_path / 'pre'))  # the one run path: writes result.json
  pre_params = checkpoint.restore_params(str(tmp_path / 'pre'))
  steps = experiment.steps_for(pre_config)
  # the forgetting record: one [members, N] correctness per epoch, the last one the final model's
  train_x, train_y, test_x, test_y = experiment.load_data(pre_config)
  model = experiment.Classifier(tuple(pre_config.model.features))
  record = experiment.load_train_correct(str(tmp_path / 'pre'), steps)
  assert record.shape == (pre_config.train.epochs, 2, len(train_x))
  logits = experiment.predict(model, pre_params, train_x, 100)
  np.testing.assert_array_equal(record[-1], np.argmax(logits, -1) == train_y[None])
  k = experiment.subsets.subset_size(len(train_x), 0.1)
  for method in ('el2n', 'forgetting', 'kcenter'):
    c = smoke(method)
    with c.unlocked():
      c.seed, c.selection.pretrained_workdir = 1, str(tmp_path / 'pre')
    m = run_path(c, str(tmp_path / method))
    assert m['pretrain_steps'] == steps and m['train_steps'] == experiment.steps_for(c)
    chosen = experiment.select_subset(c, model, experiment.Pretrained(str(tmp_path / 'pre')), 1,
                                      train_x, train_y)
    if method == 'el2n':  # seed 1 = member 1 of the pre-training run
      want = experiment.pruning.top_k_balanced(np.asarray(experiment.pruning.el2n_scores(
          logits[1], train_y)), train_y, k)
    elif method == 'forgetting':
      want = experiment.pruning.top_k_balanced(
          experiment.pruning.forgetting_events(record[:, 1]), train_y, k)
    else:
      _, feats = experiment.predict(model, pre_params, train_x, 100, return_features=True)
      want = experiment.pruning.k_center_greedy(feats[1], k, 1)
    np.testing.assert_array_equal(chosen, want)
  # a seed the pre-training run did not train is refused
  c = smoke('el2n')
  with c.unlocked():
    c.seed, c.selection.pretrained_workdir = 5, str(tmp_path / 'pre')
  with pytest.raises(experiment.cfglib.ConfigError, match='not seed 5'):
    experiment.train_and_evaluate(c, str(tmp_path / 'bad'))
  # floors on the same test split: the majority class and the untrained network
  m = read_result(str(tmp_path / 'el2n'))['metrics']
  assert m['chance_accuracy'] == np.bincount(test_y).max() / len(test_y)
  init = model.init(jax.random.key(1), experiment.as_float(train_x[:1]))
  logits = model.apply(init, experiment.as_float(test_x))
  assert m['untrained_accuracy'] == pytest.approx(float(np.mean(np.argmax(logits, -1) == test_y)),
                                                  abs=1e-6)
  # evaluation every round in metrics.jsonl, the last one the final metric
  rows = [json.loads(line) for line in (tmp_path / 'el2n' / 'metrics.jsonl').open()]
  evals = [(r['step'], r['eval/accuracy/seed0']) for r in rows if 'eval/accuracy/seed0' in r]
  per_round = experiment.steps_per_round(c)
  assert [s for s, _ in evals] == list(range(per_round, m['train_steps'] + 1, per_round))
  assert evals[-1][1] == m['accuracy']
