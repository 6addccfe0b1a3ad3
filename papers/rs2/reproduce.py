"""Time-to-accuracy of RS2 against static subsets and data pruning on MNIST (8k train / 2k test).

    python -m papers.rs2.reproduce            # full run (about 6 minutes on 2 CPU cores)
    python -m papers.rs2.reproduce --quick    # smoke configs, same code path

Arms (each a `configs/rs2/mnist.py` run, 3 paired seeds: at one seed every arm starts from the
same initialisation): at each per-round budget r in {2%, 10%}, RS2 without replacement, RS2 with
replacement, a static random subset, EL2N (hardest, class-balanced) and k-center greedy
coresets; full data for as many epochs as the budget arms have rounds; and `pretrain`, the
one-epoch full-data run whose parameters EL2N and k-center score examples with (its steps are
charged to them). Time is counted in training steps (deterministic), from each run's
per-round evaluation curve in metrics.jsonl.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from common import plots, results, stats, sweep

PAPER = 'rs2'
TITLE = 'Repeated Random Sampling for Minimizing the Time-to-Accuracy of Learning'
CONFIG = 'configs/rs2/mnist.py'
SEEDS = (0, 1, 2)
BUDGETS = {'r2': 0.02, 'r10': 0.1}
METHODS = ('rs2', 'rs2_replacement', 'static', 'el2n', 'kcenter')
PRUNING = ('el2n', 'kcenter')
LABELS = {'rs2': 'RS2 w/o repl.', 'rs2_replacement': 'RS2 w/ repl.', 'static': 'static random',
          'el2n': 'EL2N', 'kcenter': 'k-center', 'full': 'full data'}
# An arm counts as trained when its mean test accuracy is FLOOR_MARGIN above the larger of the
# majority-class rate and the untrained network's accuracy; as converged when its seed-mean
# test accuracy rose by at most TOL over the last 20% of its evaluations.
FLOOR_MARGIN = 0.05
TOL = 0.01
TARGET_FRACTION = 0.98  # target = 98% of the lower final accuracy of RS2 (r=10%) and full data
PAPER_STATIC = {'r2': 'CIFAR-10 r=5%: RS2 ~87% vs static random ~64%',
                'r10': 'ImageNet r=10%: RS2 ~66% vs static random ~52%'}
PAPER_ACCURACY = {('rs2', 'r2'): '~87% (CIFAR-10, r=5%)', ('static', 'r2'): '~64% (CIFAR-10, r=5%)',
                  ('rs2', 'r10'): '~66% (ImageNet)', ('static', 'r10'): '~52% (ImageNet)'}
PAPER_PRUNING = 'RS2 ahead of every pruning method at equal budget (CIFAR-10, ImageNet)'
PAPER_SPEEDUP = 'CIFAR-10 r=10%: 4.3x sooner than full-data training'


def arm(method: str, budget: str) -> str:
  return f'{method}_{budget}'


def label(name: str) -> str:
  """'RS2 w/ repl.' for 'rs2_replacement_r2', 'full data' for 'full'."""
  return LABELS[name if name in LABELS else name.rsplit('_', 1)[0]]


def arms(quick: bool) -> list[sweep.Arm]:
  smoke = ',smoke' if quick else ''
  out = [sweep.Arm('pretrain', f'{CONFIG}:pretrain{smoke}')]
  for budget in BUDGETS:
    for method in METHODS:
      overrides = ({'selection.pretrained_workdir': sweep.After('pretrain')}
                   if method in PRUNING else {})
      out.append(sweep.Arm(arm(method, budget), f'{CONFIG}:{method},{budget}{smoke}', overrides))
  out.append(sweep.Arm('full', f'{CONFIG}:full{smoke}'))
  return out


# --- curves and time to target ------------------------------------------------------------------

def curve(run: sweep.Run) -> tuple[np.ndarray, np.ndarray]:
  """(steps including the charged pre-training steps, test accuracy) of a run's evaluations."""
  steps, acc = run.history('eval/accuracy')
  return np.asarray(steps) + int(run.metrics['pretrain_steps']), np.asarray(acc)


def converged(runs: dict[str, list[sweep.Run]], *names: str) -> dict[str, dict]:
  return {n: stats.convergence([curve(r)[1] for r in runs[n]], TOL) for n in names}


def steps_to(run: sweep.Run, target: float) -> int | None:
  """Training steps (pre-training included) to the first evaluation at or above `target`."""
  steps, acc = curve(run)
  hit = np.flatnonzero(acc >= target)
  return int(steps[hit[0]]) if len(hit) else None


