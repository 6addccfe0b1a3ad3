"""ParScale at paper scale: the official size grid's parameter counts, and the released
`qwen2_parscale` checkpoint format against an independent numpy forward pass."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from common import hf
from common.quickstart import load_config
from papers.parscale import experiment as ex
from papers.parscale import hf as ps_hf
from papers.parscale import scaling_law as sl
from papers.parscale.model import count_parameters
from tests.testutil import ROOT

SIZES = ('0.5b', '0.7b', '1.1b', '1.6b', '2.8b', '4.4b')


@pytest.mark.parametrize('p_index,p', enumerate((1, 2, 4, 8)))
def test_paper_grid_has_the_official_parameter_counts(p_index, p):
  """Every (size, P) of configs/parscale/paper_pile.py has the N of the official
  parametric_fit.py (non-embedding, prefixes and aggregator included), exactly."""
  for size_index, size in enumerate(SIZES):
    config = load_config(ROOT / 'configs' / 'parscale' / 'paper_pile.py', f'{size},p{p}')
    model = ex.make_model(config, vocab_size=8)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
    assert count_parameters(shapes)['non_embedding'] == sl.PAPER_N[p_index, size_index], size


def test_paper_grid_rejects_two_sizes():
  with pytest.raises(ValueError, match='at most one of'):
    load_config(ROOT / 'configs' / 'parscale' / 'paper_pile.py', '0.5b,1.6b')


# --- an independent reference: the qwen2_parscale forward pass in numpy -------------------------

def _rms(x, w, eps):
  return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope(x, theta):  # x [S, heads, hd]; HF rotate_half with inv_freq = theta^(-2i/hd)
  s, _, hd = x.shape
  inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
  ang = np.arange(s)[:, None] * inv[None]
  cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(
      np.concatenate([ang, ang], -1))[:, None]
  rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
  return x * cos + rot * sin


def reference_logits(t, cfg, ids):
  """Logits [S, vocab] of one sequence from the checkpoint's tensors `t` and config `cfg`."""
  d, heads, kv = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads']
  hd, p, m, eps = d // heads, cfg['parscale_n'], cfg['parscale_n_tokens'], cfg[
      'parscale_attn_smooth']
  s, e = len(ids), cfg['rms_norm_eps']
  silu = lambda a: a / (1 + np.exp(-a))  # noqa: E731
  finals = []
  for stream in range(p):
    h = t['model.embed_tokens.weight'][ids]
    for i in range(cfg['num_hidden_layers']):
      pre = f'model.layers.{i}.'
      a = _rms(h, t[pre + 'input_layernorm.weight'], e)
      proj = lambda n, a=a, pre=pre: (a @ t[f'{pre}self_attn.{n}_proj.weight'].T  # noqa: E731
                                      + t[f'{pre}self_attn.{n}_proj.bias'])
      q = _rope(proj('q').reshape(s, heads, hd), cfg['rope_theta'])
      k = _rope(proj('k').reshape(s, kv, hd), cfg['rope_theta'])
      v = proj('v').reshape(s, kv, hd)
      k = np.concatenate([t[pre + 'self_attn.prefix_k'][stream].transpose(1, 0, 2), k], 0)
      v = np.concatenate([t[pre + 'self_attn.prefix_v'][stream].transpose(1, 0, 2), v], 0)
      allowed = np.concatenate([np.ones((s, m), bool), np.tril(np.ones((s, s), bool))], 1)
      out = np.zeros((s, heads, hd))
      for head in range(heads):
        g = head // (heads // kv)
        score = np.where(allowed, q[:, head] @ k[:, g].T / np.sqrt(hd), -np.inf)
        w = np.exp(score - score.max(1, keepdims=True))
        out[:, head] = (w / w.sum(1, keepdims=True)) @ v[:, g]
      h = h + out.reshape(s, d) @ t[pre + 'self_attn.o_proj.weight'].T
      a = _rms(h, t[pre + 'post_attention_layernorm.weight'], e)
      h = h + (silu(a @ t[pre + 'mlp.gate_proj.weight'].T) * (a @ t[pre + 'mlp.up_proj.weight'].T)
               ) @ t[pre + 'mlp.down_proj.weight'].T
    finals.append(_rms(h, t['model.norm.weight'], e))
  hs = np.stack(finals)  # [P, S, d]
  c = hs.transpose(1, 2, 0).reshape(s, d * p)  # feature h * P + p ('(n b) s h -> b s (h n)')
  z = silu(c @ t['model.aggregate_layer.0.weight'].T + t['model.aggregate_layer.0.bias']
           ) @ t['model.aggregate_layer.2.weight'].T + t['model.aggregate_layer.2.bias']
  w = np.exp(z - z.max(-1, keepdims=True))
  w = w / w.sum(-1, keepdims=True) * (1 - eps) + eps / p
  mixed = np.einsum('sp,psd->sd', w, hs)
  return mixed @ t['lm_head.weight'].T


