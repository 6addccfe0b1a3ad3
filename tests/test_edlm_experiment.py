"""EDLM training: 8 simulated devices == 1 device, and the smoke runs end to end."""

import jax
import numpy as np
import pytest

from common import experiment as run_path
from common import parallel
from common.config import ConfigError
from common.quickstart import load_config
from papers.edlm import experiment
from tests.testutil import ROOT, latest_state


def _config(arg='smoke'):
  return load_config(ROOT / 'configs' / 'edlm' / 'mdlm.py', arg)


def test_data_parallel_8_devices_equals_1():
  assert jax.device_count() == 8
  config = _config()
  vocab, mask_id, eps = 7, 7, config.diffusion.eps
  den = experiment.denoiser_model(config, vocab)
  net = experiment.energy_model(config, vocab)
  x0 = np.asarray(jax.random.randint(jax.random.key(0), (16, 12), 0, vocab))
  den_p = den.init(jax.random.key(1), x0[:1])
  e_p = experiment.init_energy_from_denoiser(net.init(jax.random.key(2), x0[:1], x0[:1]), den_p)
  key = jax.random.key(3)

  def losses(den_p, e_p, x0):
    mdlm = experiment.mdlm_loss(den, den_p, x0, key, mask_id, eps, 1e-3)
    nce = experiment.nce_batch_loss(net, e_p, den, den_p, x0, key, mask_id, eps, 1e-3)[0]
    return mdlm + nce

  step = jax.jit(jax.value_and_grad(losses, (0, 1)))
  out = {}
  for n in (1, 8):
    mesh = parallel.make_mesh(n)
    out[n] = jax.device_get(step(parallel.replicate(den_p, mesh), parallel.replicate(e_p, mesh),
                                 parallel.shard_batch(x0, mesh)))
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)  # noqa: E731
  jax.tree.map(close, out[1], out[8])


def test_energy_backbone_starts_from_the_denoiser():
  config = _config()
  den = experiment.denoiser_model(config, 7)
  net = experiment.energy_model(config, 7)
  x = np.zeros((1, 8), np.int32)
  den_p = jax.eval_shape(den.init, jax.random.key(0), x)
  e_init = jax.eval_shape(net.init, jax.random.key(1), x, x)
  e_p = experiment.init_energy_from_denoiser(e_init, den_p)
  assert jax.tree.structure(e_p['params']['backbone']) == jax.tree.structure(den_p['params'])
  assert jax.tree.map(lambda a: (a.shape, a.dtype), e_p) == jax.tree.map(
      lambda a: (a.shape, a.dtype), e_init)


def _run(tmp_path, name, arg='smoke', **runs):
  """A stage through the run path (`common.experiment`, which writes its config.json)."""
  config = _config(arg)
  config.num_devices = 1
  config.runs.update(runs)
  workdir = str(tmp_path / name)
  return run_path.train_and_evaluate(config, workdir), workdir


def test_nce_needs_a_denoiser_run(tmp_path):
  with pytest.raises(ConfigError, match='runs.denoiser'):
    _run(tmp_path, 'nce', 'smoke,nce')


@pytest.mark.slow
def test_nce_stage_starts_from_the_denoiser_run_and_keeps_it_frozen(tmp_path):
  den, den_dir = _run(tmp_path, 'denoiser')
  assert np.isfinite(den['nelbo_bits_per_char'])
  nce, nce_dir = _run(tmp_path, 'nce', 'smoke,nce', denoiser=den_dir)
  assert 0 <= nce['accuracy'] <= 1 and np.isfinite(nce['loss'])
  trained = latest_state(nce_dir)[0]['params']
  jax.tree.map(np.testing.assert_array_equal, trained['denoiser'],
               latest_state(den_dir)[0]['params'])
  assert (jax.tree.structure(trained['energy']['params']['backbone'])
          == jax.tree.structure(trained['denoiser']['params']))
  ar, ar_dir = _run(tmp_path, 'ar', 'smoke,ar')
  assert np.isfinite(ar['bits_per_char'])
  with pytest.raises(ConfigError, match="is a 'ar' run"):
    _run(tmp_path, 'nce2', 'smoke,nce', denoiser=ar_dir)