def steps_per_s(run: sweep.Run) -> float:
  """Median training throughput (perf/steps_per_s; the first log, with the compile, left out)."""
  values = run.history('perf/steps_per_s')[1]
  return float(np.median(values[1:] if len(values) > 1 else values))


# --- analysis -----------------------------------------------------------------------------------

def speedup_claim(runs: dict, target: float, floor: stats.Floor) -> dict:
  """RS2 at r=10% vs full data: training steps to the target, compared on log10 steps."""
  a, b = arm('rs2', 'r10'), 'full'
  text = (f'RS2 at r=10% reaches the target accuracy ({TARGET_FRACTION:.0%} of the lower of its '
          'and full-data final accuracy) in fewer training steps than full-data training')
  if target < floor.value + floor.margin:
    return stats.not_tested(text, PAPER_SPEEDUP, f'the target {target:.4f} is not beyond the '
                            f'floor {floor.name} ({floor.value:.4f}) by {floor.margin}')
  to = {n: [steps_to(r, target) for r in runs[n]] for n in (a, b)}
  missed = {n: sum(s is None for s in v) for n, v in to.items() if None in v}
  if missed:
    return stats.not_tested(text, PAPER_SPEEDUP, 'the target was not reached in ' + ', '.join(
        f'{m} of {len(to[n])} seeds of {n}' for n, m in missed.items()))
  budget = int(runs[b][0].metrics['train_steps'])
  every = int(np.diff(curve(runs[b][0])[0])[0])
  never = stats.Floor(f'never reaching the target within the full-data budget of {budget} '
                      'steps', math.log10(budget),
                      math.log10(budget / (budget - every)), higher_is_better=False)
  per_seed = {n: [math.log10(s) for s in v] for n, v in to.items()}
  return stats.compare(text, PAPER_SPEEDUP, per_seed, a, b, 'a<b',
                       metric='log10 training steps to the target', fmt='.3f', floor=never,
                       converged=converged(runs, a, b))


def plot(path: pathlib.Path, runs: dict, floor: float, target: float) -> str:
  fig, axes = plots.figure(len(BUDGETS))
  for ax, budget in zip(axes, BUDGETS, strict=True):
    names = [arm(m, budget) for m in METHODS] + (['full'] if budget == 'r10' else [])
    for i, name in enumerate(names):
      steps = curve(runs[name][0])[0]
      mean, half = plots.mean_ci(np.asarray([curve(r)[1] for r in runs[name]]))
      ax.plot(steps, mean, color=f'C{i}', label=label(name), ls='--' if name == 'full' else '-')
      ax.fill_between(steps, mean - half, mean + half, color=f'C{i}', alpha=0.2, lw=0)
    ax.axhline(floor, color='k', ls=':', lw=1, label='floor')
    if budget == 'r10':
      ax.axhline(target, color='gray', ls='--', lw=0.8, label='target')
    ax.set_xscale('log')
    ax.set_xlabel('training steps (+ pre-training for EL2N, k-center)')
    ax.set_ylabel('test accuracy')
    ax.set_title(f'per-round budget r = {BUDGETS[budget]:.0%}', fontsize=10)
    plots.legend_outside(ax)
  return plots.save(fig, path, len(next(iter(runs.values()))))


