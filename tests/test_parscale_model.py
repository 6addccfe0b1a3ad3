"""ParScale model: P = 1 is the plain model, stream layout, aggregation math, prefixes, counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.models.transformer import Transformer, attention_mask
from papers.parscale import model as ps

CFG = dict(num_layers=2, d_model=8, num_heads=2, num_kv_heads=2, mlp_dim=16)
VOCAB = 11


@pytest.fixture(scope='module')
def tokens():
  return jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, (3, 6)), jnp.int32)


def _init(p, tokens, m=3, eps=0.1):
  model = ps.ParScaleLM(VOCAB, p, m, eps, model=CFG)
  return model, model.init(jax.random.key(0), tokens)


def test_one_stream_is_the_plain_model_bit_for_bit(tokens):
  model, params = _init(1, tokens)
  assert set(params['params']) == {'backbone'}
  plain = Transformer(VOCAB, **CFG)
  np.testing.assert_array_equal(plain.apply({'params': params['params']['backbone']}, tokens),
                                model.apply(params, tokens))


def test_backbone_init_is_the_same_for_every_p(tokens):
  _, one = _init(1, tokens)
  _, four = _init(4, tokens)
  jax.tree.map(np.testing.assert_array_equal, one['params']['backbone'],
               four['params']['backbone'])


def test_to_streams_is_stream_major():
  x = jnp.arange(6).reshape(2, 3)
  out = ps.to_streams(x, 3)
  assert out.shape == (6, 3)
  for p in range(3):
    for b in range(2):
      np.testing.assert_array_equal(out[p * 2 + b], x[b])


def test_interleaved_concat_feature_index_is_h_times_p_plus_p():
  p_, b_, s_, h_ = 3, 2, 1, 4
  p, b, s, h = np.meshgrid(*map(np.arange, (p_, b_, s_, h_)), indexing='ij')
  hidden = jnp.asarray(100 * h + 10 * b + p, jnp.float32)
  c = np.asarray(ps.interleave_streams(hidden))
  for hh in range(h_):
    for pp in range(p_):
      expected = 100 * hh + 10 * np.arange(b_)[:, None] + pp
      np.testing.assert_array_equal(c[:, :, hh * p_ + pp], expected)


def test_smoothing():
  w = jnp.array([[1.0, 0.0], [0.3, 0.7]])
  np.testing.assert_allclose(ps.smooth(w, 0.1), [[0.95, 0.05], [0.32, 0.68]], rtol=1e-6)


def test_aggregate_matches_hand_computation():
  rng = np.random.default_rng(1)
  p, b, s, h = 2, 1, 2, 3
  hidden = rng.normal(size=(p, b, s, h)).astype(np.float32)
  params = {'w1': rng.normal(size=(p * h, h)).astype(np.float32),
            'b1': rng.normal(size=h).astype(np.float32),
            'w2': rng.normal(size=(h, p)).astype(np.float32),
            'b2': rng.normal(size=p).astype(np.float32)}
  mixed, weights = ps.aggregate(jnp.asarray(hidden), params, 0.1)
  for t in range(s):
    c = np.array([hidden[pp, 0, t, hh] for hh in range(h) for pp in range(p)])
    a = c @ params['w1'] + params['b1']
    z = (a / (1 + np.exp(-a))) @ params['w2'] + params['b2']
    w = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    w = w * 0.9 + 0.05
    np.testing.assert_allclose(weights[0, t], w, rtol=1e-5)
    np.testing.assert_allclose(mixed[0, t], w @ hidden[:, 0, t], rtol=1e-5, atol=1e-6)


def test_aggregate_uniform_when_scores_are_equal():
  hidden = jnp.asarray(np.random.default_rng(2).normal(size=(4, 2, 3, 5)), jnp.float32)
  params = {'w1': jnp.ones((20, 5)), 'b1': jnp.zeros(5), 'w2': jnp.zeros((5, 4)),
            'b2': jnp.zeros(4)}
  mixed, weights = ps.aggregate(hidden, params, 0.1)
  np.testing.assert_allclose(weights, 0.25, rtol=1e-6)
  np.testing.assert_allclose(mixed, hidden.mean(0), rtol=1e-5, atol=1e-6)


def test_prefix_mask_every_query_sees_all_prefix_slots_then_causal():
  mask = np.asarray(attention_mask(4, None, True, num_prefix=2))[0, 0, 0]
  assert mask.shape == (4, 6)
  assert mask[:, :2].all()
  np.testing.assert_array_equal(mask[:, 2:], np.tril(np.ones((4, 4), bool)))


def test_prefixes_are_visible_at_position_zero_and_causality_holds(tokens):
  model, params = _init(2, tokens)
  base = model.apply(params, tokens)
  bumped = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 1.0 if 'prefix_v_0' in jax.tree_util.keystr(path) else x, params)
  assert np.abs(model.apply(bumped, tokens)[:, 0] - base[:, 0]).max() > 1e-4
  changed = tokens.at[:, -1].set((tokens[:, -1] + 1) % VOCAB)
  np.testing.assert_allclose(model.apply(params, changed)[:, :-1], base[:, :-1], atol=1e-6)


def test_stream_p_of_the_batched_pass_is_the_backbone_with_prefix_p(tokens):
  model, params = _init(3, tokens)
  b = tokens.shape[0]
  hidden = model.apply(params, ps.to_streams(tokens, 3), method=lambda m, t: m.backbone(
      t, prefix_kv=m.prefix_kv(b), return_hidden=True))
  plain = Transformer(VOCAB, **CFG)
  for p in range(3):
    kv = [tuple(jnp.repeat(params['params'][f'prefix_{n}_{i}'][p].transpose(1, 0, 2)[None], b, 0)
                for n in 'kv') for i in range(2)]
    alone = plain.apply({'params': params['params']['backbone']}, tokens, prefix_kv=kv,
                        return_hidden=True)
    np.testing.assert_allclose(hidden[p * b:(p + 1) * b], alone, rtol=1e-5, atol=1e-6)


def test_streams_start_different(tokens):
  _, params = _init(4, tokens)
  k = np.asarray(params['params']['prefix_k_0'])
  assert k.shape == (4, 2, 3, 4)
  assert all(np.abs(k[i] - k[j]).max() > 1e-4 for i in range(4) for j in range(i))


def test_parameter_count(tokens):
  d, m, layers, kv, hd = 8, 3, 2, 2, 4
  _, one = _init(1, tokens, m)
  n1 = ps.count_parameters(one)
  # per layer: q, k, v (+bias) , o, gate/up/down, two norms; final norm
  per_layer = 3 * (d * d + d) + d * d + 3 * d * 16 + 2 * d
  assert n1 == {'total': VOCAB * d + layers * per_layer + d, 'embedding': VOCAB * d,
                'non_embedding': layers * per_layer + d}
  for p in (2, 4):
    _, params = _init(p, tokens, m)
    extra = 2 * layers * p * kv * m * hd + (p * d * d + d + d * p + p)
    assert ps.count_parameters(params)['non_embedding'] == n1['non_embedding'] + extra


def test_gradients_reach_every_stream_and_the_aggregator(tokens):
  model, params = _init(2, tokens)

  def loss(params):
    return model.apply(params, tokens).std()

  grads = jax.grad(loss)(params)['params']
  for name in ('prefix_k_0', 'prefix_v_1'):
    assert all(np.abs(np.asarray(grads[name][p])).max() > 0 for p in range(2))
  assert np.abs(np.asarray(grads['aggregator']['w2'])).max() > 0


def test_weight_entropy_and_stream_diversity_by_hand():
  w = jnp.array([[[0.5, 0.5], [1.0, 0.0]]])  # two tokens: ln 2 and 0
  np.testing.assert_allclose(ps.weight_entropy(w), np.log(2) / 2, rtol=1e-6)
  h = jnp.array([[[[3.0, 4.0]]], [[[0.0, 0.0]]]])  # P=2, one token: |h0 - h1| = 5, mean |h| 2.5
  np.testing.assert_allclose(ps.stream_diversity(h), 2.0, rtol=1e-6)
  assert float(ps.stream_diversity(h[:1])) == 0.0


def test_prefix_at_p1_is_the_backbone_with_its_prefix_and_no_aggregator(tokens):
  model = ps.ParScaleLM(VOCAB, 1, 3, model=CFG, prefix_at_p1=True)
  params = model.init(jax.random.key(0), tokens)
  assert 'prefix_k_0' in params['params'] and 'aggregator' not in params['params']
  b = tokens.shape[0]
  kv = [tuple(jnp.repeat(params['params'][f'prefix_{n}_{i}'].transpose(0, 2, 1, 3), b, 0)
              for n in 'kv') for i in range(2)]
  plain = Transformer(VOCAB, **CFG)
  np.testing.assert_allclose(
      model.apply(params, tokens),
      plain.apply({'params': params['params']['backbone']}, tokens, prefix_kv=kv), rtol=1e-6)


def test_zero_aggregator_out_starts_with_equal_weights(tokens):
  model = ps.ParScaleLM(VOCAB, 4, 3, eps=0.1, model=CFG, zero_aggregator_out=True)
  params = model.init(jax.random.key(0), tokens)
  hidden, weights, mixed = model.apply(params, tokens, method=ps.ParScaleLM.streams)
  np.testing.assert_allclose(weights, 0.25, rtol=1e-6)
  np.testing.assert_allclose(mixed, hidden.mean(0), rtol=1e-5, atol=1e-6)


def test_snippet_prefix_is_exactly_the_snippet_read_before_the_input(tokens):
  """A stream whose prefix slots hold `snippet_kv` of a snippet computes, at the input's
  positions, what the backbone computes on snippet + input (positions -L..S-1): every layer's
  snippet keys and values depend on the snippet alone (causal), and RoPE scores depend only on
  position differences."""
  plain = Transformer(VOCAB, **CFG)
  params = plain.init(jax.random.key(3), tokens)
  snippet = jnp.asarray(np.random.default_rng(5).integers(0, VOCAB, (tokens.shape[0], 4)),
                        jnp.int32)
  kv = ps.snippet_kv(plain, params, snippet)
  assert kv[0][0].shape == (tokens.shape[0], 2, 4, 4)  # [n, kv_heads, L, head_dim]
  prefix = [tuple(x.transpose(0, 2, 1, 3) for x in layer) for layer in kv]
  got = plain.apply(params, tokens, prefix_kv=prefix, return_hidden=True)
  both = jnp.concatenate([snippet, tokens], 1)
  positions = jnp.broadcast_to(jnp.arange(-4, tokens.shape[1]), both.shape)
  want = plain.apply(params, both, positions=positions, return_hidden=True)[:, 4:]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
