"""Two-stage REDI experiment: SFT on positive traces, then a stage-2 objective from that checkpoint.

    python -m common.main --config=configs/redi/arith.py:smoke --workdir=/tmp/redi_smoke

Stage 2 methods: 'redi' (alpha from config; alpha = 1 the symmetric objective), 'dpo', 'simpo',
'sft' (continued SFT on the positives). pass@1 on held-out problems is measured by greedy
decoding (and sampling at a temperature, averaged over k samples) checked by the verifier.

Data: the arithmetic task (`papers/redi/task.py`) by default; with `data.traces_jsonl` and
`data.tokenizer`, teacher traces from a file (`papers/redi/traces.py`: prompt / chosen /
rejected), where the evaluation is the held-out rows' mean token log-likelihood of the chosen
and rejected traces and the share of pairs ranked right (no answer verifier for free text here).
`model.init_checkpoint` (a Hugging Face Qwen2 directory, with traces and its tokenizer) is where
SFT starts; without it SFT starts from a fresh initialisation.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import config as cfglib
from common import data, lm, parallel, train
from common.lm import token_cross_entropy
from common.models.transformer import Transformer
from papers.redi import losses, task, traces

METHODS = ('redi', 'dpo', 'simpo', 'sft')


def make_model(config: ml_collections.ConfigDict, vocab_size: int = task.VOCAB_SIZE
               ) -> Transformer:
  return Transformer(vocab_size=vocab_size, causal=True, **lm.model_kwargs(config))


# --- losses ---------------------------------------------------------------------------------------

def sft_loss(model: Transformer, params: Any, batch: dict) -> tuple[jax.Array, dict]:
  """Stage 1: token-mean cross-entropy on the completion tokens (incl. EOS) of correct traces."""
  logits = model.apply(params, batch['tokens'])
  nll = token_cross_entropy(logits[:, :-1], batch['tokens'][:, 1:], batch['mask'][:, 1:])
  return nll, {}


def pair_logprobs(model: Transformer, params: Any, batch: dict):
  """S and |y| of the chosen and rejected traces, in one forward pass over both."""
  tokens = jnp.concatenate([batch['pos_tokens'], batch['neg_tokens']])
  mask = jnp.concatenate([batch['pos_mask'], batch['neg_mask']])
  s, n = losses.sequence_logprob(model.apply(params, tokens), tokens, mask)
  b = batch['pos_tokens'].shape[0]
  return s[:b], n[:b], s[b:], n[b:]


def stage2_loss(model: Transformer, cfg: ml_collections.ConfigDict, params: Any, batch: dict
                ) -> tuple[jax.Array, dict]:
  """The stage-2 objective named by cfg.method, mean over the pairs of the batch."""
  s_pos, n_pos, s_neg, n_neg = pair_logprobs(model, params, batch)
  if cfg.method == 'redi':
    per_example = losses.redi_loss(s_pos, n_pos, s_neg, n_neg, cfg.alpha, cfg.neg_gamma)
  elif cfg.method == 'dpo':
    per_example = losses.dpo_loss(s_pos, s_neg, batch['ref_pos'], batch['ref_neg'], cfg.dpo_beta)
  elif cfg.method == 'simpo':
    per_example = losses.simpo_loss(s_pos, n_pos, s_neg, n_neg, cfg.simpo_beta, cfg.simpo_gamma)
  else:  # continued SFT: token-mean NLL of the positives
    per_example = -s_pos / n_pos.sum() * n_pos.shape[0]
  metrics = {'chosen_logp': (s_pos / n_pos).mean(), 'rejected_logp': (s_neg / n_neg).mean()}
  return per_example.mean(), metrics


# --- training -------------------------------------------------------------------------------------

def make_step(loss_fn: Callable, tx: optax.GradientTransformation) -> Callable:
  """(params, opt_state, batch, lr) -> (params, opt_state, metrics). `tx` is built with a peak
  learning rate of 1, so `lr` (a traced scalar) scales the update: one compile for a lr grid."""
  def step(params, opt_state, batch, lr):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, jax.tree.map(lambda u: lr * u, updates))
    return params, opt_state, {'loss': loss, 'grad_norm': optax.global_norm(grads), **metrics}
  return jax.jit(step)


def unit_optimizer(optim: ml_collections.ConfigDict, steps: int) -> optax.GradientTransformation:
  unit = ml_collections.ConfigDict(optim.to_dict())
  unit.lr = 1.0
  return train.make_optimizer(unit, steps)


def run(step_fn: Callable, params: Any, opt_state: Any, arrays: dict[str, np.ndarray],
        steps: int, batch_size: int, lr: float, seed: int, mesh: jax.sharding.Mesh,
        on_eval: Callable[[int, Any], None] | None = None, eval_every: int = 0,
        log: list | None = None, log_every: int = 10) -> tuple[Any, Any]:
  """A single pass (or more) over `arrays` in shuffled batches, data-parallel over `mesh`."""
  order = data.batch_indices(len(next(iter(arrays.values()))), batch_size, seed)
  lr = jnp.float32(lr)
  if on_eval is not None:
    on_eval(0, params)
  for step in range(steps):
    batch = parallel.shard_batch(data.take(arrays, order[step]), mesh)
    params, opt_state, metrics = step_fn(params, opt_state, batch, lr)
    done = step + 1
    if log is not None and (done % log_every == 0 or done == steps):
      row = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not all(np.isfinite(list(row.values()))):
        raise train.NonFiniteError(f'step {done}: non-finite metrics {row}')
      log.append({'step': done, **row})
    if on_eval is not None and eval_every and (done % eval_every == 0 or done == steps):
      on_eval(done, params)
  return params, opt_state


# --- decoding and pass@1 --------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=(0, 4))
def generate(model: Transformer, params: Any, prompts: jax.Array, key: jax.Array,
             temperature: float) -> jax.Array:
  """Completes prompts [N, PROMPT_LEN] to [N, SEQ_LEN]: greedy when temperature == 0, else
  sampled from softmax(logits / temperature). Full recompute per token (tiny sequences)."""
  n = prompts.shape[0]
  buf = jnp.zeros((n, task.SEQ_LEN), jnp.int32).at[:, :task.PROMPT_LEN].set(prompts)

  def body(t, buf):
    logits = jax.lax.dynamic_index_in_dim(model.apply(params, buf), t - 1, 1, False)
    if temperature == 0:
      nxt = jnp.argmax(logits, -1)
    else:
      nxt = jax.random.categorical(jax.random.fold_in(key, t), logits / temperature)
    return jax.lax.dynamic_update_index_in_dim(buf, nxt.astype(jnp.int32), t, 1)

  return jax.lax.fori_loop(task.PROMPT_LEN, task.SEQ_LEN, body, buf)


def pass_at_1(model: Transformer, params: Any, problems: list[task.Problem],
              temperature: float = 0.0, num_samples: int = 1, seed: int = 0) -> float:
  """Share of (problem, sample) pairs whose completion the verifier accepts."""
  prompts = np.tile(task.prompts(problems), (num_samples, 1))
  out = np.asarray(generate(model, params, jnp.asarray(prompts), jax.random.key(seed),
                            float(temperature)))
  ok = [task.verify(problems[i % len(problems)], task.decode(row[task.PROMPT_LEN:]))
        for i, row in enumerate(out)]
  return float(np.mean(ok))


# --- the experiment -------------------------------------------------------------------------------

def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.check_positive_int(config, 'model.num_layers', 'model.d_model', 'model.num_heads',
                            'model.mlp_dim', 'sft.steps', 'sft.batch_size', 'stage2.batch_size',
                            'data.num_train', 'data.num_test', 'data.samples_per_problem')
  cfglib.check_nonneg_int(config, 'seed', 'stage2.steps', 'eval.every')
  cfglib.check_divisible(config, 'sft.batch_size', num_devices, 'the number of devices')
  cfglib.check_divisible(config, 'stage2.batch_size', num_devices, 'the number of devices')
  cfglib.check_choice(config, 'stage2.method', METHODS)
  cfglib.check_range(config, 'data.error_rate', 0.0, 1.0)
  for stage in ('sft', 'stage2'):
    cfglib.check_range(config, f'{stage}.optim.lr', 0.0, 10.0, low_open=True)
  if config.model.d_model % config.model.num_heads:
    raise cfglib.ConfigError(f'config.model.d_model={config.model.d_model} is not divisible by '
                             f'config.model.num_heads={config.model.num_heads}: change either')
  trace_file = lm.string_setting(config.data, 'traces_jsonl')
  tokenizer = lm.string_setting(config.data, 'tokenizer')
  if trace_file and not tokenizer:
    raise cfglib.ConfigError('config.data.traces_jsonl is set but config.data.tokenizer is '
                             'empty: pass --config.data.tokenizer=/path/to/tokenizer.json')
  if tokenizer and not trace_file:
    raise cfglib.ConfigError('config.data.tokenizer is set but config.data.traces_jsonl is '
                             'empty: pass the traces (or unset the tokenizer for the arithmetic '
                             'task)')
  if trace_file:
    cfglib.check_positive_int(config, 'data.max_len', 'data.pair_max_len')
  if lm.check_init_checkpoint(config) and not trace_file:
    raise cfglib.ConfigError('config.model.init_checkpoint needs --config.data.traces_jsonl and '
                             "--config.data.tokenizer (the checkpoint's tokenizer): the "
                             'arithmetic task has its own vocabulary')


def train_sft(config: ml_collections.ConfigDict, ds: task.Datasets | traces.TraceDatasets, mesh,
              log: list | None = None, init_params: Any = None,
              vocab_size: int = task.VOCAB_SIZE):
  """Stage 1 from `init_params` (a fresh init when None); returns the SFT parameters."""
  model = make_model(config, vocab_size)
  params = init_params
  if params is None:
    params = model.init(jax.random.key(config.seed),
                        jnp.zeros((1, ds.sft['tokens'].shape[1]), jnp.int32))
  tx = unit_optimizer(config.sft.optim, config.sft.steps)
  step = make_step(functools.partial(sft_loss, model), tx)
  params, opt_state = parallel.replicate(params, mesh), parallel.replicate(tx.init(params), mesh)
  params, _ = run(step, params, opt_state, ds.sft, config.sft.steps, config.sft.batch_size,
                  config.sft.optim.lr, config.seed, mesh, log=log, log_every=100)
  return params


def preference_arrays(model: Transformer, params: Any, pref: dict[str, np.ndarray],
                      chunk: int = 512) -> dict[str, np.ndarray]:
  """The preference pairs plus the reference model's S(y+), S(y-) (used by DPO)."""
  fn = jax.jit(lambda p, b: pair_logprobs(model, p, b))
  ref_pos, ref_neg = [], []
  n = len(pref['pos_tokens'])
  for start in range(0, n, chunk):
    out = fn(params, {k: v[start:start + chunk] for k, v in pref.items()})
    ref_pos.append(np.asarray(out[0]))
    ref_neg.append(np.asarray(out[2]))
  return {**pref, 'ref_pos': np.concatenate(ref_pos), 'ref_neg': np.concatenate(ref_neg)}


