"""Paper-scale memory: FSDP parameter/optimizer sharding and bf16 mixed precision."""

import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from common import config as cfglib
from common import lm, parallel, train
from common.models.transformer import Transformer
from common.quickstart import load_config
from tests.testutil import ROOT


def test_mesh_shapes_and_batch_sharding():
  assert parallel.make_mesh(8).axis_names == ('data',)  # unchanged default
  mesh = parallel.make_mesh(8, fsdp=4)
  assert dict(mesh.shape) == {'data': 2, 'fsdp': 4} and parallel.fsdp_size(mesh) == 4
  batch = parallel.shard_batch({'x': np.arange(16).reshape(8, 2)}, mesh)
  assert len({str(s.index) for s in batch['x'].addressable_shards}) == 8  # rows over both axes
  config = ml_collections.ConfigDict({'num_devices': 4, 'mesh': {'fsdp': 2}})
  assert dict(parallel.mesh_from_config(config).shape) == {'data': 2, 'fsdp': 2}
  assert parallel.mesh_from_config(ml_collections.ConfigDict({'num_devices': 2})).size == 2
  for bad in ({'num_devices': 8, 'mesh': {'fsdp': 3}}, {'num_devices': 16}):
    with pytest.raises(cfglib.ConfigError):
      parallel.mesh_from_config(ml_collections.ConfigDict(bad))


def test_fsdp_spec_picks_largest_divisible_dim():
  assert parallel.fsdp_spec((97, 32), 4, 0) == P(None, 'fsdp')  # vocab 97 not divisible
  assert parallel.fsdp_spec((64, 4, 8), 4, 0) == P('fsdp')
  assert parallel.fsdp_spec((8, 8), 4, 0) == P('fsdp')  # ties: the first
  assert parallel.fsdp_spec((3, 5), 4, 0) == P()
  assert parallel.fsdp_spec((64, 64), 4, 2 ** 14) == P()  # small leaves replicate
  assert parallel.fsdp_spec((), 4, 0) == P()
  assert parallel.fsdp_spec((64, 64), 1, 0) == P()


def _lm_config(fsdp: int, steps: int):
  config = load_config(ROOT / 'configs' / 'quickstart.py', 'smoke')
  config.train.update(steps=steps, checkpoint_every=2, eval_batches=1)
  config.num_devices = 8 if fsdp > 1 else 1
  config.mesh = ml_collections.ConfigDict({'fsdp': fsdp, 'fsdp_min_size': 0})
  return config


def test_fsdp_eight_devices_match_one_and_resume(tmp_path, monkeypatch):
  one = lm.train_and_evaluate(_lm_config(1, 4), str(tmp_path / 'one'))
  workdir = tmp_path / 'fsdp'
  lm.train_and_evaluate(_lm_config(4, 4), str(workdir))
  shutil.rmtree(workdir / 'checkpoints' / '4')  # resume the sharded state from step 2
  restore, starts = train.Checkpointer.restore_latest, []

  def recording_restore(self, target):
    state, start = restore(self, target)
    starts.append((start, [x.sharding.spec for x in jax.tree.leaves(state.params)]))
    return state, start

  monkeypatch.setattr(train.Checkpointer, 'restore_latest', recording_restore)
  sharded = lm.train_and_evaluate(_lm_config(4, 4), str(workdir))
  assert starts[0][0] == 2 and all('fsdp' in s for s in starts[0][1])
  assert int(sharded.state.step) == 4
  specs = [x.sharding.spec for x in jax.tree.leaves(sharded.state.params)]
  assert all('fsdp' in s for s in specs), specs
  mu = sharded.state.opt_state[1][0].mu  # clip -> adamw(scale_by_adam)
  for p, m in zip(jax.tree.leaves(sharded.state.params), jax.tree.leaves(mu), strict=True):
    assert p.sharding.spec == m.sharding.spec  # Adam moments sharded like their parameter
  kernel = sharded.state.params['params']['layer_0']['mlp']['up']['kernel']
  assert kernel.addressable_shards[0].data.size == kernel.size // 4  # 1/4 of it per device
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  jax.tree.map(close, jax.device_get(one.state.params), jax.device_get(sharded.state.params))
  close(one.eval_metrics['loss'], sharded.eval_metrics['loss'])


