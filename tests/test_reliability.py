"""Fault tolerance: kill/preempt and resume exactly (supervised and RL runs), multi-process ==
one process, disk failure."""

import json
import os
import signal
import socket
import subprocess
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import parallel, train
from common.checkpoint import CheckpointWriteError
from common.metrics import MetricWriter, read_metrics, without_perf
from tests.test_foundation_train import smoke_config
from tests.testutil import ROOT, latest_state, run_main, xla_flags

CONFIGS = {  # a language model and a paper's supervised run (UNPG on Omniglot)
    'quickstart': 'configs/quickstart.py:smoke',
    'unpg': 'configs/unpg/omniglot.py:arcface,unpg,smoke',
}


def quickstart_args(workdir, steps=12, config='quickstart'):
  return (f'--config={CONFIGS[config]}', f'--workdir={workdir}',
          f'--config.train.steps={steps}', '--config.train.checkpoint_every=4',
          '--config.train.log_every=1', '--config.train.keep_checkpoints=3')


def _start(args, devices=1, extra_env=None):
  env = {**os.environ, 'XLA_FLAGS': xla_flags(devices), **(extra_env or {})}
  return subprocess.Popen([sys.executable, '-m', 'common.main', *args], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def interrupt_at(args, workdir, sig, min_step: int) -> subprocess.Popen:
  """Runs the command and sends `sig` once `min_step` steps are logged."""
  proc = _start(args)
  path = workdir / 'metrics.jsonl'
  while proc.poll() is None:
    if path.exists() and (rows := read_metrics(workdir)) and rows[-1]['step'] >= min_step:
      proc.send_signal(sig)
      break
  proc.wait(timeout=120)
  return proc


@pytest.fixture(scope='module')
def references(tmp_path_factory):
  """Uninterrupted runs, made once per config."""
  cache = {}

  def get(config):
    if config not in cache:
      workdir = tmp_path_factory.mktemp(f'reference_{config}')
      proc = run_main(*quickstart_args(workdir, config=config))
      assert proc.returncode == 0, proc.stderr[-2000:]
      cache[config] = workdir
    return cache[config]

  return get


@pytest.mark.slow
@pytest.mark.parametrize('config, signals', [('quickstart', (signal.SIGKILL,)),
                                             ('unpg', (signal.SIGKILL, signal.SIGTERM))])
def test_interrupted_run_resumes_bit_identical(tmp_path, references, config, signals, data_dir):
  """SIGKILL loses the steps since the last checkpoint; SIGTERM checkpoints the current step
  and exits 0. Interrupted at random steps (as often as `signals` says), the resumed run ends
  with the uninterrupted run's parameters, optimizer state, PRNG and metrics file (no
  duplicated or missing steps)."""
  if config != 'quickstart' and data_dir is None:
    pytest.skip('PAPERS_DATA_DIR is not set')
  reference = references(config)
  args = quickstart_args(tmp_path, config=config)
  seed = int.from_bytes(os.urandom(4), 'little')
  stops = sorted(np.random.default_rng(seed).choice(np.arange(1, 10), len(signals), False))
  last = 0
  for sig, stop in zip(signals, stops, strict=True):
    proc = interrupt_at(args, tmp_path, sig, max(int(stop), last + 1))
    if sig == signal.SIGKILL:
      assert proc.returncode == -signal.SIGKILL, f'seed {seed}'
    else:
      assert proc.returncode == 0, f'seed {seed}: ' + proc.stderr.read()[-2000:]
      _, step = latest_state(tmp_path)
      assert step == read_metrics(tmp_path)[-1]['step'] < 12, f'seed {seed}'  # saved there
    last = read_metrics(tmp_path)[-1]['step']
  resumed = run_main(*args)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  (a, step_a), (b, step_b) = latest_state(reference), latest_state(tmp_path)
  assert step_a == step_b == 12
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert without_perf(read_metrics(reference)) == without_perf(read_metrics(tmp_path)), \
      f'seed {seed}'


PROPS_ARGS = ('--config=configs/props/cartpole.py:smoke', '--config.loop.n=64',
              '--config.loop.m=32', '--config.checkpoint_every=1', '--config.keep_checkpoints=2')


@pytest.mark.slow
def test_props_interrupted_several_times_resumes_bit_identical(tmp_path):
  """The jitted RL loop (PROPS, 2 vmapped seeds, 8 blocks of 64 env steps): SIGTERM at one
  random block and SIGKILL at a later random one, then resume; the final carry (agent,
  optimiser, behaviour and normaliser states, buffer, env state, PRNG) and the metrics file
  equal the uninterrupted run's."""
  reference = tmp_path / 'reference'
  proc = run_main(*PROPS_ARGS, f'--workdir={reference}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  summary = json.loads((reference / 'result.json').read_text())['metrics']
  assert summary['arm'] == 'props' and len(read_metrics(reference)) == 9  # before + 8 blocks
  assert 0.0 < summary['auc'] <= 500.0 and summary['sampling_error'] >= 0.0
  seed = int.from_bytes(os.urandom(4), 'little')
  rng = np.random.default_rng(seed)
  term_at, kill_at = int(rng.integers(1, 4)) * 64, int(rng.integers(4, 7)) * 64
  workdir = tmp_path / 'run'
  args = (*PROPS_ARGS, f'--workdir={workdir}')
  proc = interrupt_at(args, workdir, signal.SIGTERM, term_at)
  assert proc.returncode == 0, f'seed {seed}: ' + proc.stderr.read()[-2000:]
  _, step = latest_state(workdir)
  assert term_at <= step == read_metrics(workdir)[-1]['step'] < 512, f'seed {seed}'
  proc = interrupt_at(args, workdir, signal.SIGKILL, kill_at)
  assert proc.returncode == -signal.SIGKILL, f'seed {seed}'
  _, killed_step = latest_state(workdir)
  resumed = run_main(*args)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f'resumed from env step {killed_step} ' in resumed.stdout and killed_step >= step
  assert json.loads((workdir / 'result.json').read_text())['metrics'] == summary
  (a, step_a), (b, step_b) = latest_state(reference), latest_state(workdir)
  assert step_a == step_b == 512
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert without_perf(read_metrics(reference)) == without_perf(read_metrics(workdir)), \
      f'seed {seed}'


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, data_dir):
  """UNPG (whose loss pairs features across the global batch) on 2 processes x 2 CPU devices
  (jax.distributed on 127.0.0.1) == 1 process x 4 devices."""
  if data_dir is None:
    pytest.skip('PAPERS_DATA_DIR is not set')
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  args = quickstart_args(tmp_path / 'multi', steps=4, config='unpg')
  # optimised programs, as users run them: unoptimised ones differ more between the two
  # topologies (reduction order), beyond the tolerances below
  env = lambda devices: {'XLA_FLAGS': xla_flags(devices, fast_compile=False)}  # noqa: E731
  procs = [_start([*args, f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                   f'--process_id={i}'], devices=2, extra_env=env(2)) for i in range(2)]
  for p in procs:
    try:
      assert p.wait(timeout=240) == 0, p.stderr.read()[-2000:]
    finally:
      p.kill()  # after jax.distributed.initialize, JAX handles SIGTERM itself
  single = run_main(*quickstart_args(tmp_path / 'single', steps=4, config='unpg'), env=env(4))
  assert single.returncode == 0, single.stderr[-2000:]
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # noqa: E731
  multi_rows, single_rows = (without_perf(read_metrics(tmp_path / d)) for d in ('multi', 'single'))
  assert [r['step'] for r in multi_rows] == [r['step'] for r in single_rows]
  close([r.get('train/loss', 0) for r in multi_rows], [r.get('train/loss', 0) for r in single_rows])
  # Adam divides by sqrt(v): reduction-order differences of ~1e-7 reach ~1e-6 in parameters
  close_params = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)  # noqa: E731
  jax.tree.map(close_params, latest_state(tmp_path / 'multi')[0],
               latest_state(tmp_path / 'single')[0])


