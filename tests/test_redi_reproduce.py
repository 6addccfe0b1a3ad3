"""REDI's reproduction: a sweep run equals the same command run by hand; the preference stage
resumes after kill -9 with the uninterrupted run's numbers; the analysis turns per-seed results
into the claims the paper makes."""

import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import jax
import pytest

from common import experiment, sweep
from common.metrics import read_metrics, without_perf
from papers.redi import reproduce
from tests.testutil import ROOT, run_main, xla_flags

SFT_SMOKE = 'configs/redi/arith.py:sft,smoke'
# subprocesses see as many (simulated) CPU devices as this process: XLA:CPU splits the host's
# threads over them, and with another split a matmul may sum in another order
DEVICES = jax.device_count()


def _args(command: str, **replace: str) -> list[str]:
  """The `common.main` arguments of a sweep run's command, with some flags' values replaced."""
  args = shlex.split(command)[3:]  # after 'python -m common.main'
  for flag, value in replace.items():
    args = [f'--{flag}={value}' if a.startswith(f'--{flag}=') else a for a in args]
  return args


@pytest.mark.slow
def test_sweep_run_equals_its_command(tmp_path):
  """SFT and REDI (alpha 0.8) from it, in-process through `common.sweep.run_sweep`, then their
  commands as subprocesses in fresh workdirs: the same result.json metrics, bit for bit."""
  arms = {a.name: a for a in reproduce.arms(quick=True)}
  name = reproduce.arm_name('redi', reproduce.grid(quick=True)[0])
  runs = sweep.run_sweep([arms['sft'], arms[name]], [0], str(tmp_path / 'sweep'))
  sft, redi = runs['sft'][0], runs[name][0]
  assert f'--config.init_from={sft.workdir}' in redi.command
  proc = run_main(*_args(sft.command, workdir=tmp_path / 'sft'), devices=DEVICES)
  assert proc.returncode == 0, proc.stderr[-2000:]
  proc = run_main(*_args(redi.command, workdir=tmp_path / 'redi',
                         **{'config.init_from': tmp_path / 'sft'}), devices=DEVICES)
  assert proc.returncode == 0, proc.stderr[-2000:]
  for run, workdir in ((sft, 'sft'), (redi, 'redi')):
    assert experiment.read_result(run.workdir)['metrics'] == \
        experiment.read_result(str(tmp_path / workdir))['metrics']
  assert 'floor/untrained_test_pass1_greedy' in sft.metrics
  assert 'test_pass1_greedy' in redi.metrics


def _checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  folder = workdir / 'checkpoints'
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
      if folder.exists() else []


