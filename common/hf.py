"""Hugging Face checkpoints and tokenizers for the shared transformer.

A Qwen2-family checkpoint directory (`config.json` + `model.safetensors`, or shards listed in
`model.safetensors.index.json`) maps one to one onto `common.models.transformer.Transformer`:

    model, params = load_qwen2('/ckpt/Qwen2.5-0.5B')          # float32 master weights
    logits = model.apply(params, tokens)
    save_qwen2('/tmp/out', model, params, dtype='bfloat16')    # back to the HF layout

HF Linear weights are [out, in]; ours are [in, heads, head_dim] (q/k/v), [heads, head_dim, d]
(o) and [in, out] (MLP, untied head). RMSNorm, rotate-half RoPE with theta from the config,
grouped-query attention with q/k/v biases and tied or untied embeddings are the same math.
Tensors are read and written with the `safetensors` package (numpy API; bfloat16 through
ml_dtypes). `load_tokenizer` reads a `tokenizer.json` with the `tokenizers` package.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import ml_dtypes
import numpy as np

from common.models.transformer import Transformer

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
INDEX_FILE = 'model.safetensors.index.json'
TOKENIZER_FILE = 'tokenizer.json'
_DTYPES = {'float32': np.float32, 'float16': np.float16, 'bfloat16': ml_dtypes.bfloat16}


class CheckpointFormatError(ValueError):
  """The checkpoint is not a Qwen2-family model this transformer can represent exactly."""


def _np_dtype(dtype: Any) -> np.dtype:
  return np.dtype(_DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype)


def rope_theta(hf_config: Mapping[str, Any]) -> float:
  """RoPE base from `rope_theta` (transformers 4) or `rope_parameters` (transformers 5)."""
  params = hf_config.get('rope_parameters') or {}
  scaling = hf_config.get('rope_scaling') or {}
  for rope in (params, scaling):
    kind = rope.get('rope_type', rope.get('type', 'default'))
    if kind != 'default':
      raise CheckpointFormatError(f'rope type {kind!r} is not supported (only plain RoPE)')
  return float(params.get('rope_theta', hf_config.get('rope_theta', 10000.0)))


def transformer_kwargs(hf_config: Mapping[str, Any]) -> dict[str, Any]:
  """Qwen2 `config.json` -> `Transformer(...)` keyword arguments (causal LM)."""
  if hf_config.get('model_type', 'qwen2') != 'qwen2':
    raise CheckpointFormatError(f'model_type={hf_config["model_type"]!r}: expected qwen2')
  if hf_config.get('hidden_act', 'silu') != 'silu':
    raise CheckpointFormatError(f'hidden_act={hf_config["hidden_act"]!r}: expected silu')
  heads, d = hf_config['num_attention_heads'], hf_config['hidden_size']
  head_dim = hf_config.get('head_dim') or d // heads
  if head_dim * heads != d:
    raise CheckpointFormatError(f'head_dim={head_dim} x heads={heads} != hidden_size={d}')
  layer_types = hf_config.get('layer_types') or []
  if hf_config.get('use_sliding_window') or 'sliding_attention' in layer_types:
    raise CheckpointFormatError('sliding-window attention layers are not supported')
  return dict(vocab_size=hf_config['vocab_size'], num_layers=hf_config['num_hidden_layers'],
              d_model=d, num_heads=heads,
              num_kv_heads=hf_config.get('num_key_value_heads') or heads,
              mlp_dim=hf_config['intermediate_size'], causal=True,
              rope_theta=rope_theta(hf_config), norm_eps=float(hf_config.get('rms_norm_eps', 1e-6)),
              tie_embeddings=bool(hf_config.get('tie_word_embeddings', False)))


def hf_config(model: Transformer, dtype: Any = 'float32') -> dict[str, Any]:
  """`Transformer` -> a Qwen2 `config.json` dict that transformers' Qwen2Config reads."""
  if not model.causal:
    raise CheckpointFormatError('only causal transformers have a Qwen2ForCausalLM layout')
  return {
      'architectures': ['Qwen2ForCausalLM'], 'model_type': 'qwen2',
      'vocab_size': model.vocab_size, 'hidden_size': model.d_model,
      'intermediate_size': model.mlp_dim, 'num_hidden_layers': model.num_layers,
      'num_attention_heads': model.num_heads,
      'num_key_value_heads': model.num_kv_heads or model.num_heads,
      'head_dim': model.d_model // model.num_heads, 'hidden_act': 'silu',
      'rms_norm_eps': model.norm_eps, 'rope_theta': model.rope_theta,
      'rope_parameters': {'rope_type': 'default', 'rope_theta': model.rope_theta},
      'tie_word_embeddings': model.tie_embeddings, 'use_sliding_window': False,
      'attention_bias': True, 'max_position_embeddings': 32768,
      'torch_dtype': np.dtype(_np_dtype(dtype)).name, 'dtype': np.dtype(_np_dtype(dtype)).name,
  }


