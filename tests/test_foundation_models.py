"""The shared transformer: masks, prefixes, GQA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.models.convnet import ConvNet
from common.models.transformer import Transformer, attention_mask, rope

TOKENS = jnp.array([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])


@pytest.fixture(scope='module')
def causal():
  model = Transformer(vocab_size=11, num_layers=2, d_model=32, num_heads=4, num_kv_heads=2,
                      mlp_dim=64)
  return model, model.init(jax.random.key(0), TOKENS)


def test_causal_logits_ignore_future_tokens(causal):
  model, params = causal
  a = model.apply(params, TOKENS)
  b = model.apply(params, TOKENS.at[:, 4].set(9))
  assert a.shape == (2, 6, 11)
  np.testing.assert_array_equal(a[:, :4], b[:, :4])
  assert np.abs(a[:, 4:] - b[:, 4:]).max() > 1e-3


def test_bidirectional_sees_every_token():
  model = Transformer(vocab_size=11, num_layers=1, d_model=16, num_heads=2, mlp_dim=32,
                      causal=False)
  params = model.init(jax.random.key(0), TOKENS)
  a = model.apply(params, TOKENS)
  b = model.apply(params, TOKENS.at[:, 5].set(9))
  assert np.abs(a[:, 0] - b[:, 0]).max() > 1e-4


def test_kv_mask_hides_padding():
  model = Transformer(vocab_size=11, num_layers=1, d_model=16, num_heads=2, mlp_dim=32,
                      causal=False)
  params = model.init(jax.random.key(0), TOKENS)
  mask = jnp.array([[1, 1, 1, 1, 0, 0]] * 2, bool)
  a = model.apply(params, TOKENS, kv_mask=mask)
  b = model.apply(params, TOKENS.at[:, 4:].set(0), kv_mask=mask)
  np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-6)


def test_attention_mask_prefix_slots_always_visible():
  mask = attention_mask(3, None, causal=True, num_prefix=2)[0, 0, 0]
  expected = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
  np.testing.assert_array_equal(mask, expected)


def test_prefix_kv_changes_outputs_and_zero_values_keep_shapes(causal):
  model, params = causal
  kv = [(jnp.zeros((2, 3, 2, 8)), jnp.ones((2, 3, 2, 8)))] * 2
  out = model.apply(params, TOKENS, prefix_kv=kv)
  assert out.shape == (2, 6, 11)
  assert np.abs(out - model.apply(params, TOKENS)).max() > 1e-4


@pytest.mark.parametrize('inputs', ['plain', 'kv_mask', 'prefix_kv'])
def test_causal_chunks_equal_one_block(inputs):
  """Causal attention per block of 4 queries (keys up to the block's end) is the same model:
  equal loss and gradients to one [S, T] block, with padding and ParScale prefix slots."""
  tokens = jax.random.randint(jax.random.key(0), (3, 12), 0, 11)
  kwargs = {'kv_mask': jnp.arange(12)[None] < jnp.array([[12], [7], [2]])} if inputs == 'kv_mask' \
      else {'prefix_kv': [tuple(jax.random.normal(jax.random.key(i), (2, 3, 5, 2, 8)))
                          for i in range(2)]} if inputs == 'prefix_kv' else {}
  one = Transformer(vocab_size=11, num_layers=2, d_model=32, num_heads=4, num_kv_heads=2,
                    mlp_dim=64, causal_chunk=0)
  params = one.init(jax.random.key(1), tokens, **kwargs)

  def loss_and_grads(model):
    return jax.value_and_grad(lambda p: (model.apply(p, tokens, **kwargs) ** 2).mean())(params)

  (l0, g0), (l1, g1) = loss_and_grads(one), loss_and_grads(one.clone(causal_chunk=4))
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g1, g0)


def test_rope_is_relative():
  """<rope(q, i), rope(k, j)> depends only on i - j."""
  q, k = jax.random.normal(jax.random.key(1), (2, 1, 1, 1, 8))
  dot = lambda i, j: jnp.sum(rope(q, jnp.array([[i]]), 1e4) * rope(k, jnp.array([[j]]), 1e4))
  np.testing.assert_allclose(dot(5, 2), dot(13, 10), rtol=1e-5)


def test_hidden_and_unembed_compose(causal):
  model, params = causal
  hidden = model.apply(params, TOKENS, return_hidden=True)
  np.testing.assert_allclose(model.apply(params, hidden, method=model.unembed),
                             model.apply(params, TOKENS), atol=1e-6)


def test_convnet_shapes():
  net = ConvNet(features=(8, 16), num_outputs=5)
  x = jnp.zeros((3, 28, 28, 1))
  params = net.init(jax.random.key(0), x)
  assert net.apply(params, x).shape == (3, 5)
  stages = net.apply(params, x, return_stages=True)
  assert [s.shape for s in stages] == [(3, 28, 28, 8), (3, 14, 14, 16)]