def test_bf16_compute_keeps_float32_master_weights():
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 50, (4, 17)), jnp.int32)
  states, losses, init = {}, {}, None
  for dtype in ('float32', 'bfloat16'):
    model = Transformer(vocab_size=50, num_layers=1, d_model=32, num_heads=4, mlp_dim=64,
                        dtype=dtype)
    params = jax.jit(model.init)(jax.random.key(0), tokens[:, :-1])  # float32 either way
    init = params if init is None else init
    jax.tree.map(np.testing.assert_array_equal, init, params)

    def loss_fn(params, batch, rng, model=model):
      del rng
      logits = model.apply(params, batch['tokens'][:, :-1])
      assert logits.dtype == jnp.float32 and params['params']['embed']['embedding'].dtype == (
          jnp.dtype(model.dtype))
      return lm.token_cross_entropy(logits, batch['tokens'][:, 1:]), {}

    tx = optax.adam(1e-2)
    step = jax.jit(train.make_train_step(loss_fn, tx, compute_dtype=dtype))
    states[dtype], metrics = step(train.init_state(params, tx, 0), {'tokens': tokens})
    losses[dtype] = float(metrics['loss'])
    assert metrics['loss'].dtype == jnp.float32
  mixed = states['bfloat16']
  assert all(x.dtype in (jnp.float32, jnp.int32)
             for x in jax.tree.leaves((mixed.params, mixed.opt_state)))
  np.testing.assert_allclose(losses['bfloat16'], losses['float32'], rtol=2e-2)
  # Adam's first step moves each weight by ~lr: both precisions agree on nearly every sign.
  delta = lambda s: np.concatenate([np.ravel(a - b) for a, b in zip(
      jax.tree.leaves(s.params), jax.tree.leaves(init), strict=True)])
  agree = np.mean(np.sign(delta(mixed)) == np.sign(delta(states['float32'])))
  assert agree > 0.95


def test_remat_blocks_same_parameters_and_gradients():
  kw = dict(vocab_size=31, num_layers=1, d_model=16, num_heads=4, num_kv_heads=2, mlp_dim=16)
  plain, remat = Transformer(**kw), Transformer(**kw, remat=True)
  tokens = jnp.arange(20).reshape(2, 10) % 31
  params = jax.jit(plain.init)(jax.random.key(0), tokens)
  shapes = jax.eval_shape(remat.init, jax.random.key(0), tokens)
  assert jax.tree.structure(params) == jax.tree.structure(shapes)
  prefix = [(jnp.ones((2, 3, 2, 4)), jnp.ones((2, 3, 2, 4)))]
  grad = lambda m: jax.grad(lambda p: m.apply(p, tokens, prefix_kv=prefix).sum())  # noqa: E731
  assert 'remat' in str(jax.make_jaxpr(grad(remat))(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               jax.jit(grad(plain))(params), jax.jit(grad(remat))(params))


def test_grad_accumulation_on_fsdp_mesh_matches_one_big_step():
  model = Transformer(vocab_size=40, num_layers=1, d_model=32, num_heads=4, mlp_dim=32)
  tokens = np.random.default_rng(1).integers(0, 40, (16, 9)).astype(np.int32)
  params = jax.jit(model.init)(jax.random.key(0), tokens[:1, :-1])

  def loss_fn(params, batch, rng):
    del rng
    logits = model.apply(params, batch['tokens'][:, :-1])
    return lm.token_cross_entropy(logits, batch['tokens'][:, 1:]), {}

  tx = optax.sgd(0.5)  # params move by lr * gradient: compares the gradients themselves
  one = jax.jit(train.make_train_step(loss_fn, tx))(
      train.init_state(params, tx, 0), {'tokens': tokens})
  mesh = parallel.make_mesh(8, fsdp=4)
  state = parallel.shard_params(train.init_state(params, tx, 0), mesh, min_size=0)
  step = jax.jit(train.make_train_step(loss_fn, tx, grad_accum_steps=2))
  accum = step(state, parallel.shard_batch({'tokens': tokens}, mesh))
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  close(one[1]['loss'], accum[1]['loss'])
  close(one[1]['grad_norm'], accum[1]['grad_norm'])
  jax.tree.map(close, jax.device_get(one[0].params), jax.device_get(accum[0].params))
  with pytest.raises(ValueError, match='micro-batches'):
    jax.jit(train.make_train_step(loss_fn, tx, grad_accum_steps=3))(
        train.init_state(params, tx, 0), {'tokens': tokens})
