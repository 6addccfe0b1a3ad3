"""REDI's two stages, each one run of `common.train.fit`: SFT on positive traces, then a
preference objective started from the SFT run's checkpoint.

    python -m common.main --config=configs/redi/addition.py:smoke --workdir=/tmp/redi_sft
    python -m common.main --config=configs/redi/addition.py:redi,smoke --workdir=/tmp/redi_pref \
        --config.init_from=/tmp/redi_sft

`config.stage` is 'sft' (stage 1: token-mean cross-entropy on the correct traces, from a fresh
initialisation or `model.init_checkpoint`) or 'preference' (stage 2 from the newest checkpoint
of the run in `config.init_from`, with a fresh optimizer). Preference methods
(`config.preference.method`): 'redi' (alpha from the config; alpha = 1 is the symmetric
objective), 'dpo' (the reference log-probabilities come from the restored SFT parameters),
'simpo', 'sft' (continued SFT: stage 1's loss on the SFT traces).

Data (`config.data.task`): 'addition' (`papers/redi/addition.py`: a long reliable and a short
unreliable strategy), 'arith' (`papers/redi/task.py`: one deterministic solution, random slips),
or, with `data.traces_jsonl` and `data.tokenizer`, teacher traces from a file
(`papers/redi/traces.py`).

Evaluators, every `train.eval_every` steps and at the end (`eval/<name>` in metrics.jsonl, the
final values in result.json). On both tasks: greedy pass@1 on the validation and test problems
and, with `eval.num_samples` = k > 0, on the test problems k samples at `eval.temperature`
(`test_pass1_sampled`, their mean; `test_passk_sampled`, pass@k), checked by the task's verifier
on token ids. On the addition task also: the exact expected pass@1 at the temperature
(`*_pass1_exact`: the probabilities of the two correct completions under softmax(logits / T),
summed), the long strategy's share (`test_long_share_exact`: P(first token ';'), and its share
of the greedy and sampled outputs), each strategy's accuracy when forced (greedy from the prompt
plus its first token, `*_pass1_greedy_{long,short}_forced`; exact P(correct | first token),
`test_pass1_exact_{long,short}_forced`). On every data source, the held-out pairs' mean
per-token log-likelihood of the correct (chosen) and incorrect (rejected) trace and the share of
pairs whose correct trace is the likelier per token (the only evaluators on a trace file, which
has no verifier). The SFT run also reports its floors: `floor/untrained_<metric>` (the
evaluators on the initial parameters) and, on the tasks, `floor/majority_answer_test_pass1`
(every test problem answered with the most frequent training answer).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from common import checkpoint, data, lm, parallel, train
from common import config as cfglib
from common.lm import token_cross_entropy
from common.models.transformer import Transformer
from papers.redi import addition, losses, task, traces

STAGES = ('sft', 'preference')
TASKS = {'arith': task, 'addition': addition}  # data.task -> its module
METHODS = ('redi', 'dpo', 'simpo', 'sft')
EVAL_SALT = 1  # the sampling keys of the evaluation: fold_in(key(seed), EVAL_SALT), then row


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


def preference_loss(model: Transformer, cfg: ml_collections.ConfigDict, params: Any, batch: dict
                    ) -> tuple[jax.Array, dict]:
  """The stage-2 objective named by cfg.method (`papers/redi/losses.py`), mean over the pairs;
  the batch's mean per-token log-likelihood of chosen and rejected traces as metrics."""
  s_pos, n_pos, s_neg, n_neg = pair_logprobs(model, params, batch)
  if cfg.method == 'redi':
    per_example = losses.redi_loss(s_pos, n_pos, s_neg, n_neg, cfg.alpha, cfg.neg_gamma)
  elif cfg.method == 'dpo':
    per_example = losses.dpo_loss(s_pos, s_neg, batch['ref_pos'], batch['ref_neg'], cfg.dpo_beta)
  elif cfg.method == 'simpo':
    per_example = losses.simpo_loss(s_pos, n_pos, s_neg, n_neg, cfg.simpo_beta, cfg.simpo_gamma)
  else:
    raise ValueError(f'preference_loss has no objective {cfg.method!r}: continued SFT '
                     "(method 'sft') trains with sft_loss on the SFT traces")
  metrics = {'chosen_logp': (s_pos / n_pos).mean(), 'rejected_logp': (s_neg / n_neg).mean()}
  return per_example.mean(), metrics