def _write_checkpoint(path, p=3, layers=2, d=8, heads=2, kv=1, mlp=12, vocab=13, m=2):
  """A random checkpoint in the released layout, written by hand (not by save_parscale)."""
  rng = np.random.default_rng(0)
  hd = d // heads
  r = lambda *shape: rng.normal(0, 0.5, shape).astype(np.float32)  # noqa: E731
  t = {'model.embed_tokens.weight': r(vocab, d), 'lm_head.weight': r(vocab, d),
       'model.norm.weight': 1 + r(d), 'model.aggregate_layer.0.weight': r(d, p * d),
       'model.aggregate_layer.0.bias': r(d), 'model.aggregate_layer.2.weight': r(p, d),
       'model.aggregate_layer.2.bias': r(p)}
  for i in range(layers):
    pre = f'model.layers.{i}.'
    for n, out in (('q', heads * hd), ('k', kv * hd), ('v', kv * hd)):
      t[f'{pre}self_attn.{n}_proj.weight'] = r(out, d)
      t[f'{pre}self_attn.{n}_proj.bias'] = r(out)
    t[pre + 'self_attn.o_proj.weight'] = r(d, heads * hd)
    t[pre + 'self_attn.prefix_k'] = r(p, kv, m, hd)
    t[pre + 'self_attn.prefix_v'] = r(p, kv, m, hd)
    t[pre + 'mlp.gate_proj.weight'] = r(mlp, d)
    t[pre + 'mlp.up_proj.weight'] = r(mlp, d)
    t[pre + 'mlp.down_proj.weight'] = r(d, mlp)
    t[pre + 'input_layernorm.weight'] = 1 + r(d)
    t[pre + 'post_attention_layernorm.weight'] = 1 + r(d)
  cfg = {'architectures': ['Qwen2ParScaleForCausalLM'], 'model_type': 'qwen2_parscale',
         'vocab_size': vocab, 'hidden_size': d, 'intermediate_size': mlp,
         'num_hidden_layers': layers, 'num_attention_heads': heads, 'num_key_value_heads': kv,
         'hidden_act': 'silu', 'rms_norm_eps': 1e-6, 'rope_theta': 10000.0,
         'tie_word_embeddings': False, 'use_sliding_window': False, 'parscale_n': p,
         'parscale_n_tokens': m, 'parscale_attn_smooth': 0.01}
  path.mkdir()
  safetensors.numpy.save_file(t, str(path / 'model.safetensors'), metadata={'format': 'pt'})
  (path / 'config.json').write_text(json.dumps(cfg))
  return t, cfg


def test_released_format_loads_and_matches_the_numpy_reference(tmp_path):
  t, cfg = _write_checkpoint(tmp_path / 'ckpt')
  model, params = ps_hf.load_parscale(str(tmp_path / 'ckpt'))
  assert (model.num_streams, model.num_prefix, model.eps) == (3, 2, 0.01)
  ids = np.random.default_rng(1).integers(0, cfg['vocab_size'], (2, 7))
  ours = np.asarray(model.apply(params, jnp.asarray(ids, jnp.int32)))
  for b in range(2):
    np.testing.assert_allclose(ours[b], reference_logits(t, cfg, ids[b]), rtol=2e-4, atol=2e-4)


def test_save_then_load_gives_the_same_tensors_and_config(tmp_path):
  t, cfg = _write_checkpoint(tmp_path / 'ckpt')
  model, params = ps_hf.load_parscale(str(tmp_path / 'ckpt'))
  ps_hf.save_parscale(str(tmp_path / 'out'), model, params)
  again = hf.read_safetensors(str(tmp_path / 'out'))
  assert set(again) == set(t)
  for name, x in t.items():
    np.testing.assert_array_equal(again[name], x, err_msg=name)
  saved = json.loads((tmp_path / 'out' / 'config.json').read_text())
  for key in ('model_type', 'parscale_n', 'parscale_n_tokens', 'parscale_attn_smooth',
              'num_key_value_heads', 'tie_word_embeddings'):
    assert saved[key] == cfg[key], key


def test_stream_count_mismatch_is_a_format_error(tmp_path):
  t, cfg = _write_checkpoint(tmp_path / 'ckpt')
  cfg['parscale_n'] = 2
  (tmp_path / 'ckpt' / 'config.json').write_text(json.dumps(cfg))
  with pytest.raises(hf.CheckpointFormatError, match='prefix_k has shape'):
    ps_hf.load_parscale(str(tmp_path / 'ckpt'))
  cfg['parscale_n'] = 1
  (tmp_path / 'ckpt' / 'config.json').write_text(json.dumps(cfg))
  with pytest.raises(hf.CheckpointFormatError, match='no place in a P = 1 model'):
    ps_hf.load_parscale(str(tmp_path / 'ckpt'))
