"""Reproduces ParScale's parallel scaling on a character LM (Tiny Shakespeare), CPU-sized.

    python -m papers.parscale.reproduce            # full (about 45 minutes on 2 CPU cores)
    python -m papers.parscale.reproduce --quick    # smoke configs, same code path

Arms (`configs/parscale/char_lm.py` runs; at one seed every arm shares the base run's
backbone or, from scratch, its initialisation and batches):
- `base`: the P = 1 LM (d = 64, 2 heads of 32), 2400 steps from scratch (stage 1), 4 seeds;
- the paper's frozen-backbone setting (`:frozen`, `sweep.After('base')`): P in {1, 2, 4, 8}
  with the base backbone fixed, 600 steps training only the prefixes and the aggregator;
  P = 1 keeps its prefixes (prefix tuning alone), and `frozen_P1_slots64` is P = 1 with the
  8 x 8 prefix slots of P = 8 (the same prefix parameters, the same initial values, one
  stream): "more prefix parameters" against "more parallel computation";
- `scratch_P4`: the calibration, P = 4 trained from scratch like `base` (3 seeds).
Analysis: the claims via `common.stats` against the bigram floor with convergence checks,
the streams' statistics, and a forward-pass cost table (untrained models, no training).
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from common import lm, plots, results, stats, sweep
from papers.parscale import floors
from papers.parscale import scaling_law as sl
from papers.parscale.model import ParScaleLM, count_parameters

PAPER = 'parscale'
TITLE = 'Parallel Scaling Law for Language Models'
CONFIG = 'configs/parscale/char_lm.py'
SEEDS = (0, 1, 2, 3)
QUICK_SEEDS = (0, 1, 2)
SCRATCH_SEEDS = (0, 1, 2)
FULL = dict(streams=(1, 2, 4, 8), scratch_streams=4, bench_batches=(1, 8), bench_repeats=5)
QUICK = dict(streams=(1, 2), scratch_streams=2, bench_batches=(1,), bench_repeats=1)
# Convergence: a curve counts as flat when its seed mean fell by at most TOL nats/char over the
# last WINDOW of its evaluations. From scratch: 0.02; frozen stage: 0.005, below the
# differences between P that the claims test.
TOL_SCRATCH, TOL_FROZEN, WINDOW = 0.02, 0.005, 0.25
FLOOR_MARGIN = 0.01  # an arm counts as trained when 0.01 nats/char below the bigram floor
PAPER_LOSS = 'Pile, N = 1.6B: P=1 1.9539, P=2 1.9266, P=4 1.9040, P=8 1.8856 (Table 1 data)'
PAPER_FROZEN = ('Qwen-2.5-3B frozen, only prefixes and aggregator trained on Stack-V2-Python '
                '(ParScale-Qwen-3B-P{2,4,8}-Python): remains effective, loss falls with P')


def settings(quick: bool) -> dict:
  return QUICK if quick else FULL


def spec(quick: bool, *args: str) -> str:
  return sweep.spec(CONFIG, *args, smoke=quick)


def frozen_name(p: int) -> str:
  return f'frozen_P{p}'


def slots_name(quick: bool) -> str:
  return f'frozen_P1_slots{settings(quick)["streams"][-1] * num_prefix(quick)}'


def num_prefix(quick: bool) -> int:
  return sweep.load_config(spec(quick, 'frozen')).parscale.num_prefix


def arms(quick: bool) -> list[sweep.Arm]:
  s = settings(quick)
  frozen = spec(quick, 'frozen')
  stage2 = {'parscale.init_from': sweep.After('base')}
  m, p_max = num_prefix(quick), s['streams'][-1]
  frozen_arm = lambda p: sweep.Arm(frozen_name(p), frozen, {  # noqa: E731
      **stage2, 'parscale.num_streams': p, 'parscale.prefix_at_p1': p == 1})
  # longest runs first after the base runs (the runner keeps both cores busy to the end)
  return [
      sweep.Arm('base', spec(quick), {'parscale.num_streams': 1}),
      frozen_arm(p_max),
      sweep.Arm(f'scratch_P{s["scratch_streams"]}', spec(quick),
                {'parscale.num_streams': s['scratch_streams']}, seeds=SCRATCH_SEEDS),
      *(frozen_arm(p) for p in reversed(s['streams'][:-1])),
      sweep.Arm(slots_name(quick), frozen, {
          **stage2, 'parscale.num_streams': 1, 'parscale.prefix_at_p1': True,
          'parscale.num_prefix': p_max * m, 'parscale.snippet_len': m}),
  ]


# --- floors and curves --------------------------------------------------------------------------

def validation_floors(quick: bool) -> dict[str, float]:
  """Unigram and bigram cross-entropy (nats/char) of the windows the experiment evaluates."""
  config = sweep.load_config(spec(quick))
  corpus = lm.load_corpus(config.data.data_dir)
  windows = lm.windows(corpus.valid, config.data.seq_len)
  batch = config.train.batch_size
  rows = min(config.train.eval_batches * batch, len(windows) // batch * batch)
  return {'unigram': floors.unigram_cross_entropy(corpus.train, windows[:rows],
                                                  corpus.vocab_size),
          'bigram': floors.bigram_cross_entropy(corpus.train, windows[:rows], corpus.vocab_size)}


def converged(runs: dict[str, list[sweep.Run]], tol: float, *names: str) -> dict[str, dict]:
  return {n: stats.convergence(sweep.curves(runs[n], 'eval/loss')[1], tol,
                               higher_is_better=False, window=WINDOW) for n in names}


def paired(runs: dict[str, list[sweep.Run]], key: str, *names: str) -> dict[str, list[float]]:
  """{arm: [final `key` per seed]} over the seeds every named arm ran (seed order)."""
  common = sorted(set.intersection(*({r.seed for r in runs[n]} for n in names)))
  return {n: [float(next(r for r in runs[n] if r.seed == s).metrics[key]) for s in common]
          for n in names}


def steps_per_s(run: sweep.Run) -> float:
  """Median training throughput of a run (its metrics.jsonl; the first log, with the
  compile, left out)."""
  values = run.history('perf/steps_per_s')[1]
  return float(np.median(values[1:] if len(values) > 1 else values))


# --- inference cost (forward passes of untrained models; no training) ----------------------------

def model_for(vocab: int, d: int, p: int, m: int) -> ParScaleLM:
  return ParScaleLM(vocab, p, m, eps=0.1, model=dict(num_layers=2, d_model=d, num_heads=2,
                                                     num_kv_heads=2, mlp_dim=4 * d))


def forward_cost(vocab: int, d: int, p: int, m: int, batch: int, seq_len: int,
                 repeats: int) -> dict:
  """Median forward latency (s), XLA's memory estimate (params + temporaries, bytes) and N."""
  model = model_for(vocab, d, p, m)
  tokens = jnp.zeros((batch, seq_len), jnp.int32)
  params = model.init(jax.random.key(0), tokens)
  fn = jax.jit(model.apply)
  mem = fn.lower(params, tokens).compile().memory_analysis()
  memory = (sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
            + (mem.temp_size_in_bytes if mem is not None else 0))
  jax.block_until_ready(fn(params, tokens))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(params, tokens))
    times.append(time.perf_counter() - start)
  return {'latency': float(np.median(times)), 'memory': memory,
          'N': count_parameters(params)['non_embedding']}


