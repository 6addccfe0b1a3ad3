"""Hugging Face Qwen2 checkpoints and tokenizers (common/hf.py).

The reference comparison against transformers' Qwen2ForCausalLM needs the optional test extra
(`pip install torch==2.13.0 transformers==5.23.0`) and is skipped without it.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import hf
from common.models.transformer import Transformer

TINY = dict(vocab_size=97, num_layers=2, d_model=32, num_heads=4, num_kv_heads=2, mlp_dim=48,
            rope_theta=50000.0, norm_eps=1e-5)


def _random_params(model: Transformer, seed: int = 0):
  """Random parameters with non-trivial norms and biases (init leaves them 1 and 0)."""
  shapes = jax.eval_shape(model.init, jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(0.0, 0.3, s.shape).astype(np.float32), shapes)


@pytest.mark.parametrize('tie', [True, False])
def test_save_load_roundtrip(tmp_path, tie):
  model = Transformer(**TINY, tie_embeddings=tie)
  params = _random_params(model)
  hf.save_qwen2(str(tmp_path), model, params, max_shard_bytes=None if tie else 20_000)
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['num_key_value_heads'] == 2 and config['tie_word_embeddings'] == tie
  assert (tmp_path / hf.INDEX_FILE).exists() == (not tie)  # untied: written as shards
  loaded_model, loaded = hf.load_qwen2(str(tmp_path))
  assert loaded_model == model
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), params, loaded)
  tokens = jnp.arange(12).reshape(2, 6) % TINY['vocab_size']
  apply = jax.jit(model.apply)
  np.testing.assert_array_equal(apply(params, tokens), apply(loaded, tokens))


def test_bfloat16_checkpoint_loads_as_float32_master_weights(tmp_path):
  model = Transformer(**TINY)
  params = _random_params(model)
  hf.save_qwen2(str(tmp_path), model, params, dtype='bfloat16')
  tensors = hf.read_safetensors(str(tmp_path))
  assert tensors['model.norm.weight'].dtype == jnp.bfloat16
  bf16_model, loaded = hf.load_qwen2(str(tmp_path), dtype='bfloat16')  # bf16 compute
  assert bf16_model.dtype == 'bfloat16'
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(loaded))
  rounded = jax.tree.map(lambda x: np.asarray(x).astype(jnp.bfloat16).astype(np.float32), params)
  jax.tree.map(np.testing.assert_array_equal, rounded, loaded)


def test_config_mapping():
  base = dict(vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
              num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-5)
  assert hf.transformer_kwargs({**base, 'rope_theta': 1e6})['rope_theta'] == 1e6
  assert hf.transformer_kwargs(
      {**base, 'rope_parameters': {'rope_type': 'default', 'rope_theta': 3.0}})['rope_theta'] == 3
  kwargs = hf.transformer_kwargs(base)
  assert kwargs['tie_embeddings'] is False and kwargs['num_kv_heads'] == 1
  for bad in ({'rope_scaling': {'type': 'yarn', 'factor': 4.0}}, {'use_sliding_window': True},
              {'head_dim': 3}, {'model_type': 'llama'}):
    with pytest.raises(hf.CheckpointFormatError):
      hf.transformer_kwargs({**base, **bad})


def test_missing_and_extra_tensors_are_named():
  kwargs = hf.transformer_kwargs(dict(vocab_size=10, hidden_size=8, intermediate_size=16,
                                      num_hidden_layers=1, num_attention_heads=2))
  model = Transformer(**kwargs)
  tensors = hf.params_to_hf(_random_params(model), model)
  with pytest.raises(hf.CheckpointFormatError, match='q_proj.bias is missing'):
    hf.params_from_hf({k: v for k, v in tensors.items() if 'q_proj.bias' not in k}, kwargs)
  with pytest.raises(hf.CheckpointFormatError, match='no place'):
    hf.params_from_hf({**tensors, 'model.layers.5.mlp.up_proj.weight': np.zeros(2)}, kwargs)


@pytest.mark.parametrize('tie', [True, False])
def test_logits_match_transformers_qwen2(tmp_path, tie):
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  torch.manual_seed(0)
  config = transformers.Qwen2Config(
      vocab_size=TINY['vocab_size'], hidden_size=TINY['d_model'], intermediate_size=48,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      rms_norm_eps=TINY['norm_eps'], rope_theta=TINY['rope_theta'], tie_word_embeddings=tie,
      max_position_embeddings=64)
  config.rope_parameters = {'rope_type': 'default', 'rope_theta': TINY['rope_theta']}
  reference = transformers.Qwen2ForCausalLM(config).float().eval()
  with torch.no_grad():
    for p in reference.parameters():  # random norms and biases too
      p.normal_(0.0, 0.3)
  reference.save_pretrained(str(tmp_path / 'hf'), safe_serialization=True)
  model, params = hf.load_qwen2(str(tmp_path / 'hf'))
  assert model.rope_theta == TINY['rope_theta'] and model.tie_embeddings == tie
  tokens = np.random.default_rng(0).integers(0, TINY['vocab_size'], (2, 11))
  with torch.no_grad():
    expected = reference(torch.from_numpy(tokens)).logits.numpy()
  ours = np.asarray(jax.jit(model.apply)(params, jnp.asarray(tokens)))
  np.testing.assert_allclose(ours, expected, atol=2e-4, rtol=1e-4)
  # ... and our save is read back by transformers to the same logits.
  hf.save_qwen2(str(tmp_path / 'ours'), model, params)
  reloaded = transformers.Qwen2ForCausalLM.from_pretrained(str(tmp_path / 'ours')).float().eval()
  with torch.no_grad():
    again = reloaded(torch.from_numpy(tokens)).logits.numpy()
  np.testing.assert_allclose(again, expected, atol=1e-5, rtol=1e-5)


def test_tokenizer_json_roundtrip(tmp_path):
  tokenizers = pytest.importorskip('tokenizers')
  from tokenizers import decoders, models, pre_tokenizers, trainers
  tok = tokenizers.Tokenizer(models.BPE(unk_token='<unk>'))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=['<pad>', '<unk>', '<eos>'],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  corpus = ['the cat sat on the mat', 'the dog sat on the log', 'a cat and a dog'] * 20
  tok.train_from_iterator(corpus, trainer)
  tok.save(str(tmp_path / 'tokenizer.json'))
  loaded = hf.load_tokenizer(str(tmp_path))
  assert loaded.get_vocab_size() == tok.get_vocab_size()
  assert loaded.token_to_id('<pad>') == 0
  text = 'the cat sat on the log'
  ids = loaded.encode(text).ids
  assert ids == tok.encode(text).ids and len(ids) < len(text)  # merges were learned
  assert loaded.decode(ids) == text
  batch, mask = hf.encode_texts(loaded, [text, 'a dog'], seq_len=8, pad_id=0)
  assert batch.shape == (2, 8) and batch.dtype == np.int32
  assert mask[1].sum() == len(loaded.encode('a dog').ids)
  assert (batch[1][~mask[1]] == 0).all()
  with pytest.raises(FileNotFoundError):
    hf.load_tokenizer(str(tmp_path / 'nope'))


def test_qwen25_half_billion_config_has_the_published_parameter_count():
  """Qwen2.5-0.5B's config.json (as published) maps to exactly its 494,032,768 parameters."""
  config = {'architectures': ['Qwen2ForCausalLM'], 'model_type': 'qwen2', 'hidden_act': 'silu',
            'hidden_size': 896, 'intermediate_size': 4864, 'num_hidden_layers': 24,
            'num_attention_heads': 14, 'num_key_value_heads': 2, 'vocab_size': 151936,
            'rms_norm_eps': 1e-6, 'rope_theta': 1000000.0, 'rope_scaling': None,
            'tie_word_embeddings': True, 'use_sliding_window': False, 'sliding_window': 32768,
            'max_window_layers': 21, 'torch_dtype': 'bfloat16'}
  model = Transformer(**hf.transformer_kwargs(config))
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
  assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)) == 494_032_768
  assert model.rope_theta == 1e6 and model.tie_embeddings