def reference_logprobs(model: Transformer, params: Any, pairs: dict[str, np.ndarray],
                       chunk: int, mesh: jax.sharding.Mesh) -> dict[str, np.ndarray]:
  """The pairs plus the reference model's S(y+), S(y-) (`ref_pos`, `ref_neg`; DPO's
  reference), in sharded chunks of `chunk` pairs (the last one padded)."""
  fn = jax.jit(lambda p, b: pair_logprobs(model, p, b)[::2])
  n = len(pairs['pos_tokens'])
  padded = _pad_rows(pairs, chunk)
  out = [multihost_utils.process_allgather(
      fn(params, parallel.shard_batch(data.take(padded, np.arange(i, i + chunk)), mesh)),
      tiled=True) for i in range(0, len(padded['pos_tokens']), chunk)]
  return {**pairs, 'ref_pos': np.concatenate([o[0] for o in out])[:n],
          'ref_neg': np.concatenate([o[1] for o in out])[:n]}


def place_params(config: ml_collections.ConfigDict, params: Any, mesh: jax.sharding.Mesh
                 ) -> Any:
  """Parameters on the mesh as `fit` holds them: FSDP-sharded or replicated."""
  if parallel.fsdp_size(mesh) > 1:
    min_size = config.get('mesh', {}).get('fsdp_min_size', parallel.FSDP_MIN_SIZE)
    return parallel.shard_params(params, mesh, min_size)
  return parallel.replicate(params, mesh)


# --- decoding and evaluators ----------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=('model', 'temperature', 'seq_len'))
def generate(model: Transformer, params: Any, prompts: jax.Array, keys: jax.Array | None = None,
             temperature: float = 0.0, seq_len: int = task.SEQ_LEN) -> jax.Array:
  """Completes prompts [N, P] to [N, seq_len]: greedy when temperature == 0, else row i samples
  token t from softmax(logits / temperature) with key fold_in(keys[i], t) (so a row's sample
  does not depend on the batch it is in). Full recompute per token (tiny sequences)."""
  n, prompt_len = prompts.shape
  buf = jnp.zeros((n, seq_len), jnp.int32).at[:, :prompt_len].set(prompts)

  def body(t, buf):
    logits = jax.lax.dynamic_index_in_dim(model.apply(params, buf), t - 1, 1, False)
    if temperature == 0:
      nxt = jnp.argmax(logits, -1)
    else:
      nxt = jax.vmap(lambda k, x: jax.random.categorical(jax.random.fold_in(k, t),
                                                         x / temperature))(keys, logits)
    return jax.lax.dynamic_update_index_in_dim(buf, nxt.astype(jnp.int32), t, 1)

  return jax.lax.fori_loop(prompt_len, seq_len, body, buf)


@dataclasses.dataclass
class Evaluation:
  """The evaluators as `fit` takes them: `eval_fn(params, batch)` over `batches()`.

  Every metric is a weighted mean over the evaluation rows; each batch returns its weighted sum
  times (number of batches / total weight), so fit's mean over batches is the exact mean."""
  eval_fn: Callable[[Any, dict], dict[str, jax.Array]]
  rows: dict[str, np.ndarray]
  batch_size: int

  def batches(self) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(next(iter(self.rows.values()))), self.batch_size):
      yield data.take(self.rows, np.arange(start, start + self.batch_size))


