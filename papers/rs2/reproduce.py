"""Time-to-accuracy of RS2 against static subsets, data pruning and full data on MNIST (8k train /
2k test).

    python -m papers.rs2.reproduce            # full run (about 15 minutes on 2 CPU cores)
    python -m papers.rs2.reproduce --quick    # smoke configs, same code path

Arms (each a `configs/rs2/mnist.py` run that trains the 5 paired seeds together, `vmap_seeds`:
at one seed every arm starts from the same initialisation):
- the learning-rate pilot (`common.sweep.Pilot`, run first): full data for the step budget of
  r = 2% / 10% on 7k training examples at 0.5x, 1x, 2x, 4x the official per-example step,
  validated on the held-out 1k; the arms of each budget train at the lr of the best seed-mean
  validation accuracy;
- at r in {2%, 10%}, 100 rounds each: RS2 without and with replacement, a static random subset,
  EL2N, forgetting and k-center static subsets, and full data for the same number of steps
  (`full_r2`, `full_r10`: budget-matched);
- `full_long`: full data for 100 epochs (as many epochs as RS2 has rounds, the paper's
  full-data schedule), evaluated every 250 steps, so its accuracy at RS2's budget (the
  stopping-point ablation) and its time to any accuracy are read off one curve;
- `pretrain`: DeepCore's selection training (10 full-data epochs at the constant official lr,
  DeepCore's untuned `selection_lr`) whose parameters and forgetting record the pruning arms
  select with (its steps are charged to them).
Time is counted in training steps (deterministic), from each run's evaluation curve.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib

import numpy as np

from common import plots, results, stats, sweep
from configs.rs2.mnist import LR_GRID

PAPER = 'rs2'
TITLE = 'Repeated Random Sampling for Minimizing the Time-to-Accuracy of Learning'
CONFIG = 'configs/rs2/mnist.py'
SEEDS = (0, 1, 2, 3, 4)
QUICK_SEEDS = (0, 1)
JOBS = 2  # runs at once (`--jobs`)
BUDGETS = {'r2': 0.02, 'r10': 0.1}
METHODS = ('rs2', 'rs2_replacement', 'static', 'el2n', 'forgetting', 'kcenter', 'full')
PRUNING = ('el2n', 'forgetting', 'kcenter')
LABELS = {'rs2': 'RS2 w/o repl.', 'rs2_replacement': 'RS2 w/ repl.', 'static': 'static random',
          'el2n': 'EL2N', 'forgetting': 'forgetting', 'kcenter': 'k-center',
          'full': 'full data, budget-matched', 'full_long': 'full data, 100 epochs',
          'pretrain': 'selection pre-training'}
# An arm counts as trained when its mean test accuracy is FLOOR_MARGIN above the larger of the
# majority-class rate and the untrained network's accuracy; as converged when its seed-mean
# test accuracy rose by at most TOL over the last 20% of its evaluations.
FLOOR_MARGIN = 0.05
TOL = 0.01
TARGET_FRACTION = 0.99  # target = 99% of the lower final accuracy of RS2 (r=10%) and full_long
MATCH_MARGIN = 0.01  # RS2 w/o replacement vs budget-matched full data: equal within 1 point
PAPER_STATIC = {'r2': 'CIFAR-10 r=5%: RS2 ~87% vs static random ~64%',
                'r10': 'ImageNet r=10%: RS2 ~66% vs static random ~52%'}
PAPER_ACCURACY = {('rs2', 'r2'): '~87% (CIFAR-10, r=5%)', ('static', 'r2'): '~64% (CIFAR-10, r=5%)',
                  ('rs2', 'r10'): '~66% (ImageNet)', ('static', 'r10'): '~52% (ImageNet)'}
PAPER_PRUNING = 'RS2 ahead of every pruning method at equal budget (CIFAR-10, ImageNet)'
PAPER_SPEEDUP = 'CIFAR-10 r=10%: 4.3x sooner than full-data training (200 epochs)'
PAPER_STOP = ('stopping-point ablation: full data on its 200-epoch schedule, stopped at RS2\'s '
              'budget, is below RS2 (its learning rate has not decayed)')
PAPER_MATCH = ('no number: RS2 without replacement visits the data as r x rounds full-data '
               'epochs do; the paper compares against fixed-epoch full-data training')


def arm(method: str, budget: str) -> str:
  return f'{method}_{budget}'


def label(name: str) -> str:
  """'RS2 w/ repl.' for 'rs2_replacement_r2', 'full data, 100 epochs' for 'full_long'."""
  return LABELS[name if name in LABELS else name.rsplit('_', 1)[0]]


def pilot_name(budget: str, lr: float) -> str:
  return f'pilot_{budget}_lr{lr:g}'


def pilot_arms(quick: bool) -> list[sweep.Arm]:
  """The learning-rate pilot: full data for each budget's steps at every lr of the grid, on
  the validation split (the r = 10% runs, the longer, first)."""
  grid = LR_GRID[1:3] if quick else LR_GRID
  return [sweep.Arm(pilot_name(b, lr), sweep.spec(CONFIG, 'pilot', b, smoke=quick),
                    {'optim.lr': lr}, vmap_seeds=True) for b in reversed(BUDGETS) for lr in grid]


def pilot_grid(pilot: dict[str, list[sweep.Run]], budget: str) -> dict[float, list[float]]:
  """{lr: validation accuracy per seed} of one budget's pilot runs."""
  return {rs[0].metrics['lr']: [r.metrics['accuracy'] for r in rs]
          for name, rs in pilot.items() if name.startswith(f'pilot_{budget}_lr')}