def params_from_hf(tensors: Mapping[str, np.ndarray], kwargs: Mapping[str, Any],
                   dtype: Any = np.float32) -> dict[str, Any]:
  """HF Qwen2 state dict (numpy) -> our parameter tree {'params': ...} as numpy `dtype`."""
  dtype = _np_dtype(dtype)
  d, heads = kwargs['d_model'], kwargs['num_heads']
  kv, hd = kwargs['num_kv_heads'], kwargs['d_model'] // kwargs['num_heads']
  used = set()

  def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in tensors:
      raise CheckpointFormatError(f'tensor {name} is missing from the checkpoint')
    x = np.asarray(tensors[name])
    if x.shape != shape:
      raise CheckpointFormatError(f'tensor {name} has shape {x.shape}, expected {shape}')
    used.add(name)
    return x.astype(dtype)

  def proj(prefix: str, n: int) -> dict[str, np.ndarray]:
    return {'kernel': get(f'{prefix}.weight', (n * hd, d)).T.reshape(d, n, hd),
            'bias': get(f'{prefix}.bias', (n * hd,)).reshape(n, hd)}

  mlp = kwargs['mlp_dim']
  tree: dict[str, Any] = {
      'embed': {'embedding': get('model.embed_tokens.weight', (kwargs['vocab_size'], d))},
      'norm_final': {'scale': get('model.norm.weight', (d,))}}
  for i in range(kwargs['num_layers']):
    p = f'model.layers.{i}'
    tree[f'layer_{i}'] = {
        'attn': {'q': proj(f'{p}.self_attn.q_proj', heads),
                 'k': proj(f'{p}.self_attn.k_proj', kv),
                 'v': proj(f'{p}.self_attn.v_proj', kv),
                 'o': {'kernel': get(f'{p}.self_attn.o_proj.weight',
                                     (d, heads * hd)).T.reshape(heads, hd, d)}},
        'mlp': {'gate': {'kernel': get(f'{p}.mlp.gate_proj.weight', (mlp, d)).T},
                'up': {'kernel': get(f'{p}.mlp.up_proj.weight', (mlp, d)).T},
                'down': {'kernel': get(f'{p}.mlp.down_proj.weight', (d, mlp)).T}},
        'norm_attn': {'scale': get(f'{p}.input_layernorm.weight', (d,))},
        'norm_mlp': {'scale': get(f'{p}.post_attention_layernorm.weight', (d,))}}
  if not kwargs['tie_embeddings']:
    tree['lm_head'] = {'kernel': get('lm_head.weight', (kwargs['vocab_size'], d)).T}
  unused = sorted(set(tensors) - used - {'lm_head.weight'})
  unused = [n for n in unused if not n.endswith('rotary_emb.inv_freq')]
  if unused:
    raise CheckpointFormatError(f'{len(unused)} checkpoint tensors have no place in this '
                                f'model, e.g. {unused[:3]}')
  return {'params': tree}