def _pad_rows(rows: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
  """Rows padded with zeros (weight 0) to a multiple of `multiple`."""
  n = len(next(iter(rows.values())))
  pad = -n % multiple
  return {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in rows.items()}


def pass_at_k(n: int, c: jax.Array, k: int) -> jax.Array:
  """The unbiased pass@k of n samples with c correct: 1 - C(n - c, k) / C(n, k)."""
  i = jnp.arange(k)
  return 1.0 - jnp.prod(jnp.clip((n - c[:, None] - i) / (n - i), 0.0, 1.0), -1)


def strategy_logprobs(model: Transformer, params: Any, batch: dict, temperature: float
                      ) -> dict[str, jax.Array]:
  """On the addition task, at softmax(logits / temperature): log P(first token = s) for each
  strategy s and log P(s's correct completion), each [B] (teacher-forced, exact)."""
  p = addition.PROMPT_LEN
  out = {}
  for name in addition.STRATEGIES:
    target = batch[f'{name}_target']
    tokens = jnp.concatenate([batch['prompt'], target], -1)
    is_eos = target == addition.EOS
    upto = ((jnp.cumsum(is_eos, -1) - is_eos) == 0).astype(jnp.float32)
    mask = jnp.concatenate([jnp.zeros_like(batch['prompt'], jnp.float32), upto], -1)
    logits = model.apply(params, tokens) / temperature
    out[f'{name}_correct'] = losses.sequence_logprob(logits, tokens, mask)[0]
    out[f'{name}_first'] = jax.nn.log_softmax(logits[:, p - 1], -1)[:, addition.STRATEGIES[name]]
  return out


def make_evaluation(model: Transformer, config: ml_collections.ConfigDict,
                    ds: task.Datasets | traces.TraceDatasets) -> Evaluation:
  """The evaluators (see the module doc) over the validation and test rows."""
  on_task = isinstance(ds, task.Datasets)
  pairs = ds.test_pairs if on_task else ds.test
  n_pairs = len(pairs['pos_tokens'])
  rows = {**pairs, 'w_chosen': np.ones(n_pairs, np.float32),
          'w_pair': (pairs['neg_mask'].sum(-1) > 0).astype(np.float32)}
  mod = TASKS[config.data.get('task', 'arith')] if on_task else None
  if on_task:  # the test problems, then the validation problems (no pairs)
    n_valid = len(ds.valid)
    rows = {k: np.concatenate([v, np.zeros((n_valid,) + v.shape[1:], v.dtype)])
            for k, v in rows.items()}
    problems = ds.test + ds.valid
    rows |= {'prompt': mod.prompts(problems),
             'w_test': np.r_[np.ones(n_pairs), np.zeros(n_valid)].astype(np.float32),
             'w_valid': np.r_[np.zeros(n_pairs), np.ones(n_valid)].astype(np.float32)}
    rows |= (addition.targets(problems) if mod is addition
             else {'answer': task.answers(problems)})
    base = jax.random.fold_in(jax.random.key(config.seed), EVAL_SALT)
    rows['key'] = np.asarray(jax.random.key_data(
        jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(len(problems)))))
  batch_size = config.eval.batch_size
  rows = _pad_rows(rows, batch_size)
  num_batches = len(rows['w_chosen']) // batch_size
  scale = {k: num_batches / max(float(rows[k].sum()), 1.0) for k in rows if k.startswith('w_')}
  temperature, k = float(config.eval.temperature), config.eval.num_samples

  def mean(name: str, values: jax.Array, batch: dict) -> jax.Array:
    return jnp.sum(batch[name] * values) * scale[name]

  def on_both(out: dict, name: str, values: jax.Array, batch: dict) -> None:
    out[f'valid_{name}'] = mean('w_valid', values, batch)
    out[f'test_{name}'] = mean('w_test', values, batch)

  def verify(completions: jax.Array, batch: dict, reps: int = 1) -> jax.Array:
    if mod is addition:
      return addition.verify_ids(completions, jnp.tile(batch['long_target'], (reps, 1)),
                                 jnp.tile(batch['short_target'], (reps, 1)))
    return task.verify_ids(completions, jnp.tile(batch['answer'], reps))

  def decode(params, prompt, keys=None, temp=0.0):
    return generate(model, params, prompt, keys, temp, mod.SEQ_LEN)[:, mod.PROMPT_LEN:]

  def eval_fn(params, batch):
    s_pos, n_pos, s_neg, n_neg = pair_logprobs(model, params, batch)
    pos, neg = s_pos / jnp.maximum(n_pos, 1), s_neg / jnp.maximum(n_neg, 1)
    out = {'test_chosen_logp': mean('w_chosen', pos, batch),
           'test_rejected_logp': mean('w_pair', neg, batch),
           'test_pair_accuracy': mean('w_pair', (pos > neg).astype(jnp.float32), batch)}
    if not on_task:
      return out
    greedy = decode(params, batch['prompt'])
    on_both(out, 'pass1_greedy', verify(greedy, batch).astype(jnp.float32), batch)
    if mod is addition:
      out['test_long_share_greedy'] = mean(
          'w_test', (greedy[:, 0] == addition.LONG_ID).astype(jnp.float32), batch)
      for name, first in addition.STRATEGIES.items():  # the strategy forced
        forced = jnp.concatenate([batch['prompt'], jnp.full_like(batch['prompt'][:, :1], first)],
                                 -1)
        ok = verify(decode(params, forced), batch).astype(jnp.float32)
        on_both(out, f'pass1_greedy_{name}_forced', ok, batch)
      exact = strategy_logprobs(model, params, batch, temperature)
      on_both(out, 'pass1_exact', jnp.exp(exact['long_correct']) + jnp.exp(exact['short_correct']),
              batch)
      out['test_long_share_exact'] = mean('w_test', jnp.exp(exact['long_first']), batch)
      for name in addition.STRATEGIES:  # P(correct | the strategy's first token)
        out[f'test_pass1_exact_{name}_forced'] = mean(
            'w_test', jnp.exp(exact[f'{name}_correct'] - exact[f'{name}_first']), batch)
    if not k:
      return out
    keys = jax.random.wrap_key_data(batch['key'])
    sample_keys = jax.vmap(lambda j: jax.vmap(lambda key: jax.random.fold_in(key, j))(keys))(
        jnp.arange(k)).reshape(-1)
    sampled = decode(params, jnp.tile(batch['prompt'], (k, 1)), sample_keys, temperature)
    correct = verify(sampled, batch, k).astype(jnp.float32).reshape(k, -1).sum(0)
    out |= {'test_pass1_sampled': mean('w_test', correct / k, batch),
            'test_passk_sampled': mean('w_test', pass_at_k(k, correct, k), batch)}
    if mod is addition:
      long = (sampled[:, 0] == addition.LONG_ID).astype(jnp.float32).reshape(k, -1).mean(0)
      out['test_long_share_sampled'] = mean('w_test', long, batch)
    return out

  return Evaluation(eval_fn, rows, batch_size)


