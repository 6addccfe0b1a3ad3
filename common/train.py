"""The shared supervised trainer: explicit state, one jitted step, eval, metrics, checkpoints.

An experiment supplies pure functions and `fit` does the rest:

    loss_fn(params, batch, rng) -> (loss, {metric: value})   # differentiated
    eval_fn(params, batch) -> {metric: value}                  # averaged over eval batches
    evaluator(params) -> {metric: value}                      # host code, e.g. COCO AP
    train_batch(step) -> this process's rows of global batch `step` (numpy, pure in step)

Phases in order: mesh -> state -> shard -> step -> resume -> loop (log, eval, checkpoint).

Paper-scale options (all off by default): a mesh with an 'fsdp' axis (`parallel.mesh_from_config`
with `config.mesh.fsdp > 1`) shards parameters and optimizer state, and
`config.train.compute_dtype = 'bfloat16'` runs the loss in bfloat16 on float32 master weights,
and `config.train.grad_accum_steps = k` splits each batch into k micro-batches.
`config.train.steps_per_dispatch = k` runs k steps per jitted call (a `lax.scan` over k stacked
batches): one dispatch and one host round trip per k steps, for steps too short to hide them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging

from common import parallel, watchdog
from common.checkpoint import Checkpointer
from common.config import ConfigError
from common.metrics import MetricWriter, nonfinite

Batch = dict[str, np.ndarray]
SYNC_EVERY = 8  # host sync interval: deep async queues can deadlock CPU collectives


class NonFiniteError(RuntimeError):
  """A training metric became NaN or infinite; the last good checkpoint is kept."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def make_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup then constant / cosine / linear decay to `lr * final_lr_fraction`, or 'step':
  lr times `optim.decay_factor` at each of the (absolute) steps `optim.decay_steps`."""
  warmup = min(optim.warmup_steps, total_steps)
  decay_steps = max(total_steps - warmup, 1)
  final = optim.lr * optim.get('final_lr_fraction', 0.0)
  decay = {
      'constant': optax.constant_schedule(optim.lr),
      'cosine': optax.cosine_decay_schedule(optim.lr, decay_steps, final / optim.lr),
      'linear': optax.linear_schedule(optim.lr, final, decay_steps),
      'step': optax.piecewise_constant_schedule(
          optim.lr, {int(s) - warmup: optim.get('decay_factor', 0.1)
                     for s in optim.get('decay_steps', ())}),
  }[optim.schedule]
  if not warmup:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, optim.lr, warmup), decay], [warmup])


def make_optimizer(optim: ml_collections.ConfigDict, total_steps: int
                   ) -> optax.GradientTransformation:
  """optax chain from `config.optim`: clip -> {adamw | adam | sgd(+momentum, nesterov)}."""
  lr = make_schedule(optim, total_steps)
  if optim.name == 'adamw':
    core = optax.adamw(lr, b1=optim.get('b1', 0.9), b2=optim.get('b2', 0.999),
                       weight_decay=optim.weight_decay)
  elif optim.name == 'adam':
    core = optax.adam(lr, b1=optim.get('b1', 0.9), b2=optim.get('b2', 0.999))
  else:
    core = optax.chain(optax.add_decayed_weights(optim.weight_decay),
                       optax.sgd(lr, momentum=optim.get('momentum', 0.9) or None,
                                 nesterov=optim.get('nesterov', False)))
  clip = [optax.clip_by_global_norm(optim.grad_clip)] if optim.grad_clip else []
  return optax.chain(*clip, core)


def cast_floats(tree: Any, dtype: Any) -> Any:
  """Casts the floating-point leaves of `tree` to `dtype` (integer leaves are kept)."""
  return jax.tree.map(
      lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x,
      tree)


def with_compute_dtype(fn: Callable, compute_dtype: Any) -> Callable:
  """Mixed precision: `fn(params, ...)` sees `params` cast to `compute_dtype` (e.g. bfloat16);
  the caller keeps float32 master weights and gets float32 gradients through the cast."""
  if compute_dtype is None or jnp.dtype(compute_dtype) == jnp.float32:
    return fn

  def cast_fn(params, *args):
    return cast_floats(fn(cast_floats(params, compute_dtype), *args), jnp.float32)

  return cast_fn


def accumulate_gradients(grad_fn: Callable, num_micro: int) -> Callable:
  """`grad_fn(params, batch, rng) -> ((loss, metrics), grads)` over `num_micro` micro-batches
  in a `lax.scan`, averaged: the memory of one micro-batch, the update of the whole batch.

  Micro-batch j holds rows j, j + num_micro, ...: with the batch sharded in contiguous blocks
  over devices, every device keeps its own rows (no resharding). Micro-batch j's key is
  fold_in(rng, j). Exact for losses that are means over equally weighted rows.
  """
  if num_micro <= 1:
    return grad_fn

  def accumulated(params, batch, rng):
    def split(x):
      if x.shape[0] % num_micro:
        raise ValueError(f'batch of {x.shape[0]} rows does not split into {num_micro} '
                         'micro-batches: make train.batch_size divisible by grad_accum_steps')
      return x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:]).swapaxes(0, 1)

    micro = jax.tree.map(split, batch)

    def body(total, xs):
      j, mb = xs
      out = grad_fn(params, mb, jax.random.fold_in(rng, j))
      return jax.tree.map(lambda a, b: a + b / num_micro, total, out), None

    first = jax.tree.map(lambda x: x[0], micro)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(grad_fn, params, first, rng))
    total, _ = jax.lax.scan(body, zeros, (jnp.arange(num_micro), micro))
    return total

  return accumulated


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation,
                    compute_dtype: Any = None, grad_accum_steps: int = 1) -> Callable:
  """(state, batch) -> (state, metrics); the step's PRNG key is fold_in(state.rng, step).

  With `compute_dtype` (e.g. 'bfloat16') the loss runs on parameters cast to it, while the
  state keeps float32 master weights and float32 optimizer moments. With `grad_accum_steps`
  k > 1 the batch is processed as k micro-batches whose gradients are averaged.
  """
  loss_fn = with_compute_dtype(loss_fn, compute_dtype)
  grad_fn = accumulate_gradients(jax.value_and_grad(loss_fn, has_aux=True), grad_accum_steps)

  def train_step(state: TrainState, batch: Batch):
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, metrics), grads = grad_fn(state.params, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, 'grad_norm': optax.global_norm(grads), **metrics}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def scan_steps(train_step: Callable) -> Callable:
  """`train_step` over a block of batches stacked on axis 0, as one program (`lax.scan`);
  returns the new state and the metrics of the block's last step."""

  def block(state: TrainState, batches: Batch):
    state, metrics = jax.lax.scan(train_step, state, batches)
    return state, jax.tree.map(lambda m: m[-1], metrics)

  return block