def params_to_hf(params: Mapping[str, Any], model: Transformer,
                 dtype: Any = np.float32) -> dict[str, np.ndarray]:
  """Our parameter tree -> HF Qwen2 state dict (numpy, contiguous, `dtype`)."""
  dtype = _np_dtype(dtype)
  tree = jax.device_get(params['params'] if 'params' in params else params)
  out: dict[str, np.ndarray] = {}

  def put(name: str, x: Any) -> None:
    out[name] = np.ascontiguousarray(np.asarray(x, np.float32).astype(dtype))

  put('model.embed_tokens.weight', tree['embed']['embedding'])
  put('model.norm.weight', tree['norm_final']['scale'])
  for i in range(model.num_layers):
    layer, p = tree[f'layer_{i}'], f'model.layers.{i}'
    for name in 'qkv':
      kernel = np.asarray(layer['attn'][name]['kernel'])
      put(f'{p}.self_attn.{name}_proj.weight', kernel.reshape(kernel.shape[0], -1).T)
      put(f'{p}.self_attn.{name}_proj.bias', np.asarray(layer['attn'][name]['bias']).reshape(-1))
    o = np.asarray(layer['attn']['o']['kernel'])
    put(f'{p}.self_attn.o_proj.weight', o.reshape(-1, o.shape[-1]).T)
    for name in ('gate', 'up', 'down'):
      put(f'{p}.mlp.{name}_proj.weight', np.asarray(layer['mlp'][name]['kernel']).T)
    put(f'{p}.input_layernorm.weight', layer['norm_attn']['scale'])
    put(f'{p}.post_attention_layernorm.weight', layer['norm_mlp']['scale'])
  if not model.tie_embeddings:
    put('lm_head.weight', np.asarray(tree['lm_head']['kernel']).T)
  return out


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Every tensor of a checkpoint directory (single file or sharded with an index)."""
  import safetensors.numpy

  index = os.path.join(path, INDEX_FILE)
  if os.path.exists(index):
    with open(index) as f:
      files = sorted(set(json.load(f)['weight_map'].values()))
  elif os.path.exists(os.path.join(path, WEIGHTS_FILE)):
    files = [WEIGHTS_FILE]
  else:
    raise FileNotFoundError(f'{path} has neither {WEIGHTS_FILE} nor {INDEX_FILE}')
  tensors: dict[str, np.ndarray] = {}
  for name in files:
    tensors.update(safetensors.numpy.load_file(os.path.join(path, name)))
  return tensors


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray],
                      max_shard_bytes: int | None = None) -> list[str]:
  """Writes `model.safetensors`, or numbered shards plus the index past `max_shard_bytes`."""
  import safetensors.numpy

  os.makedirs(path, exist_ok=True)
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name in sorted(tensors):
    nbytes = tensors[name].nbytes
    if max_shard_bytes and shards[-1] and size + nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = tensors[name]
    size += nbytes
  meta = {'format': 'pt'}  # transformers checks this key when it loads
  if len(shards) == 1:
    safetensors.numpy.save_file(shards[0], os.path.join(path, WEIGHTS_FILE), metadata=meta)
    return [WEIGHTS_FILE]
  names = [f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors' for i in range(len(shards))]
  weight_map = {}
  for name, shard in zip(names, shards, strict=True):
    safetensors.numpy.save_file(shard, os.path.join(path, name), metadata=meta)
    weight_map.update(dict.fromkeys(shard, name))
  total = sum(t.nbytes for t in tensors.values())
  with open(os.path.join(path, INDEX_FILE), 'w') as f:
    json.dump({'metadata': {'total_size': total}, 'weight_map': weight_map}, f, indent=2)
  return names


def load_qwen2(path: str, param_dtype: Any = np.float32, **model_overrides: Any
               ) -> tuple[Transformer, dict[str, Any]]:
  """A Qwen2-family checkpoint directory -> (Transformer, numpy params of `param_dtype`).

  `model_overrides` set fields the checkpoint does not fix, e.g. `dtype='bfloat16'` for the
  compute dtype or `causal=False` for a bidirectional model (parameters stay `param_dtype`,
  float32 master weights by default). Place them with `parallel.shard_params` on an FSDP mesh.
  """
  with open(os.path.join(path, CONFIG_FILE)) as f:
    kwargs = transformer_kwargs(json.load(f))
  params = params_from_hf(read_safetensors(path), kwargs, param_dtype)
  return Transformer(**kwargs, **model_overrides), params


def save_qwen2(path: str, model: Transformer, params: Mapping[str, Any],
               dtype: Any = np.float32, max_shard_bytes: int | None = None) -> None:
  """Writes `config.json` and safetensors weights in the HF Qwen2ForCausalLM layout."""
  write_safetensors(path, params_to_hf(params, model, dtype), max_shard_bytes)
  with open(os.path.join(path, CONFIG_FILE), 'w') as f:
    json.dump(hf_config(model, dtype), f, indent=2)


def load_tokenizer(path: str):
  """A `tokenizers.Tokenizer` from a tokenizer.json file or a directory holding one."""
  import tokenizers

  if os.path.isdir(path):
    path = os.path.join(path, TOKENIZER_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist: pass a tokenizer.json or its directory')
  return tokenizers.Tokenizer.from_file(path)


def encode_texts(tokenizer, texts: list[str], seq_len: int, pad_id: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Texts -> (ids [N, seq_len] int32, mask [N, seq_len] bool): truncated, right-padded."""
  ids = np.full((len(texts), seq_len), pad_id, np.int32)
  mask = np.zeros((len(texts), seq_len), bool)
  for row, enc in enumerate(tokenizer.encode_batch(list(texts))):
    n = min(len(enc.ids), seq_len)
    ids[row, :n] = enc.ids[:n]
    mask[row, :n] = True
  return ids, mask