# --- the experiment -------------------------------------------------------------------------------

def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.validate_train(config, num_devices)
  cfglib.check_positive_int(config, 'model.num_layers', 'model.d_model', 'model.num_heads',
                            'model.mlp_dim', 'data.num_train', 'data.num_test',
                            'data.samples_per_problem', 'eval.batch_size')
  cfglib.check_nonneg_int(config, 'data.num_valid', 'eval.num_samples')
  cfglib.check_divisible(config, 'eval.batch_size', num_devices, 'the number of devices')
  cfglib.check_choice(config, 'stage', STAGES)
  cfglib.check_choice(config, 'preference.method', METHODS)
  cfglib.check_choice(config, 'data.task', tuple(TASKS))
  rates = ('short_rate', 'carry_drop', 'long_error_rate') if config.data.task == 'addition' \
      else ('error_rate',)
  for rate in rates:
    cfglib.check_range(config, f'data.{rate}', 0.0, 1.0)
  cfglib.check_range(config, 'eval.temperature', 0.0, 100.0, low_open=True)
  if config.model.d_model % config.model.num_heads:
    raise cfglib.ConfigError(f'config.model.d_model={config.model.d_model} is not divisible by '
                             f'config.model.num_heads={config.model.num_heads}: change either')
  init_from = config.get('init_from', '')
  if config.stage == 'preference' and not init_from:
    raise cfglib.ConfigError("config.stage='preference' needs --config.init_from=<the SFT run's "
                             'workdir> (its newest checkpoint is where stage 2 starts)')
  if config.stage == 'sft' and init_from:
    raise cfglib.ConfigError(f"config.init_from={init_from!r} is set but config.stage='sft' "
                             'starts from a fresh or `model.init_checkpoint` initialisation: '
                             "unset it or pass --config.stage='preference'")
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