def choose(pilot: dict[str, list[sweep.Run]], quick: bool = False) -> dict[str, float]:
  """{budget: lr}: the lr of the best seed-mean validation accuracy (ties: the smaller lr)."""
  del quick
  out = {}
  for b in BUDGETS:
    grid = sorted(pilot_grid(pilot, b).items())
    out[b] = float(grid[int(np.argmax([np.mean(v) for _, v in grid]))][0])
  return out


def arms(quick: bool, choice: dict[str, float] | None = None) -> list[sweep.Arm]:
  """The main arms at the pilot's lr per budget (`choice`; default the config's), in the order
  that keeps two runs going (`main`): the pre-training, the first pruning arm (it waits for
  the pre-training), full data on its long schedule (the longest run), then the rest."""
  lr = {b: {'optim.lr': choice[b]} if choice else {} for b in BUDGETS}

  def one(method: str, budget: str) -> sweep.Arm:
    overrides = dict(lr[budget])
    if method in PRUNING:
      overrides['selection.pretrained_workdir'] = sweep.After('pretrain')
    return sweep.Arm(arm(method, budget), sweep.spec(CONFIG, method, budget, smoke=quick),
                     overrides, vmap_seeds=True)

  pruning = [one(m, b) for m in PRUNING for b in BUDGETS]
  return [sweep.Arm('pretrain', sweep.spec(CONFIG, 'pretrain', smoke=quick), vmap_seeds=True),
          pruning[0],
          sweep.Arm('full_long', sweep.spec(CONFIG, 'full_long', smoke=quick), lr['r10'],
                    vmap_seeds=True),
          *pruning[1:],
          *[one(m, b) for b in BUDGETS for m in METHODS if m not in PRUNING]]


# --- curves and time to target ------------------------------------------------------------------

@functools.cache
def _first_seed(workdir: str) -> int:
  with open(os.path.join(workdir, 'config.json')) as f:
    return int(json.load(f)['seed'])


