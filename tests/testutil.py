"""Small utilities shared by tests."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import orbax.checkpoint as ocp

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_main(*args: str, env: dict | None = None, timeout: float = 300,
             devices: int = 1) -> subprocess.CompletedProcess:
  """Runs `python -m common.main ARGS` as a user would; returns the finished process."""
  full_env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
                  **(env or {}))
  return subprocess.run([sys.executable, '-m', 'common.main', *args], cwd=ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


def latest_state(workdir: str | os.PathLike):
  """The raw (numpy) train state of the newest checkpoint in a workdir, and its step."""
  manager = ocp.CheckpointManager(pathlib.Path(workdir) / 'checkpoints')
  step = manager.latest_step()
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return restored['state'], step