@functools.cache  # read-only; runs of a sweep share it
def _task_datasets(d: tuple) -> task.Datasets:
  d = dict(d)
  sizes = (d['num_train'], d['num_valid'], d['num_test'], d['samples_per_problem'])
  if d['task'] == 'addition':
    return addition.make_datasets(*sizes, d['short_rate'], d['carry_drop'],
                                  d['long_error_rate'], d['seed'])
  return task.make_datasets(*sizes, d['error_rate'], d['seed'])


def load_data(config: ml_collections.ConfigDict, load_params: bool = True):
  """(datasets, vocabulary size, initial parameters or None): the arithmetic task, or traces
  tokenized with `data.tokenizer` (and, with `load_params`, the `model.init_checkpoint`
  parameters when set)."""
  d = config.data
  trace_file = lm.string_setting(d, 'traces_jsonl')
  if not trace_file:
    ds = _task_datasets(tuple(sorted(d.to_dict().items())))
    return ds, TASKS[d.task].VOCAB_SIZE, None
  tokenizer = lm.load_tokenizer(d)
  eos = data.eos_id(tokenizer, lm.string_setting(d, 'eos_token') or None)
  ds = traces.make_datasets(trace_file, tokenizer, eos, d.max_len, d.num_test, d.pair_max_len)
  vocab_size, params = tokenizer.get_vocab_size(with_added_tokens=True), None
  if config.model.get(lm.INIT_CHECKPOINT) and load_params:
    vocab_size, params = lm.load_init_checkpoint(config, vocab_size)
  return ds, vocab_size, params


def floors(config: ml_collections.ConfigDict, ds, evaluation: Evaluation, params: Any,
           mesh: jax.sharding.Mesh) -> dict[str, float]:
  """The trivial baselines of the evaluators: their values on the initial parameters and, on
  the arithmetic task, the majority answer's test pass@1."""
  untrained = train.evaluate(jax.jit(evaluation.eval_fn), place_params(config, params, mesh),
                             evaluation.batches(), mesh)
  out = {f'floor/untrained_{k}': v for k, v in untrained.items()}
  if isinstance(ds, task.Datasets):
    majority = task.majority_answer(ds.train)
    out['floor/majority_answer_test_pass1'] = float(np.mean(task.answers(ds.test) == majority))
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """One stage (`config.stage`) through `common.train.fit`; final metrics are the evaluators'
  (plus `floor/*` and `data/*` for the SFT stage)."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  sft = config.stage == 'sft'
  ds, vocab_size, params = load_data(config, load_params=sft)
  if not sft:  # stage 2: the SFT run's parameters (and so its vocabulary)
    params = checkpoint.restore_params(config.init_from)
    vocab_size = params['params']['embed']['embedding'].shape[0]
  model = make_model(config, vocab_size)
  evaluation = make_evaluation(model, config, ds)
  extra: dict[str, float] = {}
  if sft:
    if params is None:
      params = jax.jit(model.init)(jax.random.key(config.seed),
                                   jnp.zeros((1, ds.sft['tokens'].shape[1]), jnp.int32))
    extra = floors(config, ds, evaluation, params, mesh)
    extra |= {f'data/{k}': float(v) for k, v in ds.stats.items()}
    arrays = ds.sft
    loss_fn = functools.partial(sft_loss, model)
  elif config.preference.method == 'sft':  # continued SFT on the correct traces
    arrays = ds.sft
    loss_fn = functools.partial(sft_loss, model)
  else:
    arrays = ds.pref
    if config.preference.method == 'dpo':
      arrays = reference_logprobs(model, place_params(config, params, mesh), arrays,
                                  config.eval.batch_size, mesh)
    loss_fn = functools.partial(preference_loss, model, config.preference)
  order = data.batch_indices(len(arrays[next(iter(arrays))]), config.train.batch_size,
                             config.seed)
  result = train.fit(config, workdir, mesh=mesh, params=params,
                     loss_fn=lambda p, batch, rng: loss_fn(p, batch),
                     train_batch=lambda step: data.take(arrays, order[step]),
                     eval_fn=evaluation.eval_fn, eval_batches=evaluation.batches)
  if result.preempted:
    return result
  return dataclasses.replace(result, eval_metrics={**result.eval_metrics, **extra})
