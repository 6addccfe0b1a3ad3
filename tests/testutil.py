"""Small utilities shared by tests."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

import common

ROOT = pathlib.Path(__file__).resolve().parents[1]


def xla_flags(devices: int, fast_compile: bool = True) -> str:
  """This session's XLA_FLAGS for a subprocess, with `devices` simulated CPU devices; without
  conftest's `common.FAST_COMPILE_XLA_FLAGS` if not `fast_compile` (programs as users run them)."""
  drop = ('--xla_force_host_platform_device_count',
          *(() if fast_compile else (f.split('=')[0] for f in common.FAST_COMPILE_XLA_FLAGS)))
  given = [f for f in os.environ.get('XLA_FLAGS', '').split() if not f.startswith(drop)]
  return ' '.join([f'--xla_force_host_platform_device_count={devices}', *given])


def run_main(*args: str, env: dict | None = None, timeout: float = 300,
             devices: int = 1) -> subprocess.CompletedProcess:
  """Runs `python -m common.main ARGS` as a user would; returns the finished process."""
  full_env = {**os.environ, 'XLA_FLAGS': xla_flags(devices), **(env or {})}
  return subprocess.run([sys.executable, '-m', 'common.main', *args], cwd=ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


def latest_state(workdir: str | os.PathLike):
  """The train state of the newest checkpoint in a workdir as numpy arrays (whatever devices
  or processes wrote it), and its step."""
  step = ocp.CheckpointManager(pathlib.Path(workdir) / 'checkpoints').latest_step()
  path = pathlib.Path(workdir) / 'checkpoints' / str(step) / 'state'
  tree = ocp.PyTreeCheckpointHandler().metadata(path).tree
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree,
                          is_leaf=lambda x: hasattr(x, 'shape'))
  state = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
      restore_args=as_numpy))
  return state, step


def assert_sweep_run_equals_its_command(arm, seed: int, tmp_path):
  """Runs `arm` for `seed` through `common.sweep.run_sweep` in this process, then its recorded
  command through `python -m common.main` (seeing as many devices as this process) in another
  workdir; asserts the two `result.json` are identical and returns the sweep's Run."""
  import shlex

  from common import experiment, sweep
  run = sweep.run_sweep([arm], [seed], str(tmp_path / 'sweep'))[arm.name][0]
  args = [a for a in shlex.split(run.command)[3:] if not a.startswith('--workdir=')]
  proc = run_main(*args, f'--workdir={tmp_path / "main"}', devices=jax.device_count())
  assert proc.returncode == 0, proc.stderr[-3000:]
  here, there = experiment.read_result(run.workdir), experiment.read_result(tmp_path / 'main')
  assert here == there and here['metrics'] == run.metrics
  return run