def history(run: sweep.Run, key: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of this seed's `eval/<key>/seed<i>` in its (vmapped) run's metrics."""
  steps, values = run.history(f'eval/{key}/seed{run.seed - _first_seed(run.workdir)}')
  return np.asarray(steps), np.asarray(values)


def curve(run: sweep.Run) -> tuple[np.ndarray, np.ndarray]:
  """(steps including the charged pre-training steps, test accuracy) of a run's evaluations."""
  steps, acc = history(run, 'accuracy')
  return steps + int(run.metrics['pretrain_steps']), acc


def converged(runs: dict[str, list[sweep.Run]], *names: str) -> dict[str, dict]:
  return {n: stats.convergence([curve(r)[1] for r in runs[n]], TOL) for n in names}


def steps_to(run: sweep.Run, target: float) -> int | None:
  """Training steps (pre-training included) to the first evaluation at or above `target`."""
  steps, acc = curve(run)
  hit = np.flatnonzero(acc >= target)
  return int(steps[hit[0]]) if len(hit) else None


def accuracy_at(run: sweep.Run, step: int) -> float:
  """The run's test accuracy evaluated at `step` (the stopping-point ablation)."""
  steps, acc = curve(run)
  hit = np.flatnonzero(steps == step)
  if not len(hit):
    raise ValueError(f'{run.arm} seed {run.seed} has no evaluation at step {step}')
  return float(acc[hit[0]])


def ratio_interval(log_ratios: list[float]) -> str:
  """Geometric-mean ratio with its 95% t interval (common.stats), from per-seed log10 ratios."""
  ci = stats.t_interval(log_ratios)
  return f'{10 ** ci.mean:.2f}x [{10 ** ci.lo:.2f}, {10 ** ci.hi:.2f}]'


# --- analysis -----------------------------------------------------------------------------------

def speedup_claim(runs: dict, target: float, floor: stats.Floor) -> dict:
  """RS2 at r=10% vs full data on its long schedule: steps to the target, on log10 steps."""
  a, b = arm('rs2', 'r10'), 'full_long'
  text = (f'RS2 at r=10% reaches the target accuracy ({TARGET_FRACTION:.0%} of the lower of its '
          'and the 100-epoch full-data final accuracy) in fewer training steps than full data '
          'on its 100-epoch schedule')
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
    names = [arm(m, budget) for m in METHODS] + ['full_long']
    for i, name in enumerate(names):
      steps = curve(runs[name][0])[0]
      mean, half = plots.mean_ci(np.asarray([curve(r)[1] for r in runs[name]]))
      ax.plot(steps, mean, color=f'C{i}', label=label(name),
              ls='--' if name.startswith('full') else '-')
      ax.fill_between(steps, mean - half, mean + half, color=f'C{i}', alpha=0.2, lw=0)
    ax.axhline(floor, color='k', ls=':', lw=1, label='floor')
    if budget == 'r10':
      ax.axhline(target, color='gray', ls='--', lw=0.8, label='target')
    ax.axvline(int(runs[arm('rs2', budget)][0].metrics['train_steps']), color='gray', ls=':',
               lw=0.8, label='RS2 budget')
    ax.set_xscale('log')
    ax.set_ylim(max(0.0, floor - 0.05), 1.0)
    ax.set_xlabel('training steps (+ pre-training for the pruning methods)')
    ax.set_ylabel('test accuracy')
    ax.set_title(f'per-round budget r = {BUDGETS[budget]:.0%}', fontsize=10)
    plots.legend_outside(ax)
  return plots.save(fig, path, len(next(iter(runs.values()))))


def analyse(runs: dict[str, list[sweep.Run]], *, quick: bool, out: pathlib.Path,
            pilot: dict[str, list[sweep.Run]] | None = None, choice: dict | None = None
            ) -> dict:
  acc = sweep.metric(runs, 'accuracy')
  seeds = [r.seed for r in runs['full_long']]
  chance = float(np.mean(sweep.metric(runs, 'chance_accuracy')['full_long']))
  untrained = float(np.mean(sweep.metric(runs, 'untrained_accuracy')['full_long']))
  floor_name, floor_value = max((('majority class', chance), ('untrained network', untrained)),
                                key=lambda x: x[1])
  floor = stats.Floor(f'test accuracy of the {floor_name}', floor_value, FLOOR_MARGIN)
  # the stopping-point ablation: full_long's own curve at each budget's step count
  stopped = {b: [accuracy_at(r, int(runs[arm('rs2', b)][0].metrics['train_steps']))
                 for r in runs['full_long']] for b in BUDGETS}
  claims = []
  for budget, r in BUDGETS.items():
    a, b = arm('rs2', budget), arm('static', budget)
    claims.append(stats.compare(
        f'RS2 without replacement beats a static random subset at r={r:.0%} per round',
        PAPER_STATIC[budget], {a: acc[a], b: acc[b]}, a, b, 'a>b', metric='test accuracy',
        fmt='.4f', floor=floor, converged=converged(runs, a, b)))
    best = max((arm(m, budget) for m in PRUNING), key=lambda n: np.mean(acc[n]))
    claims.append(stats.compare(
        f'RS2 without replacement beats the best pruning method (of EL2N, forgetting, k-center: '
        f'here {label(best)}) at r={r:.0%}', PAPER_PRUNING,
        {a: acc[a], best: acc[best]}, a, best, 'a>b', metric='test accuracy', fmt='.4f',
        floor=floor, converged=converged(runs, a, best)))
    s = f'full_long_at_{budget}'
    claims.append(stats.compare(
        f'RS2 without replacement at r={r:.0%} beats full data on its 100-epoch schedule '
        f'stopped at RS2\'s budget ({int(runs[a][0].metrics["train_steps"])} steps)', PAPER_STOP,
        {a: acc[a], s: stopped[budget]}, a, s, 'a>b', metric='test accuracy', fmt='.4f',
        floor=floor, converged=converged(runs, a)))
  a, m = arm('rs2', 'r10'), arm('full', 'r10')
  claims.append(stats.equivalent(
      f'RS2 without replacement at r=10% matches full data trained for the same steps '
      f'(budget-matched) within {MATCH_MARGIN} test accuracy', PAPER_MATCH,
      {a: acc[a], m: acc[m]}, a, m, MATCH_MARGIN, metric='test accuracy', fmt='.4f', floor=floor,
      converged=converged(runs, a, m)))
  target = TARGET_FRACTION * min(np.mean(acc[a]), np.mean(acc['full_long']))
  claims.append(speedup_claim(runs, target, floor))

  # --- tables ------------------------------------------------------------------------------------
  def row(name: str, budget: str, paper: str) -> list:
    v = np.asarray(acc[name])
    to = [steps_to(r, target) for r in runs[name]]
    c = converged(runs, name)[name]
    return [budget, label(name), paper, f'{runs[name][0].metrics["lr"]:g}',
            f'{v.mean():.4f}', ' / '.join(f'{x:.4f}' for x in v), f'{v.min():.4f}',
            int(runs[name][0].metrics['train_steps']),
            int(runs[name][0].metrics['pretrain_steps']),
            ' / '.join('-' if s is None else str(s) for s in to),
            f'{c["improvement"]:+.4f}' + ('' if c['ok'] else ' (still improving)')]

  rows = [['', 'majority class (floor)', '', '', f'{chance:.4f}', '', '', 0, 0, '', ''],
          ['', 'untrained network (floor)', '', '', f'{untrained:.4f}', '', '', 0, 0, '', '']]
  for budget, r in BUDGETS.items():
    for method in METHODS:
      rows.append(row(arm(method, budget), f'{r:.0%}', PAPER_ACCURACY.get((method, budget), '')))
    v = np.asarray(stopped[budget])
    rows.append([f'{r:.0%}', 'full data, 100 epochs, stopped at RS2\'s budget', '',
                 f'{runs["full_long"][0].metrics["lr"]:g}', f'{v.mean():.4f}',
                 ' / '.join(f'{x:.4f}' for x in v), f'{v.min():.4f}',
                 int(runs[arm('rs2', budget)][0].metrics['train_steps']), 0, '', ''])
  rows.append(row('full_long', '100%', ''))
  rows.append(row('pretrain', '100%', 'DeepCore: 10 epochs'))
  low_name, low_seed, low = min(((n, r.seed, r.metrics['accuracy']) for n, rs in runs.items()
                                 for r in rs), key=lambda x: x[2])

  to = {n: [steps_to(r, target) for r in runs[n]] for n in (a, 'full_long', m)}
  ratio = {n: [b_ / a_ if a_ and b_ else None for a_, b_ in zip(to[a], to[n], strict=True)]
           for n in ('full_long', m)}
  speed_rows = [[s, to[a][i] or '-', to['full_long'][i] or '-',
                 f'{ratio["full_long"][i]:.2f}x' if ratio['full_long'][i] else '-',
                 to[m][i] or '-', f'{ratio[m][i]:.2f}x' if ratio[m][i] else '-']
                for i, s in enumerate(seeds)]
  summary = ['geometric mean [95% CI]', '', '', '', '', '']
  for col, n in ((3, 'full_long'), (5, m)):
    if None not in ratio[n] and len(seeds) >= 2:
      summary[col] = ratio_interval([math.log10(x) for x in ratio[n]])
  speed_rows.append(summary)

  pilots, edges = [], []
  for b in BUDGETS:
    if not pilot:
      break
    grid = sorted(pilot_grid(pilot, b).items())
    for lr, v in grid:
      pilots.append([f'{BUDGETS[b]:.0%}', f'{lr:g}', f'{np.mean(v):.4f}',
                     ' / '.join(f'{x:.4f}' for x in v), 'chosen' if lr == choice[b] else ''])
    if choice[b] in (grid[0][0], grid[-1][0]):
      edges.append(f'{BUDGETS[b]:.0%}')
  tables = [
      results.table(
          f'Test accuracy after the budget (seeds {seeds}), steps to the target {target:.4f} '
          f'({TARGET_FRACTION:.0%} of the lower final accuracy of RS2 r=10% and full data on '
          'its 100-epoch schedule), and the last-20% change of each eval curve',
          ['r per round', 'arm', 'paper', 'lr', 'accuracy mean', 'per seed', 'min seed',
           'train steps', 'pre-training steps', 'steps to target per seed', 'last-20% change'],
          rows),
      results.table(
          'Speed-up to the target, RS2 r=10% vs full data on its 100-epoch schedule and vs '
          'full data for RS2\'s steps (full-data steps / RS2 steps, per seed; geometric mean '
          f'with the 95% t interval of the mean log ratio); paper: {PAPER_SPEEDUP}',
          ['seed', 'RS2 r=10% steps', 'full data 100 epochs: steps', 'speed-up',
           'full data budget-matched: steps', 'speed-up'], speed_rows),
      results.table(
          'Learning-rate pilot: full data for each budget\'s steps on 7k training examples, '
          'validation accuracy on the held-out 1k (per seed); the chosen lr (best seed mean) '
          'trains every arm of that budget (r = 10%: also full_long)',
          ['r per round', 'lr', 'validation accuracy mean', 'per seed', ''], pilots),
  ]
  plot_name = plot(out / 'time_to_accuracy.png', runs, floor_value, target)
  notes = [
      'MNIST: the 10k test file split 8k train / 2k test (fixed permutation); ConvNet(8, 16) '
      'behind a 2x2 mean-pool stem; batch 16, SGD nesterov 0.9, weight decay 5e-4, per-step '
      'cosine to lr/1000 over each arm\'s steps; lr per budget from the pilot (validation, not '
      'test); 100 rounds per budget arm; the 5 seeds of an arm train together in one run.',
      f'EL2N, forgetting and k-center select with the `pretrain` run (DeepCore\'s selection '
      f'training: {runs["pretrain"][0].metrics["train_steps"]} steps = 10 full-data epochs at '
      f'the constant lr {runs["pretrain"][0].metrics["lr"]:g}, the official per-example step, '
      f'not tuned; test accuracy {np.mean(acc["pretrain"]):.4f}); forgetting events are '
      'counted between its end-of-epoch classifications of the training set; those steps are '
      'added to the pruning arms\' time axis.',
      f'Collapse check: the lowest final test accuracy of any seed of any arm is {low:.4f} '
      f'({low_name}, seed {low_seed}); majority class {chance:.4f}, untrained network '
      f'{untrained:.4f}.',
      f'Verdicts: paired 95% t intervals over seeds (common.stats); the budget-matched '
      f'equivalence by two one-sided tests (90% interval inside +-{MATCH_MARGIN}). An arm counts '
      f'as trained when its mean test accuracy is {FLOOR_MARGIN} above the larger of the '
      'majority-class rate and the untrained network\'s accuracy (both computed on the same '
      f'test split by the experiment), and as converged when its seed-mean test accuracy rose '
      f'by at most {TOL} over the last 20% of its evaluations; otherwise the claim is not '
      'tested. The stopping-point arm is stopped on purpose: only RS2 is checked for '
      'convergence there.',
      'Time is training steps (deterministic; every arm runs the same step program). '
      'Evaluations: every 5 rounds (250 steps at r = 10%, 50 at r = 2%), every 250 steps (half '
      'an epoch) for full data on its 100-epoch schedule, so a time to the target is rounded up '
      'to that period.',
  ]
  if edges:
    notes.append(f'The pilot chose an end of its lr grid at r = {" and ".join(edges)}: the '
                 'validation optimum may lie beyond it. The grid stops at 4x the official step: '
                 '8x (lr 0.1 at batch 16) sent r = 2% runs to chance in an earlier reproduction.')
  if quick:
    notes.append('QUICK MODE: smoke configs, numbers meaningless.')
  return {'claims': claims, 'tables': tables, 'plots': [plot_name], 'notes': notes}


def main(argv: list[str] | None = None) -> dict:
  """The pilot sweep (its runs under `<workdir>/pilot`), its choice, then the main sweep; JOBS
  runs at once by default: a run's seeds go one after another through one core, so two runs
  keep both cores busy."""
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv, quick_seeds=QUICK_SEEDS,
                    pilot=sweep.Pilot(pilot_arms, choose, SEEDS), jobs=JOBS)


if __name__ == '__main__':
  main()