def width_for(target_n: float, vocab: int) -> int:
  """The smallest width (a multiple of 4: even RoPE head size) whose P = 1 N reaches target_n."""
  d = 4
  while count_parameters(jax.eval_shape(lambda d=d: model_for(vocab, d, 1, 1).init(
      jax.random.key(0), jnp.zeros((1, 4), jnp.int32))))['non_embedding'] < target_n:
    d += 4
  return d


def ratio(wide_increase: float, par_increase: float) -> float:
  """Wide model's cost increase over the P streams' (nan when the streams cost nothing more,
  i.e. within timing noise)."""
  return wide_increase / par_increase if par_increase > 0 else float('nan')


def inference_table(s: dict, seq: int, m: int, vocab: int, d: int, k: float
                    ) -> tuple[list, list]:
  """P streams vs the P = 1 model widened to N (k ln P + 1): forward latency and memory."""
  rows, ratios = [], []
  reps = s['bench_repeats']
  for batch in s['bench_batches']:
    base = forward_cost(vocab, d, 1, m, batch, seq, reps)
    for p in s['streams'][1:]:
      par = forward_cost(vocab, d, p, m, batch, seq, reps)
      wide_d = width_for(base['N'] * float(sl.multiplier(k, p)), vocab)
      wide = forward_cost(vocab, wide_d, 1, m, batch, seq, reps)
      rows.append([batch, p, wide_d, round(base['latency'] * 1e3, 3),
                   round(par['latency'] * 1e3, 3), round(wide['latency'] * 1e3, 3),
                   base['memory'] // 1024, par['memory'] // 1024, wide['memory'] // 1024])
      ratios.append((batch, p, ratio(wide['memory'] - base['memory'],
                                     par['memory'] - base['memory']),
                     ratio(wide['latency'] - base['latency'], par['latency'] - base['latency'])))
  return rows, ratios


# --- analysis -----------------------------------------------------------------------------------

def plot(path: pathlib.Path, s: dict, runs: dict, loss: dict, slots: str) -> str:
  fig, axes = plots.figure(2)
  ax = axes[0]
  streams, base = s['streams'], np.asarray(loss['base'])
  means, halves = zip(*(plots.mean_ci(np.asarray(loss[frozen_name(p)]) - base)
                        for p in streams), strict=True)
  ax.errorbar(streams, means, yerr=halves, fmt='o-', capsize=3, label='P streams (frozen)')
  m, h = plots.mean_ci(np.asarray(loss[slots]) - base)
  ax.errorbar([streams[-1]], [m], yerr=[h], fmt='s', color='C3', capsize=3,
              label=f'P=1, {slots.split("slots")[1]} slots')
  ax.axhline(0.0, color='k', ls='--', lw=1, label='base (no prefix)')
  ax.set_xscale('log', base=2)
  ax.set_xticks(streams, [str(p) for p in streams])
  ax.set_xlabel('streams P')
  ax.set_ylabel('loss minus base, paired (nats/char)')
  ax.set_title('frozen backbone: final loss', fontsize=10)
  plots.legend_outside(ax)
  steps, _ = sweep.curves(runs[frozen_name(streams[0])], 'eval/loss')
  plots.curves(axes[1], steps, {f'P={p}': sweep.curves(runs[frozen_name(p)], 'eval/loss')[1]
                                for p in streams},
               ylabel='validation loss (nats/char)', title='frozen backbone: eval curves')
  return plots.save(fig, path, len(runs['base']))


def fmt_seeds(values) -> str:
  return ' / '.join(f'{x:.4f}' for x in values)


def analyse(runs: dict[str, list[sweep.Run]], *, quick: bool, out: pathlib.Path) -> dict:
  s = settings(quick)
  config = sweep.load_config(spec(quick))
  frozen_config = sweep.load_config(spec(quick, 'frozen'))
  floor_values = validation_floors(quick)
  floor = stats.Floor('bigram cross-entropy of the validation text', floor_values['bigram'],
                      FLOOR_MARGIN, higher_is_better=False)
  loss = sweep.metric(runs, 'loss')
  streams, m = s['streams'], num_prefix(quick)
  p_max, slots = streams[-1], slots_name(quick)
  scratch = f'scratch_P{s["scratch_streams"]}'
  frozen = [frozen_name(p) for p in streams] + [slots]
  metric = 'validation loss (nats/char)'
  claims = []

  # --- the frozen-backbone setting --------------------------------------------------------------
  def frozen_claim(text, paper, a, b):
    return stats.compare(text, paper, {a: loss[a], b: loss[b]}, a, b, 'a<b', metric=metric,
                         fmt='.4f', floor=floor, converged=converged(runs, TOL_FROZEN, a, b))

  for p in streams[1:]:
    claims.append(frozen_claim(
        f'Frozen backbone: P={p} streams beat P=1 with prefixes', PAPER_FROZEN,
        frozen_name(p), frozen_name(1)))
  for lo, hi in zip(streams[1:], streams[2:], strict=False):
    claims.append(frozen_claim(f'Frozen backbone: P={hi} beats P={lo} (monotone in P)',
                               PAPER_FROZEN, frozen_name(hi), frozen_name(lo)))
  claims.append(frozen_claim(
      f'Frozen backbone: P={p_max} streams beat one stream with the same {p_max * m} prefix '
      'slots (parallel computation, not prefix parameters)',
      'the gain is attributed to P parallel computations (the added parameters are < 2% of N)',
      frozen_name(p_max), slots))

  # --- from scratch (calibration) ---------------------------------------------------------------
  cal = paired(runs, 'loss', scratch, 'base')
  claims.append(stats.compare(
      f'From scratch at equal tokens: P={s["scratch_streams"]} beats P=1 '
      f'(d={config.model.d_model})',
      f'lower at every size; {PAPER_LOSS}', cal, scratch, 'base', 'a<b', metric=metric,
      fmt='.4f', floor=floor, converged=converged(runs, TOL_SCRATCH, scratch, 'base')))
  n_params = sweep.metric(runs, 'non_embedding_params')
  extra = n_params[scratch][0] / n_params['base'][0] - 1
  claims.append(stats.not_tested(
      'Parallel scaling law: P streams ~ N (k ln P + 1) parameters, k > 0',
      'k = 0.39 (Stack-V2-Python), 0.33 (Pile); R^2 > 0.99 over 24 (N, P) points per corpus',
      f'one width only, and at d={config.model.d_model} the prefixes and aggregator of '
      f'P={s["scratch_streams"]} add {extra:.0%} to N (paper: < 2%), so N and P move together. '
      'The aggregator alone adds P d^2 against about 16 d^2 per layer of the backbone (SwiGLU '
      '4d), a fraction P / (16 layers) at any width: < 5% at P = 8 needs >= 10 layers, and a '
      'fit of k several such widths, beyond a 2-core budget'))

  # --- tables -------------------------------------------------------------------------------------
  get = lambda name, key: np.asarray(sweep.metric({name: runs[name]}, key)[name])  # noqa: E731
  base = np.asarray(loss['base'])
  rows = [['bigram floor', '', '', '', round(floor_values['bigram'], 4), '', '', '', '', '', '',
           '', ''],
          ['base (frozen backbone alone)', 1, 0, 0, round(float(base.mean()), 4),
           fmt_seeds(base), '', '', '', '', '', '', '']]
  ref = np.asarray(loss[frozen_name(1)])
  for name in frozen:
    v = np.asarray(loss[name])
    cfg = {**{a.name: a for a in arms(quick)}[name].overrides}
    p = cfg['parscale.num_streams']
    slot_count = p * cfg.get('parscale.num_prefix', m)
    ci = stats.t_interval(v - ref) if name != frozen_name(1) and len(v) > 1 else None
    entropy = get(name, 'agg_entropy')
    rows.append([name, p, slot_count, int(get(name, 'trainable_params')[0]),
                 round(float(v.mean()), 4), fmt_seeds(v),
                 f'{ci.mean:+.4f} [{ci.lo:+.4f}, {ci.hi:+.4f}]' if ci else '',
                 f'{float((v - base).mean()):+.4f}',
                 round(float(get(name, 'start_loss').mean()), 4),
                 round(float(get(name, 'stream_diversity').mean()), 4),
                 f'{float(entropy.mean()):.3f} / {np.log(p):.3f}',
                 round(float(get(name, 'max_stream_weight').mean()), 3),
                 f'{float((get(name, "stream_loss_best") - v).mean()):+.4f}'])
  tables = [results.table(
      f'Frozen backbone: {frozen_config.train.steps} steps of prefixes + aggregator on the '
      f'{config.train.steps}-step base LM (d={config.model.d_model}), m={m} slots per stream, lr '
      f'{frozen_config.optim.lr:g}, seeds {[r.seed for r in runs["base"]]}; {PAPER_FROZEN}',
      ['arm', 'P', 'prefix slots', 'trained params', 'loss mean', 'per seed',
       'minus P=1 prefixes (paired, 95% CI)', 'minus base', 'loss at start',
       'stream diversity', 'weight entropy / ln P', 'max weight',
       'best single stream minus mix'], rows)]
  cal_rows = []
  for name in ('base', scratch):
    v = np.asarray(cal[name])
    cal_rows.append([name, int(n_params[name][0]), round(float(v.mean()), 4), fmt_seeds(v),
                     f'{float((v - np.asarray(cal["base"])).mean()):+.4f}'])
  tables.append(results.table(
      f'From scratch at equal tokens ({config.train.steps} steps x {config.train.batch_size} x '
      f'{config.data.seq_len} characters, d={config.model.d_model}), seeds {SCRATCH_SEEDS}; '
      f'paper: {PAPER_LOSS}',
      ['arm', 'N', 'loss mean', 'per seed', 'minus base (paired)'], cal_rows))
  starts = sl.QUICK_STARTS if quick else None
  tables.append(results.table(
      "Eq. (5) refitted to the paper's own 24 (N, P) points per corpus (the official "
      "parametric_fit.py's data and procedure; no fit of ours, see the scaling-law claim)",
      ['data', 'E', 'A', 'alpha', 'k', 'R^2'],
      [[corpus, *(round(f[x], 4) for x in ('E', 'A', 'alpha', 'k', 'r2'))]
       for corpus, f in ((c, sl.fit(sl.PAPER_N, sl.PAPER_P, v, starts=starts))
                         for c, v in sl.PAPER_LOSS.items())]))
  rate = {p: float(np.median([steps_per_s(r) for r in runs[frozen_name(p)]])) for p in streams}
  tables.append(results.table(
      'Training throughput per P, frozen backbone (perf/steps_per_s of the runs above, median)',
      ['P', 'steps/s', 'step time x P=1'],
      [[p, round(rate[p], 1), round(rate[streams[0]] / rate[p], 2)] for p in streams]))
  k_cost = sl.PAPER_K['pile']
  vocab = lm.load_corpus(config.data.data_dir).vocab_size
  seq = 2 * config.data.seq_len
  inf_rows, ratios = inference_table(s, seq, m, vocab, config.model.d_model, k_cost)
  tables.append(results.table(
      f'Inference cost on CPU (forward of {seq} tokens, d={config.model.d_model}, untrained '
      f'weights): P streams vs the P=1 model widened to N (k ln P + 1), k={k_cost} (paper, Pile)',
      ['batch', 'P', 'wide d', 'P=1 ms', 'P streams ms', 'wide ms', 'P=1 KiB',
       'P streams KiB', 'wide KiB'], inf_rows))
  plot_name = plot(out / 'scaling.png', s, runs, loss, slots)
  notes = [
      f'Verdicts: paired 95% t intervals over seeds (common.stats); an arm counts as trained '
      f'when its mean loss is {FLOOR_MARGIN} nats/char below the bigram floor, and as converged '
      f'when its seed-mean eval loss fell by at most {TOL_FROZEN} (frozen stage) or '
      f'{TOL_SCRATCH} (from scratch) nats/char over the last {WINDOW:.0%} of its evaluations; '
      'otherwise the claim is not tested.',
      'Stream statistics on the eval windows at the end: stream diversity = mean over tokens '
      'and stream pairs of ||h_p - h_q|| / mean ||h_p|| (final-normed hidden states); weight '
      'entropy of the aggregation weights in nats (ln P = uniform); best single stream minus '
      'mix = the best stream alone through the head minus the mixed model (> 0: the mix '
      'beats every stream).',
      'Paper: 22x less memory increase and 6x less latency increase than parameter scaling '
      '(1.6B, P=8, GPU, batch 1). Ours (CPU forward, wide-minus-P=1 over P-streams-minus-P=1; '
      '> 1 favours ParScale): ' + '; '.join(
          f'batch {b}, P={p}: memory {mem:.2f}x, latency {t:.2f}x' for b, p, mem, t in ratios
          if p == p_max) + '.',
  ]
  return {'claims': claims, 'tables': tables, 'plots': [plot_name], 'notes': notes}


def main(argv=None) -> dict:
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv, quick_seeds=QUICK_SEEDS)


if __name__ == '__main__':
  main()