@pytest.mark.slow
def test_preference_stage_resumes_after_kill_9(tmp_path):
  """DPO from an SFT checkpoint, killed with SIGKILL after its first checkpoint, then rerun:
  the final metrics and the metrics file equal an uninterrupted run's."""
  sft = str(tmp_path / 'sft')
  experiment.train_and_evaluate(sweep.load_config(SFT_SMOKE), sft)
  steps = 12
  overrides = {'init_from': sft, 'train.steps': steps, 'train.checkpoint_every': 4,
               'train.eval_every': 4}
  dpo = 'configs/redi/arith.py:dpo,smoke'
  reference = str(tmp_path / 'reference')
  proc = run_main(*sweep.command(dpo, overrides, reference), devices=DEVICES)
  assert proc.returncode == 0, proc.stderr[-2000:]
  workdir = tmp_path / 'run'
  args = sweep.command(dpo, overrides, str(workdir))
  killed = subprocess.Popen([sys.executable, '-m', 'common.main', *args], cwd=ROOT,
                            env={**os.environ, 'XLA_FLAGS': xla_flags(DEVICES)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  while killed.poll() is None and not _checkpoint_steps(workdir):
    time.sleep(0.01)
  killed.send_signal(signal.SIGKILL)
  assert killed.wait(timeout=60) == -signal.SIGKILL, 'the run ended before it was killed'
  saved = _checkpoint_steps(workdir)
  assert saved and saved[-1] < steps and not (workdir / 'result.json').exists()
  resumed = run_main(*args, devices=DEVICES)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f'resumed from step {saved[-1]}' in resumed.stdout + resumed.stderr
  assert experiment.read_result(str(workdir))['metrics'] == \
      experiment.read_result(reference)['metrics']
  assert without_perf(read_metrics(str(workdir))) == without_perf(read_metrics(reference))


def _fake_runs(root: pathlib.Path, finals: dict[str, list[float]], sft_floor: float = 0.0,
               still_rising: str = '') -> dict[str, list[sweep.Run]]:
  """Runs with given final test pass@1 per seed and flat eval curves (`still_rising`: one arm
  whose curve climbs to its final value)."""
  runs = {}
  for arm, values in finals.items():
    runs[arm] = []
    for seed, v in enumerate(values):
      workdir = root / arm / f'seed_{seed}'
      workdir.mkdir(parents=True)
      curve = [v - 0.3, v - 0.2, v - 0.1, v] if arm == still_rising else [v] * 4
      keys = ('test_pass1_greedy', 'test_pass1_sampled', 'valid_pass1_greedy',
              'test_chosen_logp', 'test_rejected_logp')
      with open(workdir / 'metrics.jsonl', 'w') as f:
        for i, c in enumerate(curve):
          f.write(json.dumps({'step': 10 * (i + 1)} | {f'eval/{k}': c for k in keys}) + '\n')
      metrics = {k: v for k, v in zip(keys, [v] * 5, strict=True)}
      if arm == 'sft':
        metrics |= {'floor/untrained_test_pass1_greedy': sft_floor,
                    'floor/majority_answer_test_pass1': 0.0, 'data/train_problems': 6000,
                    'data/sft_examples': 5857, 'data/pref_pairs': 5058,
                    'data/teacher_accuracy': 0.6}
      runs[arm].append(sweep.Run(arm, seed, str(workdir), 'python -m common.main', metrics))
  return runs


def _verdicts(runs, out) -> dict[str, str]:
  analysis = reproduce.analyse(runs, quick=False, out=out)
  return {c['claim']: c['verdict'] for c in analysis['claims']}


def test_analysis_claims_on_hand_made_runs(tmp_path):
  """Rates picked on validation (here equal to test) and the verdicts."""
  def low(name):
    return reproduce.arm_name(name, reproduce.LR_GRID[0])

  def high(name):
    return reproduce.arm_name(name, reproduce.LR_GRID[1])

  finals = {'sft': [0.80, 0.82, 0.84],
            low('continued_sft'): [0.81, 0.83, 0.86], high('continued_sft'): [0.8] * 3,
            low('redi'): [0.85, 0.86, 0.90], high('redi'): [0.70, 0.72, 0.74],
            low('symmetric'): [0.3, 0.4, 0.35], high('symmetric'): [0.2] * 3,
            low('dpo'): [0.80, 0.86, 0.85], high('dpo'): [0.5] * 3,
            low('simpo'): [0.6, 0.65, 0.7], high('simpo'): [0.5, 0.5, 0.55]}
  runs = _fake_runs(tmp_path / 'a', finals)
  lo, hi = (f'{lr:g}' for lr in reproduce.LR_GRID)
  assert reproduce.pick_rates(runs, reproduce.LR_GRID) == dict.fromkeys(
      reproduce.STAGE2, reproduce.LR_GRID[0])
  verdicts = _verdicts(runs, tmp_path)
  beats = {text.removeprefix('REDI beats '): v for text, v in verdicts.items()}
  assert beats['the SFT checkpoint it starts from'] == 'reproduced'  # +0.05, +0.04, +0.06
  assert beats['DPO from the same SFT checkpoint'] == 'inconclusive'  # +0.05, +0, +0.05
  assert beats['SimPO from the same SFT checkpoint'] == 'reproduced'
  assert beats['continued SFT on the positives'] == 'reproduced'  # +0.04, +0.03, +0.04
  stable = {t.split(' ')[6].rstrip(':'): v for t, v in verdicts.items()
            if t.startswith('REDI is stable')}
  assert stable == {lo: 'reproduced', hi: 'contradicted'}  # 0.1 below SFT at the higher rate
  degrade = {(t.split(' ')[0], t.split(' ')[-1]): v for t, v in verdicts.items()
             if 'degrades' in t}
  assert degrade == {('symmetric', lo): 'reproduced', ('DPO', lo): 'inconclusive',
                     ('symmetric', hi): 'reproduced', ('DPO', hi): 'reproduced'}
  assert (tmp_path / 'pass_at_1.png').stat().st_size > 1000
  # an arm still improving at the end, or at its floor, leaves its claims untested
  verdicts = _verdicts(_fake_runs(tmp_path / 'c', finals, still_rising=low('redi')),
                       tmp_path)
  assert verdicts['REDI beats the SFT checkpoint it starts from'] == 'not tested'
  verdicts = _verdicts(_fake_runs(tmp_path / 'd', finals, sft_floor=0.79), tmp_path)
  assert verdicts['REDI beats the SFT checkpoint it starts from'] == 'not tested'
