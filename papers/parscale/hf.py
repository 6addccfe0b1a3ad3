"""The released ParScale checkpoint format (`qwen2_parscale`) for `ParScaleLM`.

A ParScale checkpoint directory (e.g. the ParScale-1.8B-P{1,2,4,8} releases) is a Qwen2
checkpoint (`common.hf`) plus, with P = `parscale_n` > 1, per layer i
`model.layers.{i}.self_attn.prefix_k` / `prefix_v` [P, kv_heads, m, head_dim] (m =
`parscale_n_tokens`, our `prefix_k_i` / `prefix_v_i` as they are) and the aggregator
`model.aggregate_layer.{0,2}.{weight,bias}` (torch Linear [out, in]: 0 is [H, P*H] = our w1
transposed, 2 is [P, H] = our w2 transposed). `parscale_attn_smooth` is the weight smoothing
eps (the official default 0.01 at inference; the paper trains with 0.1). The backbone tensors
go through `common.hf.params_from_hf`, so the Qwen2 mapping lives in one place.

    model, params = load_parscale('/ckpt/ParScale-1.8B-P8')
    logits = model.apply(params, tokens)
    save_parscale('/tmp/out', model, params)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from common import hf
from common.models.transformer import Transformer
from papers.parscale.model import ParScaleLM

MODEL_TYPE = 'qwen2_parscale'
_AUTO_MAP = {'AutoConfig': 'configuration_qwen2_parscale.Qwen2ParScaleConfig',
             'AutoModelForCausalLM': 'modeling_qwen2_parscale.Qwen2ParScaleForCausalLM'}


def _is_stream_tensor(name: str) -> bool:
  return name.startswith('model.aggregate_layer.') or name.endswith(
      ('.self_attn.prefix_k', '.self_attn.prefix_v'))


def model_from_config(config: Mapping[str, Any]) -> ParScaleLM:
  """A `qwen2_parscale` (or plain `qwen2`: P = 1) config.json dict -> `ParScaleLM`."""
  kind = config.get('model_type', 'qwen2')
  if kind not in (MODEL_TYPE, 'qwen2'):
    raise hf.CheckpointFormatError(f'model_type={kind!r}: expected {MODEL_TYPE} or qwen2')
  kwargs = hf.transformer_kwargs({**config, 'model_type': 'qwen2'})
  vocab = kwargs.pop('vocab_size')
  kwargs.pop('causal')
  return ParScaleLM(vocab_size=vocab, num_streams=int(config.get('parscale_n', 1)),
                    num_prefix=int(config.get('parscale_n_tokens', 48)),
                    eps=float(config.get('parscale_attn_smooth', 0.01)), model=kwargs)


def params_from_parscale(tensors: Mapping[str, np.ndarray], model: ParScaleLM,
                         dtype: Any = np.float32) -> dict[str, Any]:
  """The checkpoint's tensors -> `model`'s parameter tree {'params': ...} (numpy `dtype`)."""
  bb = _backbone(model)
  kv_heads = bb.num_kv_heads or bb.num_heads
  backbone = hf.params_from_hf(
      {k: v for k, v in tensors.items() if not _is_stream_tensor(k)},
      {'vocab_size': bb.vocab_size, 'num_layers': bb.num_layers, 'd_model': bb.d_model,
       'num_heads': bb.num_heads, 'num_kv_heads': kv_heads, 'mlp_dim': bb.mlp_dim,
       'tie_embeddings': bb.tie_embeddings}, dtype)['params']
  tree: dict[str, Any] = {'backbone': backbone}
  p, d = model.num_streams, bb.d_model
  used = set()

  def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in tensors:
      raise hf.CheckpointFormatError(f'tensor {name} is missing from the checkpoint')
    x = np.asarray(tensors[name])
    if x.shape != shape:
      raise hf.CheckpointFormatError(f'tensor {name} has shape {x.shape}, expected {shape}')
    used.add(name)
    return x.astype(dtype)

  if model.has_prefix:
    shape = (p, kv_heads, model.num_prefix, d // bb.num_heads)
    for i in range(bb.num_layers):
      for x in 'kv':
        tree[f'prefix_{x}_{i}'] = get(f'model.layers.{i}.self_attn.prefix_{x}', shape)
  if p > 1:
    tree['aggregator'] = {'w1': get('model.aggregate_layer.0.weight', (d, p * d)).T,
                          'b1': get('model.aggregate_layer.0.bias', (d,)),
                          'w2': get('model.aggregate_layer.2.weight', (p, d)).T,
                          'b2': get('model.aggregate_layer.2.bias', (p,))}
  unused = sorted(k for k in tensors if _is_stream_tensor(k) and k not in used)
  if unused:
    raise hf.CheckpointFormatError(f'{len(unused)} ParScale tensors have no place in a '
                                   f'P = {p} model, e.g. {unused[:3]}')
  return {'params': tree}


def params_to_parscale(params: Mapping[str, Any], model: ParScaleLM,
                       dtype: Any = np.float32) -> dict[str, np.ndarray]:
  """`model`'s parameter tree -> the checkpoint's tensors (numpy, contiguous, `dtype`)."""
  tree = jax.device_get(params['params'] if 'params' in params else params)
  bb = _backbone(model)
  out = hf.params_to_hf({'params': tree['backbone']}, bb, dtype)
  like = out['model.norm.weight'].dtype  # `dtype` as common.hf resolved it
  cast = lambda x: np.ascontiguousarray(np.asarray(x, np.float32).astype(like))  # noqa: E731
  if model.has_prefix:
    for i in range(bb.num_layers):
      for x in 'kv':
        out[f'model.layers.{i}.self_attn.prefix_{x}'] = cast(tree[f'prefix_{x}_{i}'])
  if model.num_streams > 1:
    agg = tree['aggregator']
    out.update({'model.aggregate_layer.0.weight': cast(np.asarray(agg['w1']).T),
                'model.aggregate_layer.0.bias': cast(agg['b1']),
                'model.aggregate_layer.2.weight': cast(np.asarray(agg['w2']).T),
                'model.aggregate_layer.2.bias': cast(agg['b2'])})
  return out


def _backbone(model: ParScaleLM) -> Transformer:
  return Transformer(vocab_size=model.vocab_size, causal=True, **(model.model or {}))


def parscale_config(model: ParScaleLM, dtype: Any = 'float32') -> dict[str, Any]:
  """`ParScaleLM` -> a `qwen2_parscale` config.json dict (the official configuration's keys)."""
  return {**hf.hf_config(_backbone(model), dtype), 'model_type': MODEL_TYPE,
          'architectures': ['Qwen2ParScaleForCausalLM'], 'auto_map': dict(_AUTO_MAP),
          'parscale_n': model.num_streams, 'parscale_n_tokens': model.num_prefix,
          'parscale_attn_smooth': model.eps}


def load_parscale(path: str, param_dtype: Any = np.float32) -> tuple[ParScaleLM, dict[str, Any]]:
  """A `qwen2_parscale` checkpoint directory -> (`ParScaleLM`, numpy params of `param_dtype`)."""
  with open(os.path.join(path, hf.CONFIG_FILE)) as f:
    model = model_from_config(json.load(f))
  return model, params_from_parscale(hf.read_safetensors(path), model, param_dtype)


def save_parscale(path: str, model: ParScaleLM, params: Mapping[str, Any],
                  dtype: Any = np.float32, max_shard_bytes: int | None = None) -> None:
  """Writes `config.json` and safetensors weights in the `qwen2_parscale` layout."""
  if model.prefix_at_p1 and model.num_streams == 1:
    raise hf.CheckpointFormatError('the qwen2_parscale format has no P = 1 prefixes')
  hf.write_safetensors(path, params_to_parscale(params, model, dtype), max_shard_bytes)
  with open(os.path.join(path, hf.CONFIG_FILE), 'w') as f:
    json.dump(parscale_config(model, dtype), f, indent=2)