def analyse(runs: dict[str, list[sweep.Run]], *, quick: bool, out: pathlib.Path) -> dict:
  acc = sweep.metric(runs, 'accuracy')
  seeds = [r.seed for r in runs['full']]
  chance = float(np.mean(sweep.metric(runs, 'chance_accuracy')['full']))
  untrained = float(np.mean(sweep.metric(runs, 'untrained_accuracy')['full']))
  floor_name, floor_value = max((('majority class', chance), ('untrained network', untrained)),
                                key=lambda x: x[1])
  floor = stats.Floor(f'test accuracy of the {floor_name}', floor_value, FLOOR_MARGIN)
  claims = []
  for budget, r in BUDGETS.items():
    a, b = arm('rs2', budget), arm('static', budget)
    claims.append(stats.compare(
        f'RS2 without replacement beats a static random subset at r={r:.0%} per round',
        PAPER_STATIC[budget], {a: acc[a], b: acc[b]}, a, b, 'a>b', metric='test accuracy',
        fmt='.4f', floor=floor, converged=converged(runs, a, b)))
    best = max((arm(m, budget) for m in PRUNING), key=lambda n: np.mean(acc[n]))
    claims.append(stats.compare(
        f'RS2 without replacement beats the best pruning method (of EL2N, k-center: here '
        f'{label(best)}) at r={r:.0%}', PAPER_PRUNING,
        {a: acc[a], best: acc[best]}, a, best, 'a>b', metric='test accuracy', fmt='.4f',
        floor=floor, converged=converged(runs, a, best)))
  target = TARGET_FRACTION * min(np.mean(acc[arm('rs2', 'r10')]), np.mean(acc['full']))
  claims.append(speedup_claim(runs, target, floor))

  # --- tables ------------------------------------------------------------------------------------
  def row(name: str, budget: str, paper: str) -> list:
    v = np.asarray(acc[name])
    to = [steps_to(r, target) for r in runs[name]]
    c = converged(runs, name)[name]
    return [budget, label(name), paper,
            f'{v.mean():.4f}', ' / '.join(f'{x:.4f}' for x in v),
            int(runs[name][0].metrics['train_steps']),
            int(runs[name][0].metrics['pretrain_steps']),
            ' / '.join('-' if s is None else str(s) for s in to),
            f'{c["improvement"]:+.4f}' + ('' if c['ok'] else ' (still improving)'),
            round(float(np.median([steps_per_s(r) for r in runs[name]])), 1)]

  rows = [['', 'majority class (floor)', '', f'{chance:.4f}', '', 0, 0, '', '', ''],
          ['', 'untrained network (floor)', '', f'{untrained:.4f}', '', 0, 0, '', '', '']]
  for budget, r in BUDGETS.items():
    for m in METHODS:
      rows.append(row(arm(m, budget), f'{r:.0%}', PAPER_ACCURACY.get((m, budget), '')))
  rows.append(row('full', '100%', ''))
  to_rs2 = [steps_to(r, target) for r in runs[arm('rs2', 'r10')]]
  to_full = [steps_to(r, target) for r in runs['full']]
  ratios = [f / s if f and s else None for f, s in zip(to_full, to_rs2, strict=True)]
  tables = [
      results.table(
          f'Test accuracy after the budget (seeds {seeds}), steps to the target '
          f'{target:.4f} ({TARGET_FRACTION:.0%} of the lower final accuracy of RS2 r=10% and '
          'full data), and the last-20% change of each eval curve',
          ['r per round', 'arm', 'paper', 'accuracy mean', 'per seed', 'train steps',
           'pre-training steps', 'steps to target per seed', 'last-20% change',
           'steps/s (perf, median)'], rows),
      results.table(
          'Speed-up to the target, RS2 r=10% vs full data (full-data steps / RS2 steps, per '
          f'seed); paper: {PAPER_SPEEDUP}',
          ['seed', 'RS2 r=10% steps', 'full-data steps', 'speed-up'],
          [[s, a or '-', b or '-', f'{x:.2f}x' if x else '-']
           for s, a, b, x in zip(seeds, to_rs2, to_full, ratios, strict=True)]),
  ]
  plot_name = plot(out / 'time_to_accuracy.png', runs, floor_value, target)
  pre = runs['pretrain'][0].metrics
  notes = [
      'MNIST: the 10k test file split 8k train / 2k test (fixed permutation); ConvNet(8, 16) '
      'behind a 2x2 mean-pool stem; batch 16, SGD nesterov 0.9, weight decay 5e-4, lr 0.0125 '
      '(the official recipe\'s per-example step, lr 0.1 at batch 128, under linear scaling) '
      'with a per-step cosine over each arm\'s steps; 30 rounds per budget arm, full data for '
      '30 epochs.',
      f'EL2N and k-center score the training set with the `pretrain` run ({pre["train_steps"]} '
      f'full-data steps, test accuracy {np.mean(acc["pretrain"]):.4f}); those steps are added '
      'to their time axis.',
      f'Verdicts: paired 95% t intervals over seeds (common.stats). An arm counts as trained '
      f'when its mean test accuracy is {FLOOR_MARGIN} above the larger of the majority-class '
      'rate and the untrained network\'s accuracy (both computed on the same test split by the '
      f'experiment), and as converged when its seed-mean test accuracy rose by at most {TOL} '
      'over the last 20% of its evaluations; otherwise the claim is not tested.',
      'Time is training steps (deterministic): a wall-clock time on a shared 2-core CPU varies '
      'with other jobs; every arm runs the same step program, so steps convert to seconds at '
      'the throughput in the last table column. Every arm is evaluated once a round, as the '
      'paper evaluates once an epoch: a full-data round is an epoch (500 steps), an r = 10% '
      'round 50 steps, so each time to the target is rounded up to its arm\'s round.',
  ]
  if quick:
    notes.append('QUICK MODE: smoke configs, numbers meaningless.')
  return {'claims': claims, 'tables': tables, 'plots': [plot_name], 'notes': notes}


def main(argv=None) -> dict:
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv)


if __name__ == '__main__':
  main()
