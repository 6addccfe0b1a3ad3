"""The shared trainer: data parallel == single device, exact resume, checkpoint integrity."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import lm, parallel, train
from common.checkpoint import Checkpointer
from common.config import ConfigError
from common.metrics import read_metrics
from common.quickstart import load_config
from tests.testutil import ROOT, latest_state, run_main


def smoke_config(**train):
  config = load_config(ROOT / 'configs' / 'quickstart.py', 'smoke')
  config.train.update(train)
  return config


def test_eight_devices_match_one(tmp_path):
  assert jax.device_count() == 8
  results = {}
  for n in (1, 8):
    config = smoke_config(steps=4, checkpoint_every=4)
    config.num_devices = n
    results[n] = lm.train_and_evaluate(config, str(tmp_path / str(n)))
  one, eight = results[1], results[8]
  chex_close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  jax.tree.map(chex_close, jax.device_get(one.state.params), jax.device_get(eight.state.params))
  chex_close(one.eval_metrics['loss'], eight.eval_metrics['loss'])
  losses = {n: [r['train/loss'] for r in read_metrics(tmp_path / str(n)) if 'train/loss' in r]
            for n in (1, 8)}
  chex_close(losses[1], losses[8])


def test_steps_per_dispatch_equals_one_step_per_dispatch(tmp_path):
  """k steps per jitted call (a scan over stacked batches, a remainder block at the end) train,
  log, evaluate and resume as one step per call does."""
  runs = {}
  for k in (1, 4):
    config = smoke_config(steps=10, log_every=4, eval_every=4, checkpoint_every=4,
                          steps_per_dispatch=k, keep_checkpoints=5)
    runs[k] = lm.train_and_evaluate(config, str(tmp_path / str(k)))
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # noqa: E731
  jax.tree.map(close, jax.device_get(runs[1].state.params), jax.device_get(runs[4].state.params))
  logged = {k: [(r['step'], r.get('train/loss'), r.get('train/lr'), r.get('eval/loss'))
                for r in read_metrics(tmp_path / str(k)) if 'step' in r] for k in (1, 4)}
  assert [r[0] for r in logged[4]] == [r[0] for r in logged[1]]
  for one, four in zip(logged[1], logged[4], strict=True):
    close(np.array(one[1:], float), np.array(four[1:], float))
  # resume mid-run from the step-4 checkpoint: the same final parameters
  config = smoke_config(steps=10, log_every=4, eval_every=4, checkpoint_every=4,
                        steps_per_dispatch=4, keep_checkpoints=5)
  for step in ('8', '10'):
    shutil.rmtree(tmp_path / '4' / 'checkpoints' / step)
  resumed = lm.train_and_evaluate(config, str(tmp_path / '4'))
  jax.tree.map(close, jax.device_get(runs[4].state.params), jax.device_get(resumed.state.params))


def test_steps_per_dispatch_must_divide_the_logged_steps(tmp_path):
  config = smoke_config(steps=10, log_every=3, steps_per_dispatch=4)
  with pytest.raises(ConfigError, match='log_every=3 is not a multiple of'):
    lm.train_and_evaluate(config, str(tmp_path))


def _quickstart_args(workdir, steps=12):
  return ('--config=configs/quickstart.py:smoke', f'--workdir={workdir}',
          f'--config.train.steps={steps}', '--config.train.checkpoint_every=2',
          '--config.train.log_every=1', '--config.train.keep_checkpoints=3')


def test_entry_point_runs_quickstart_and_writes_outputs(tmp_path):
  proc = run_main(*_quickstart_args(tmp_path, steps=4))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (tmp_path / 'config.json').exists()
  assert json.loads((tmp_path / 'config.json').read_text())['train']['steps'] == 4
  assert [r['step'] for r in read_metrics(tmp_path) if 'train/loss' in r] == [1, 2, 3, 4]
  assert list((tmp_path / 'tensorboard').glob('events.out.tfevents.*'))
  assert latest_state(tmp_path)[1] == 4


def _toy_state(value):
  tx = optax.sgd(0.1)
  return train.init_state({'w': jnp.full((3,), value)}, tx, seed=0)


def test_corrupted_latest_checkpoint_falls_back_to_previous(tmp_path, caplog):
  ckpt = Checkpointer(str(tmp_path), keep=3, config_json='{"model": {}}')
  ckpt.save(1, _toy_state(1.0))
  ckpt.save(2, _toy_state(2.0))
  ckpt.wait()
  for f in (tmp_path / '2' / 'state').rglob('*'):
    if f.is_file() and f.stat().st_size > 0 and 'metadata' not in f.name:
      f.write_bytes(b'\0' * f.stat().st_size)  # same size, wrong bytes
  (tmp_path / '3.orbax-checkpoint-tmp-0').mkdir()  # a half-written checkpoint
  fresh = Checkpointer(str(tmp_path), keep=3, config_json='{"model": {}}')
  state, step = fresh.restore_latest(_toy_state(0.0))
  assert step == 1
  np.testing.assert_array_equal(state.params['w'], [1.0, 1.0, 1.0])


def test_a_relative_checkpoint_directory_saves_and_restores(tmp_path, monkeypatch):
  """A workdir given relative to the current directory (`--workdir=runs/x`) checkpoints and
  restores like an absolute one (orbax itself only takes absolute paths)."""
  from common.checkpoint import restore_state
  monkeypatch.chdir(tmp_path)
  ckpt = Checkpointer('runs/x/checkpoints', keep=2, config_json='{"model": {}}')
  ckpt.save(3, _toy_state(3.0))
  ckpt.wait()
  state, step = Checkpointer('runs/x/checkpoints', 2, '{"model": {}}').restore_latest(
      _toy_state(0.0))
  assert step == 3 and (tmp_path / 'runs' / 'x' / 'checkpoints' / '3').is_dir()
  np.testing.assert_array_equal(state.params['w'], [3.0, 3.0, 3.0])
  np.testing.assert_array_equal(restore_state('runs/x')['params']['w'], [3.0, 3.0, 3.0])


def test_checkpoint_of_another_model_is_refused(tmp_path):
  from common.config import ConfigError
  old = Checkpointer(str(tmp_path), 2, '{"model": {"d": 1}}')
  old.save(1, _toy_state(1.0))
  old.wait()
  with pytest.raises(ConfigError, match='different config.model'):
    Checkpointer(str(tmp_path), 2, '{"model": {"d": 2}}').restore_latest(_toy_state(0.0))


def test_nonfinite_loss_halts_and_keeps_last_good_checkpoint(tmp_path):
  config = smoke_config(steps=6, checkpoint_every=2, log_every=1)
  mesh = parallel.make_mesh(1)

  def loss_fn(params, batch, rng):
    loss = jnp.sum(params['w'] ** 2)
    return jnp.where(batch['x'][0] >= 3, jnp.nan, loss), {}

  with pytest.raises(train.NonFiniteError, match='step 4: train/loss is nan'):
    train.fit(config, str(tmp_path), mesh=mesh, params={'w': jnp.ones(2)}, loss_fn=loss_fn,
              train_batch=lambda step: {'x': np.full((8,), step)})
  assert latest_state(tmp_path)[1] == 2


def test_read_metrics_leaves_out_a_line_still_being_written(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1, "x": 0.5}\n\n{"step": 2, "x": 0.2')
  assert read_metrics(str(tmp_path)) == [{'step': 1, 'x': 0.5}]
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('5}\n')
  assert read_metrics(str(tmp_path))[-1] == {'step': 2, 'x': 0.25}