def test_disk_failure_while_checkpointing_keeps_the_previous_one(tmp_path):
  config = smoke_config(steps=6, checkpoint_every=2, log_every=1)
  loss_fn = lambda params, batch, rng: (jnp.sum((params['w'] - batch['x'].mean()) ** 2), {})
  real_save = train.Checkpointer.save

  def failing_save(self, step, state):
    if step >= 4:
      self.manager.save = mock.Mock(side_effect=OSError(28, 'No space left on device'))
    return real_save(self, step, state)

  with mock.patch.object(train.Checkpointer, 'save', failing_save), \
      pytest.raises(CheckpointWriteError, match='No space left on device.*checkpoint 2 is intact'):
    train.fit(config, str(tmp_path), mesh=parallel.make_mesh(1), params={'w': jnp.ones(2)},
              loss_fn=loss_fn, train_batch=lambda step: {'x': np.full((8,), float(step))})
  state, step = latest_state(tmp_path)
  assert step == 2 and state['step'] == 2


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_saves_both_at_one_step(tmp_path):
  """jax.distributed's preemption service: SIGTERM to process 1 only; both processes save the
  same step and exit 0, and rerunning both finishes the run with every step logged once."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  args = [*quickstart_args(tmp_path, steps=200), '--config.train.checkpoint_every=1000',
          f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2']
  procs = [_start([*args, f'--process_id={i}']) for i in range(2)]
  try:
    while procs[1].poll() is None:
      if (rows := read_metrics(tmp_path)) and rows[-1]['step'] >= 3:
        procs[1].send_signal(signal.SIGTERM)
        break
    codes = [p.wait(timeout=240) for p in procs]
    assert codes == [0, 0], [p.stderr.read()[-2000:] for p in procs]
  finally:
    for p in procs:
      p.kill()
  step = latest_state(tmp_path)[1]
  assert 3 <= step < 200 and read_metrics(tmp_path)[-1]['step'] == step
  assert not (tmp_path / 'result.json').exists()  # preempted: not finished
  procs = [_start([*args, f'--process_id={i}']) for i in range(2)]
  try:
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
  finally:
    for p in procs:
      p.kill()
  assert [r['step'] for r in read_metrics(tmp_path) if 'train/loss' in r] == list(range(1, 201))
  assert (tmp_path / 'result.json').exists()


def test_metrics_file_cut_mid_line_reads_and_resumes(tmp_path):
  """A kill (or a reader racing the writer) can leave the last record half written: readers
  skip it and a resume keeps the complete records up to its step."""
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a": 2.0}\n{"step": 3, "a"')
  assert read_metrics(str(tmp_path)) == [{'step': 1, 'a': 1.0}, {'step': 2, 'a': 2.0}]
  MetricWriter(str(tmp_path), resume_step=2, enabled=True).close()
  assert path.read_text() == '{"step": 1, "a": 1.0}\n{"step": 2, "a": 2.0}\n'
