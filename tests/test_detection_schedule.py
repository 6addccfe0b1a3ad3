"""The detection reproductions' training length: the pilot's plateau step, the 1x schedule's
shape, and the choice over pilot arms (common.detection.schedule / results)."""

import json

import pytest

from common import sweep, train
from common.detection import results, schedule
from configs.atss import mnist_canvas


def test_plateau_step_by_hand():
  steps = [100, 200, 300, 400, 500, 600]
  # smoothed (3-point running mean): 2, 4, 6.67, 9.33, 10, 10.5; from step 400 on the curve
  # rises 1.17 > 1; from 500 on 0.5 <= 1
  curve = [[1, 3, 8, 9, 11, 10]]
  assert schedule.plateau_step(steps, curve, tol=1.0) == 500
  assert schedule.plateau_step(steps, curve, tol=1.2) == 400
  # seed mean first: two seeds mirror each other into a flat mean
  assert schedule.plateau_step(steps, [[0, 2, 0, 2, 0, 2], [2, 0, 2, 0, 2, 0]], tol=0.0) == 100
  # still rising at the end: the last step
  assert schedule.plateau_step(steps, [[1, 2, 3, 4, 5, 6]], tol=0.1) == 600
  with pytest.raises(ValueError):
    schedule.plateau_step(steps[:3], curve, tol=1.0)


def test_one_x_and_rounding():
  assert schedule.round_steps(1201) == 1300 and schedule.round_steps(0) == 100
  assert schedule.round_steps(7, 5) == 10
  o = schedule.one_x(1800)
  assert o == {'train.steps': 1800, 'train.eval_every': 360, 'train.checkpoint_every': 360,
               'optim.schedule': 'step', 'optim.decay_steps': (1200, 1600)}
  with pytest.raises(ValueError):
    schedule.one_x(1801)
  assert schedule.constant(24000, 40) == {'train.steps': 24000, 'train.eval_every': 600,
                                          'train.checkpoint_every': 600,
                                          'optim.schedule': 'constant'}
  with pytest.raises(ValueError):
    schedule.constant(1000, 3)
  config = sweep.load_config('configs/atss/mnist_canvas.py', o)
  lr = train.make_schedule(config.optim, config.train.steps)
  warm = config.optim.warmup_steps
  assert float(lr(warm)) == pytest.approx(0.01)
  assert float(lr(1199)) == pytest.approx(0.01) and float(lr(1200)) == pytest.approx(1e-3)
  assert float(lr(1600)) == pytest.approx(1e-4)


def test_pilot_config_is_constant_lr_on_other_canvases():
  pilot, main = mnist_canvas.get_config('pilot'), mnist_canvas.get_config()
  assert pilot.optim.schedule == 'constant' and main.optim.schedule == 'step'
  assert pilot.data.val_seed != main.data.val_seed
  assert pilot.train.steps == mnist_canvas.PILOT_STEPS
  assert pilot.train.steps // pilot.train.eval_every == mnist_canvas.PILOT_EVALS


def _pilot_run(tmp_path, name, curve):
  workdir = tmp_path / name
  workdir.mkdir()
  workdir.joinpath('metrics.jsonl').write_text(''.join(
      json.dumps({'step': 300 * (i + 1), 'eval/AP': v}) + '\n' for i, v in enumerate(curve)))
  return sweep.Run(name, 0, str(workdir), '', {})


def test_choose_steps_takes_the_later_plateau(tmp_path):
  pilot = {'a': [_pilot_run(tmp_path, 'a', [10, 20, 30, 30, 30, 30])],  # plateau at 1200
           'b': [_pilot_run(tmp_path, 'b', [10, 20, 30, 40, 50, 50])]}  # plateau at 1800
  steps, per_arm = results.choose_steps(pilot, tol=0.5)
  assert per_arm == {'a': 1200, 'b': 1800} and steps == 1800
  table = results.pilot_table(pilot, per_arm, steps, {'a': 'A'}, 0.5)
  assert table['rows'][0][:3] == ['A', 1200, 30.0]


def test_pilot_note_flags_a_pilot_still_rising_over_its_last_fifth(tmp_path):
  # ten evaluations at 300..3000; the last fifth starts after the 8th (step 2400)
  flat = [10, 20, 30, 40, 41, 41, 41, 41, 41.3, 41.2]  # rises 0.3 after step 2400
  noisy_end = [10, 20, 30, 33, 35, 37, 39, 40, 42, 41]  # plateau rule: 2700; still +2 at the end
  pilot = {'a': [_pilot_run(tmp_path, 'a', flat)], 'b': [_pilot_run(tmp_path, 'b', noisy_end)]}
  assert results.pilot_note({'a': pilot['a']}, {}, 0.5, 2700).startswith('Pilot: every arm rose')
  note = results.pilot_note(pilot, {'b': 'B'}, 0.5, 2700)
  assert 'NO PLATEAU' in note and "the pilot's 3000 steps" in note and 'train 2700 steps' in note
  assert 'B (AP 40.0 at step 2400 -> best 42.0 after it)' in note
  assert 'a (' not in note