def train_stage2(config: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict, sft_params,
                 pref: dict[str, np.ndarray], mesh, seed: int, on_eval=None, eval_every: int = 0,
                 log: list | None = None, step_cache: dict | None = None,
                 vocab_size: int = task.VOCAB_SIZE):
  """Stage 2 from the SFT parameters with a fresh optimizer (warmup + linear decay)."""
  model = make_model(config, vocab_size)
  tx = unit_optimizer(cfg.optim, cfg.steps)
  key = (cfg.method, cfg.alpha, cfg.steps, json.dumps(cfg.optim.to_dict(), sort_keys=True))
  if step_cache is not None and key in step_cache:
    step = step_cache[key]
  else:
    step = make_step(functools.partial(stage2_loss, model, cfg), tx)
    if step_cache is not None:
      step_cache[key] = step
  opt_state = parallel.replicate(tx.init(sft_params), mesh)
  return run(step, sft_params, opt_state, pref, cfg.steps, cfg.batch_size, cfg.optim.lr, seed,
             mesh, on_eval=on_eval, eval_every=eval_every, log=log, log_every=5)[0]


def trace_metrics(model: Transformer, params: Any, test: dict[str, np.ndarray],
                  chunk: int) -> dict[str, float]:
  """Held-out traces: mean per-token log-likelihood of the chosen and rejected traces and the
  share of pairs whose chosen trace is the likelier per token."""
  scored = preference_arrays(model, params, test, chunk)
  pos = scored['ref_pos'] / np.maximum(test['pos_mask'][:, 1:].sum(-1), 1)
  n_neg = test['neg_mask'][:, 1:].sum(-1)
  out = {'test_chosen_logp': float(pos.mean())}
  if (n_neg > 0).any():
    neg = (scored['ref_neg'] / np.maximum(n_neg, 1))[n_neg > 0]
    out |= {'test_rejected_logp': float(neg.mean()),
            'test_pair_accuracy': float((pos[n_neg > 0] > neg).mean())}
  return out


