"""Test session setup: 8 simulated CPU devices, fast compiles and a persistent compilation cache.

Tests that are not about data parallelism pass `num_devices=1` (or build a 1-device mesh).
Every program, in subprocesses too (`testutil.xla_flags`), compiles with
`common.FAST_COMPILE_XLA_FLAGS`: the suite is compile-bound. A flag you set in XLA_FLAGS wins,
e.g. `--xla_backend_optimization_level=2` to test optimised programs.
"""

import os
import pathlib

import common

common.add_xla_flags('--xla_force_host_platform_device_count=8', *common.CPU_XLA_FLAGS,
                     *common.FAST_COMPILE_XLA_FLAGS)

import jax  # noqa: E402
import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
jax.config.update('jax_compilation_cache_dir', str(ROOT / '.cache' / 'jax'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


@pytest.fixture(scope='session')
def data_dir() -> pathlib.Path | None:
  """The shared data directory ($PAPERS_DATA_DIR), or None when it is not set."""
  path = os.environ.get('PAPERS_DATA_DIR')
  return pathlib.Path(path) if path and pathlib.Path(path).is_dir() else None