def steps_per_dispatch(cfg: ml_collections.ConfigDict) -> int:
  """`train.steps_per_dispatch`, checked: every logged, evaluated or saved step ends a block."""
  k = cfg.get('steps_per_dispatch', 1)
  if k < 1:
    raise ConfigError(f'config.train.steps_per_dispatch={k}: set it to 1 or more')
  for name in ('log_every', 'eval_every', 'checkpoint_every'):
    if k > 1 and cfg.get(name, 0) % k:
      raise ConfigError(f'config.train.{name}={cfg.get(name)} is not a multiple of '
                        f'train.steps_per_dispatch={k}: make it one, or lower '
                        'steps_per_dispatch')
  return k


def init_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
  # `tx.init` as one program: eagerly it compiles one broadcast per parameter shape
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=jax.jit(tx.init)(params),
                    rng=jax.random.key_data(jax.random.key(seed)))


@dataclasses.dataclass
class FitResult:
  state: TrainState
  eval_metrics: dict[str, float]
  preempted: bool = False
  seconds: float = 0.0


class Preemption:
  """SIGTERM as a flag the loop checks, so the run checkpoints and exits cleanly.

  One process: a Python SIGTERM handler sets the flag. Several processes (`jax.distributed`):
  JAX's preemption service receives the notice on any process and all processes agree on the
  step to save at (`multihost_utils.reached_preemption_sync_point`), so their checkpoints match.
  """

  def __init__(self):
    self.requested = False
    self._previous = None
    self._multihost = False

  def __enter__(self):
    from jax._src import distributed
    self._multihost = (jax.process_count() > 1
                       and distributed.global_state.preemption_sync_manager is not None)
    if self._multihost:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread
      self._previous = None
    return self

  def _handle(self, *_):
    logging.warning('SIGTERM: saving a checkpoint at the current step, then exiting')
    self.requested = True

  def reached(self, step: int) -> bool:
    """Whether to save and stop after `step` (call at every step, on every process)."""
    if self._multihost and not self.requested:
      from jax.experimental import multihost_utils
      self.requested = bool(multihost_utils.reached_preemption_sync_point(step))
    return self.requested

  def __exit__(self, *_):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def evaluate(eval_step: Callable, params: Any, batches: Iterable[Batch],
             mesh: jax.sharding.Mesh) -> dict[str, float]:
  """Mean of `eval_step` metrics over the batches (equal-sized batches)."""
  totals, n = {}, 0
  for i, batch in enumerate(batches):
    metrics = eval_step(params, parallel.shard_batch(batch, mesh))
    if i % SYNC_EVERY == SYNC_EVERY - 1:
      jax.block_until_ready(metrics)
    totals = metrics if not totals else jax.tree.map(jnp.add, totals, metrics)
    n += 1
  return {k: float(v) / n for k, v in jax.device_get(totals).items()}