def load_data(config: ml_collections.ConfigDict):
  """(datasets, vocabulary size, initial parameters or None): the arithmetic task, or traces
  tokenized with `data.tokenizer` (and the `model.init_checkpoint` parameters when set)."""
  d = config.data
  trace_file = lm.string_setting(d, 'traces_jsonl')
  if not trace_file:
    ds = task.make_datasets(d.num_train, d.num_valid, d.num_test, d.samples_per_problem,
                            d.error_rate, d.seed)
    return ds, task.VOCAB_SIZE, None
  tokenizer = lm.load_tokenizer(d)
  eos = data.eos_id(tokenizer, lm.string_setting(d, 'eos_token') or None)
  ds = traces.make_datasets(trace_file, tokenizer, eos, d.max_len, d.num_test, d.pair_max_len)
  vocab_size, params = tokenizer.get_vocab_size(with_added_tokens=True), None
  if config.model.get(lm.INIT_CHECKPOINT):
    vocab_size, params = lm.load_init_checkpoint(config, vocab_size)
  return ds, vocab_size, params


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """SFT, then config.stage2.method; writes metrics.jsonl and returns the final test metrics
  (greedy pass@1 on the arithmetic task, held-out likelihoods on traces)."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  started = time.time()
  os.makedirs(workdir, exist_ok=True)
  ds, vocab_size, init_params = load_data(config)
  on_traces = isinstance(ds, traces.TraceDatasets)
  chunk = config.stage2.batch_size if on_traces else 512
  model = make_model(config, vocab_size)
  sft_log: list = []
  sft_params = train_sft(config, ds, mesh, sft_log, init_params, vocab_size)
  pref = preference_arrays(model, sft_params, ds.pref, chunk)
  evals: list = []

  def evaluate(params) -> dict[str, float]:
    if on_traces:
      return trace_metrics(model, params, ds.test, chunk)
    return {'test_pass1_greedy': pass_at_1(model, params, ds.test)}

  def on_eval(step, params):
    evals.append({'step': step, **evaluate(params)})

  stage2_log: list = []
  params = train_stage2(config, config.stage2, sft_params, pref, mesh, config.seed, on_eval,
                        config.eval.every, stage2_log, vocab_size=vocab_size)
  final = {k: v for k, v in evals[-1].items() if k != 'step'}
  if not on_traces:
    final['test_pass1_sampled'] = pass_at_1(model, params, ds.test, config.eval.temperature,
                                            config.eval.num_samples, config.seed)
  final |= {f'sft_{k}': v for k, v in evals[0].items() if k != 'step'}
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    for row in sft_log:
      f.write(json.dumps({'stage': 'sft', **row}) + '\n')
    for row in stage2_log:
      f.write(json.dumps({'stage': config.stage2.method, **row}) + '\n')
    for row in evals:
      f.write(json.dumps({'stage': 'eval', **row}) + '\n')
    f.write(json.dumps({'stage': 'final', **final, 'data': ds.stats}) + '\n')
  print(json.dumps(final))
  state = train.TrainState(step=jnp.int32(config.stage2.steps), params=params, opt_state=None,
                           rng=jax.random.key_data(jax.random.key(config.seed)))
  return train.FitResult(state, final, False, time.time() - started)
