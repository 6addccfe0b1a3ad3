"""Every paper-scale config builds, validates, and runs one step at a reduced size.

Convention for `configs/<paper>/paper_*.py`: `get_config('')` is the paper's headline setting
(for accelerators; never run here) and `get_config('tiny')` is the same experiment with the
same settings tree, shrunk to one step on a CPU. This test keeps them from rotting. Where the
experiment builds its mesh with `parallel.mesh_from_config`, the tiny step runs FSDP-sharded on
2 devices, as the paper config would on many.
"""

import importlib
import importlib.util
import inspect

import jax
import pytest

from common.quickstart import load_config
from tests.testutil import ROOT

PAPER_CONFIGS = sorted(ROOT.glob('configs/*/paper_*.py'))


def _keys(tree, prefix=''):
  out = set()
  for key, value in tree.items():
    out.add(prefix + key)
    if isinstance(value, dict):
      out |= _keys(value, f'{prefix}{key}.')
  return out


@pytest.mark.parametrize('path', PAPER_CONFIGS,
                         ids=[f'{p.parent.name}/{p.stem}' for p in PAPER_CONFIGS])
def test_paper_config_builds_and_steps(path, tmp_path):
  full, tiny = load_config(path, ''), load_config(path, 'tiny')
  assert path.read_text().lstrip().startswith('"""'), 'the docstring holds the paper numbers'
  assert tiny.experiment == full.experiment
  missing = _keys(full.to_dict()) ^ _keys(tiny.to_dict())
  assert not missing, f'tiny must shrink the paper config, not reshape it: {sorted(missing)}'
  try:
    spec = importlib.util.find_spec(full.experiment)
  except ModuleNotFoundError:  # its paper package is missing too
    spec = None
  if spec is None:  # a paper whose code has not landed
    pytest.skip(f'{full.experiment} does not exist')
  module = importlib.import_module(full.experiment)
  if hasattr(module, 'validate'):
    module.validate(full, 1)
    module.validate(tiny, 1)
  sharded = 'mesh_from_config' in inspect.getsource(module) and 'mesh' in tiny
  with tiny.unlocked():
    tiny.num_devices = 2 if sharded else 1
    if sharded:
      tiny.mesh.update(fsdp=2, fsdp_min_size=0)
  assert jax.device_count() >= tiny.num_devices
  module.train_and_evaluate(tiny, str(tmp_path / 'run'))