def fit(config: ml_collections.ConfigDict, workdir: str, *, mesh: jax.sharding.Mesh,
        params: Any, loss_fn: Callable, train_batch: Callable[[int], Batch],
        eval_fn: Callable | None = None,
        eval_batches: Callable[[], Iterable[Batch]] | None = None,
        tx: optax.GradientTransformation | None = None,
        evaluator: Callable[[Any], dict[str, float]] | None = None) -> FitResult:
  """Trains `config.train.steps` steps from the newest good checkpoint in `workdir`.

  `evaluator(params)` runs at the same steps as `eval_fn` (every `train.eval_every` and at the
  end); its metrics join `eval_fn`'s under `eval/`."""
  cfg = config.train
  started = time.time()
  compute_dtype = cfg.get('compute_dtype', None)  # mixed precision, e.g. 'bfloat16'
  accum = cfg.get('grad_accum_steps', 1)
  if accum > 1 and cfg.batch_size % (accum * mesh.size):
    raise ConfigError(f'config.train.batch_size={cfg.batch_size} does not split into '
                      f'grad_accum_steps={accum} micro-batches over {mesh.size} devices: make '
                      f'it a multiple of {accum * mesh.size}')
  block = steps_per_dispatch(cfg)
  # --- state -----------------------------------------------------------------------------
  tx = tx or make_optimizer(config.optim, cfg.steps)
  if parallel.fsdp_size(mesh) > 1:  # parameters and optimizer state sharded over 'fsdp'
    make_state = lambda p: init_state(p, tx, config.seed)  # noqa: E731
    min_size = config.get('mesh', {}).get('fsdp_min_size', parallel.FSDP_MIN_SIZE)
    shardings = parallel.param_sharding(jax.eval_shape(make_state, params), mesh, min_size)
    state = jax.jit(make_state, out_shardings=shardings)(
        jax.device_put(params, shardings.params))
  else:
    shardings = None
    state = parallel.replicate(init_state(params, tx, config.seed), mesh)
  # --- step --------------------------------------------------------------------------------
  step_fn = make_train_step(loss_fn, tx, compute_dtype, accum)
  if block > 1:
    step_fn = scan_steps(step_fn)
  if shardings is None:
    train_step = jax.jit(step_fn, donate_argnums=0)
  else:
    train_step = jax.jit(step_fn, donate_argnums=0, out_shardings=(shardings, None))
  eval_fn = with_compute_dtype(eval_fn, compute_dtype) if eval_fn is not None else None
  eval_step = jax.jit(eval_fn) if eval_fn is not None else None
  evaluates = eval_step is not None or evaluator is not None
  # --- resume ------------------------------------------------------------------------------
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'), cfg.keep_checkpoints,
                      config.to_json_best_effort(), strict=not config.get('force_resume', False))
  state, start = ckpt.restore_latest(state)
  if start and jax.process_index() == 0:
    tqdm.tqdm.write(f'{workdir}: resumed from step {start} of {cfg.steps}')
  writer = MetricWriter(workdir, resume_step=start)
  eval_metrics: dict[str, float] = {}

  def run_eval(step: int) -> dict[str, float]:
    watchdog.beat('eval', step)
    metrics = evaluate(eval_step, state.params, eval_batches(), mesh) if eval_step else {}
    if evaluator is not None:
      metrics.update(evaluator(state.params))
    writer.write_scalars(step, {f'eval/{k}': v for k, v in metrics.items()})
    if jax.process_index() == 0:
      tqdm.tqdm.write(f'step {step} eval {json.dumps(metrics)}')
    return metrics

  # --- loop --------------------------------------------------------------------------------
  lr_at = make_schedule(config.optim, cfg.steps)
  progress = tqdm.tqdm(total=cfg.steps, initial=start, disable=jax.process_index() != 0,
                       mininterval=2.0, desc=os.path.basename(workdir.rstrip('/')))
  examples = cfg.batch_size  # global batch
  timed_from, timed_step = time.perf_counter(), start
  with Preemption() as preemption:
    step = start
    while step < cfg.steps:
      watchdog.beat('train' if step > start else 'compile and first train step', step)
      n = min(block - step % block, cfg.steps - step)  # blocks end at multiples of it
      if block == 1:
        batch = parallel.shard_batch(train_batch(step), mesh)
      else:
        batch = parallel.shard_batch(
            jax.tree.map(lambda *b: np.stack(b), *map(train_batch, range(step, step + n))),
            mesh, leading=1)
      state, metrics = train_step(state, batch)
      done = step + n
      if done % cfg.log_every == 0 or done == cfg.steps:  # the logged step's own values
        logged = {k: float(v) for k, v in jax.device_get(metrics).items()}
        now = time.perf_counter()  # throughput since the last log (the first includes compile)
        steps_per_s = (done - timed_step) / max(now - timed_from, 1e-9)
        timed_from, timed_step = now, done
        perf = {'perf/steps_per_s': steps_per_s, 'perf/examples_per_s': steps_per_s * examples}
        bad = nonfinite(logged)
        if bad:
          ckpt.wait()
          raise NonFiniteError(f'step {done}: train/{bad} is {logged[bad]}; stopped, the last '
                               'good checkpoint is kept (lower optim.lr or check the data)')
        writer.write_scalars(done, {f'train/{k}': v for k, v in logged.items()}
                             | {'train/lr': float(lr_at(done - 1))} | perf)
        rate = perf['perf/examples_per_s']
        progress.set_postfix(loss=f'{logged["loss"]:.4f}', ex_per_s=f'{rate:.0f}', refresh=False)
      elif done % SYNC_EVERY < n:
        jax.block_until_ready(state)
      progress.update(n)
      if evaluates and cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
        eval_metrics = run_eval(done)
      stop = preemption.reached(done)
      if done % cfg.checkpoint_every == 0 or done == cfg.steps or stop:
        watchdog.beat('checkpoint', done)
        ckpt.save(done, state)
      if stop:
        break
      step = done
  progress.close()
  if evaluates and not preemption.requested:
    eval_metrics = run_eval(int(state.step))
  watchdog.beat('checkpoint', int(state.step))
  ckpt.wait()
  writer.close()
  return FitResult(state, eval_metrics, preemption.requested, time.time() - started)
