"""The sweep runner: the one run path in-process and as `common.main` processes, finished runs
skipped, a killed reproduction resumed to the same results, and the watchdog."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from common import config as cfglib
from common import experiment, sweep
from tests.testutil import ROOT, xla_flags

ARMS = [sweep.Arm(f'lr{lr:g}', 'configs/quickstart.py:smoke',
                  {'optim.lr': lr, 'train.steps': 8, 'train.checkpoint_every': 2,
                   'train.log_every': 1, 'train.eval_every': 4})
        for lr in (3e-3, 1e-3)]


def _metrics(runs):
  return {arm: [r.metrics for r in rs] for arm, rs in runs.items()}


@pytest.mark.slow
def test_in_process_equals_common_main_processes_and_finished_runs_are_skipped(tmp_path):
  here = sweep.run_sweep(ARMS[:1], [0, 1], str(tmp_path / 'a'))
  os.environ['XLA_FLAGS'] = xla_flags(8)  # the subprocesses see this session's 8 devices
  there = sweep.run_sweep(ARMS[:1], [0, 1], str(tmp_path / 'b'), jobs=2)
  assert _metrics(here) == _metrics(there)
  run = here['lr0.003'][1]
  assert run.seed == 1 and run.command.startswith(
      'python -m common.main --config=configs/quickstart.py:smoke --config.optim.lr=0.003')
  steps, losses = run.history('train/loss')
  assert steps == list(range(1, 9)) and len(losses) == 8
  mtime = os.path.getmtime(os.path.join(run.workdir, experiment.RESULT))
  again = sweep.run_sweep(ARMS[:1], [0, 1], str(tmp_path / 'a'))  # nothing to train
  assert _metrics(again) == _metrics(here)
  assert os.path.getmtime(os.path.join(run.workdir, experiment.RESULT)) == mtime
  other = [sweep.Arm('lr0.003', ARMS[1].config, dict(ARMS[0].overrides, **{'optim.lr': 0.1}))]
  with pytest.raises(cfglib.ConfigError, match='finished run of another config'):
    sweep.run_sweep(other, [0], str(tmp_path / 'a'))


REPRODUCE = textwrap.dedent('''
    import sys
    sys.path.insert(0, {root!r})
    from common import stats, sweep
    from tests.test_sweep import ARMS

    def analyse(runs, quick, out):
      per_seed = sweep.metric(runs, 'bits_per_char')
      return {{'claims': [stats.compare('lr 3e-3 beats 1e-3', '-', per_seed, 'lr0.003', 'lr0.001',
                                       'a<b', metric='bits_per_char')]}}

    sweep.main('toy', 'Toy', lambda quick: ARMS, analyse, (0, 1, 2), sys.argv[1:])
''')


def _reproduce(script, workdir, out, stdout=subprocess.PIPE):
  env = {**os.environ, 'XLA_FLAGS': xla_flags(1)}
  return subprocess.Popen([sys.executable, str(script), f'--workdir={workdir}', f'--out={out}',
                           '--watchdog_s=300', '--jobs=2'], cwd=ROOT, env=env,
                          stdout=stdout, stderr=subprocess.STDOUT, text=True)


def _comparable(path):
  results = json.loads(path.read_text())
  return results['claims'], {arm: [r['metrics'] for r in rs]
                             for arm, rs in results['runs'].items()}


@pytest.mark.slow
def test_killed_reproduction_resumes_to_the_same_results(tmp_path):
  script = tmp_path / 'reproduce_toy.py'
  script.write_text(REPRODUCE.format(root=str(ROOT)))
  whole = _reproduce(script, tmp_path / 'whole', tmp_path / 'whole_out')
  out = whole.communicate(timeout=300)[0]
  assert whole.returncode == 0, out[-2000:]
  proc = _reproduce(script, tmp_path / 'killed', tmp_path / 'killed_out', subprocess.DEVNULL)
  middle = tmp_path / 'killed' / 'lr0.003' / 'seed_1' / 'metrics.jsonl'
  deadline = time.time() + 240
  while proc.poll() is None and time.time() < deadline:  # kill -9 in the middle of a run
    if middle.exists() and len(middle.read_text().splitlines()) >= 5:
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.02)
  assert proc.wait(timeout=60) == -signal.SIGKILL, 'the reproduction ended before the kill'
  # its run processes (two at once) end with it: no orphan remains
  orphans = lambda: subprocess.run(['pgrep', '-f', str(tmp_path / 'killed')],  # noqa: E731
                                   capture_output=True).stdout.split()
  deadline = time.time() + 60
  while orphans() and time.time() < deadline:
    time.sleep(0.2)
  assert not orphans()
  assert not (tmp_path / 'killed_out' / 'results.json').exists()  # written only at the end
  again = _reproduce(script, tmp_path / 'killed', tmp_path / 'killed_out')
  log = again.communicate(timeout=300)[0]
  assert again.returncode == 0, log[-2000:]
  assert 'resumed from step' in (tmp_path / 'killed' / 'lr0.003' / 'seed_1' / 'log.txt').read_text()
  assert _comparable(tmp_path / 'killed_out' / 'results.json') == \
      _comparable(tmp_path / 'whole_out' / 'results.json')


def test_watchdog_ends_a_stalled_run_with_one_line():
  code = ('from common import watchdog; import time; watchdog.start(0.5); '
          "watchdog.beat('eval', 7); time.sleep(30)")
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
  assert proc.returncode == 5
  (line,) = proc.stderr.strip().splitlines()
  assert line.startswith('error: no progress for') and 'in eval at step 7' in line


def test_overrides_name_existing_settings():
  config = sweep.load_config('configs/quickstart.py:smoke', {'optim.lr': 0.5})
  assert config.optim.lr == 0.5 and config.is_locked
  with pytest.raises(cfglib.ConfigError, match='override optim.lrr: no such setting'):
    sweep.load_config('configs/quickstart.py:smoke', {'optim.lrr': 0.5})


def test_clock_adds_the_time_of_every_invocation(tmp_path, monkeypatch):
  now = [100.0]
  monkeypatch.setattr(sweep.time, 'time', lambda: now[0])
  first = sweep.Clock(str(tmp_path / 'w'))
  now[0] += 5
  assert first.tick() == 5
  now[0] += 2
  assert first.tick() == 7  # a tick adds only the time since the last one
  now[0] += 50  # the process dies here: this time is lost
  second = sweep.Clock(str(tmp_path / 'w'))
  now[0] += 3
  assert second.tick() == 10
  assert json.loads((tmp_path / 'w' / 'wall_time.json').read_text()) == {'seconds': 10}


def test_clock_ticks_while_runs_are_in_flight(tmp_path):
  path = tmp_path / 'w' / 'wall_time.json'
  with sweep.Clock(str(tmp_path / 'w'), every_s=0.02) as clock:
    time.sleep(0.3)  # no run finishes, yet a kill -9 here keeps most of this time
    assert json.loads(path.read_text())['seconds'] > 0.1
  assert json.loads(path.read_text())['seconds'] == clock.total >= 0.3


def test_spec_joins_the_config_arguments_and_smoke_last():
  assert sweep.spec('configs/a.py') == 'configs/a.py'
  assert sweep.spec('configs/a.py', '', 'x,y') == 'configs/a.py:x,y'
  assert sweep.spec('configs/a.py', 'x', smoke=True) == 'configs/a.py:x,smoke'
  assert sweep.load_config(sweep.spec('configs/quickstart.py', smoke=True)).train.steps == \
      sweep.load_config('configs/quickstart.py:smoke').train.steps


def test_auto_jobs_runs_one_process_per_core_unless_seeds_are_vmapped(monkeypatch):
  monkeypatch.setattr(os, 'cpu_count', lambda: 2)
  assert sweep.auto_jobs(ARMS, quick=False) == 2
  assert sweep.auto_jobs(ARMS, quick=True) == 1
  vmapped = [dataclasses.replace(ARMS[0], vmap_seeds=True)]
  assert sweep.auto_jobs(ARMS + vmapped, quick=False) == 1
  monkeypatch.setattr(os, 'cpu_count', lambda: 64)
  assert sweep.auto_jobs(ARMS, quick=False) == sweep.MAX_AUTO_JOBS


def test_pilot_choice_sets_the_main_arms(tmp_path):
  """`sweep.Pilot`: its sweep runs first (in <workdir>/pilot, on the first seed), its choice is
  saved and reaches the main arms and the analysis, its runs are listed in results.json."""
  seen = {}

  def choose(runs, quick):
    best = min(runs, key=lambda n: runs[n][0].metrics['bits_per_char'])
    return {'lr': {'lr0.003': 3e-3, 'lr0.001': 1e-3}[best]}

  def arms(quick, choice):
    return [dataclasses.replace(ARMS[0], name='main',
                                overrides={**ARMS[0].overrides, 'optim.lr': choice['lr']})]

  def analyse(runs, quick, out, pilot, choice):
    seen.update(pilot=sorted(pilot), choice=choice, lr=runs['main'][0].command)
    return {'claims': []}

  out = sweep.main('toy', 'Toy', arms, analyse, (0, 1), [f'--workdir={tmp_path}', '--jobs=1',
                   f'--out={tmp_path / "out"}'], pilot=sweep.Pilot(lambda quick: ARMS, choose))
  saved = json.loads((tmp_path / 'pilot' / 'choice.json').read_text())
  assert saved == seen['choice'] and saved['lr'] in (3e-3, 1e-3)
  assert seen['pilot'] == ['lr0.001', 'lr0.003']
  assert f"--config.optim.lr={saved['lr']!r}" in seen['lr']
  assert sorted(out['runs']) == ['main', 'pilot/lr0.001', 'pilot/lr0.003']
  assert [r['seed'] for r in out['runs']['pilot/lr0.003']] == [0]
  assert [r['seed'] for r in out['runs']['main']] == [0, 1]


def test_run_processes_are_pinned_one_per_core():
  cores = sorted(os.sched_getaffinity(0))
  assert sweep.core_slots(1) is None and sweep.core_slots(len(cores) + 1) is None
  slots = sweep.core_slots(len(cores))
  assert [slots.get() for _ in cores] == cores  # one slot per core, in order
  out = subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'],
                       capture_output=True, text=True, check=True, preexec_fn=sweep.pin(cores[-1]))
  assert out.stdout.strip() == str([cores[-1]])
