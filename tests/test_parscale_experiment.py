"""ParScale experiment: data-parallel equality, the frozen-backbone trainer, end to end."""

import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from common import lm
from common.quickstart import load_config
from papers.parscale import experiment as ex
from papers.parscale.model import ParScaleLM
from tests.testutil import ROOT, xla_flags


def smoke_config():
  config = load_config(ROOT / 'configs' / 'parscale' / 'char_lm.py', 'smoke')
  config.model.update(d_model=8, mlp_dim=16)  # smaller still: compile time dominates
  config.data.seq_len = 16
  return config


def test_eight_devices_match_one(tmp_path):
  assert jax.device_count() == 8
  results = {}
  for n in (1, 8):
    config = smoke_config()
    config.num_devices = n
    results[n] = ex.train_and_evaluate(config, str(tmp_path / str(n)))
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)  # noqa: E731
  jax.tree.map(close, jax.device_get(results[1].state.params),
               jax.device_get(results[8].state.params))
  close(results[1].eval_metrics['loss'], results[8].eval_metrics['loss'])
  assert 'prefix_k_0' in results[1].state.params['params']


def test_validate_rejects_bad_eps():
  config = smoke_config()
  config.parscale.eps = 1.0
  with pytest.raises(Exception, match='eps'):
    ex.validate(config, 1)


def test_frozen_backbone_run_trains_only_prefixes_and_aggregator():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 7, 500).astype(np.int32)
  valid = lm.windows(ids, 8)[:4]
  model = ParScaleLM(7, 2, 2, model=dict(num_layers=1, d_model=8, num_heads=2, mlp_dim=16))
  params = ex.init_params(model, [0, 1], 8)
  optim = ml_collections.ConfigDict(dict(name='adamw', lr=1e-2, schedule='constant',
                                         warmup_steps=0, weight_decay=0.1, grad_clip=1.0))
  run = ex.make_run(model, ids, valid, seq_len=8, batch_size=4, steps=3, optim=optim,
                    freeze_backbone=True, eval_chunk=4)
  trained, losses, valid_loss = run(params, ex.data_keys([0, 1]))
  assert losses.shape == (2, 3) and valid_loss.shape == (2,)
  jax.tree.map(np.testing.assert_array_equal, params['params']['backbone'],
               trained['params']['backbone'])
  assert np.abs(trained['params']['prefix_k_0'] - params['params']['prefix_k_0']).max() > 0
  assert np.abs(trained['params']['aggregator']['w1']
                - params['params']['aggregator']['w1']).max() > 0


@pytest.mark.slow
def test_reproduce_quick_end_to_end(tmp_path):
  env = dict(os.environ, XLA_FLAGS=xla_flags(1),
             JAX_COMPILATION_CACHE_DIR=str(ROOT / '.cache' / 'jax'))
  proc = subprocess.run([sys.executable, '-m', 'papers.parscale.reproduce', '--quick',
                         f'--out={tmp_path}'], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / 'results.json').exists() and (tmp_path / 'scaling.png').exists()
