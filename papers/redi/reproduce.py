"""Reproduction: SFT, then REDI / symmetric REDI / DPO / SimPO / continued SFT, each started from
the same seed's SFT checkpoint, over a small stage-2 learning-rate grid.

    python -m papers.redi.reproduce            # full: papers/redi/results.json and plots
    python -m papers.redi.reproduce --quick    # smoke configs, writes beside its runs

Every run is `python -m common.main --config=configs/redi/arith.py:<objective>` (its command is
in results.json); stage 2 gets `--config.init_from=<the same seed's SFT workdir>` and a rate
from LR_GRID. The comparisons with REDI take each objective at its rate with the best seed-mean
validation pass@1 (rates are never picked on the test problems); the stability claims are made
at every rate of the grid.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from common import plots, results, stats, sweep
from configs.redi import arith

PAPER = 'redi'
TITLE = 'REDI: reinforcement distillation from positive and negative teacher traces'
CONFIG = 'configs/redi/arith.py'
SEEDS = (0, 1, 2)
LR_GRID = (3e-5, 1e-4)  # stage 2; SFT runs at 3e-3
STAGE2 = ('continued_sft', 'redi', 'symmetric', 'dpo', 'simpo')
UNSTABLE = ('symmetric', 'dpo')  # the objectives the paper finds to degrade where REDI is stable
LABELS = {'sft': 'SFT (stage-1 checkpoint)', 'continued_sft': 'continued SFT on positives',
          'redi': 'REDI (alpha 0.8)', 'symmetric': 'symmetric (alpha 1)', 'dpo': 'DPO',
          'simpo': 'SimPO'}
PAPER_NUMBERS = {'sft': '76.7 / n.a.', 'redi': '81.7 / 48.3', 'dpo': '81.3 / 47.2',
                 'simpo': '81.1 / 47.2'}  # MATH-500 pass@1 / 5-benchmark average
PASS1, VALID = 'test_pass1_greedy', 'valid_pass1_greedy'
FLOOR_MARGIN = 0.05  # an arm counts as trained when its mean test pass@1 beats the floor by this
CONVERGENCE_TOL = 0.02  # seed-mean test pass@1 gain allowed over the last 20% of evaluations
STABLE_MARGIN = 0.05  # "stable": test pass@1 no more than this below the SFT checkpoint's


def arm_name(objective: str, lr: float) -> str:
  return f'{objective}_lr{lr:g}'


def grid(quick: bool) -> tuple[float, ...]:
  return LR_GRID[-1:] if quick else LR_GRID


def arms(quick: bool) -> list[sweep.Arm]:
  smoke = ',smoke' if quick else ''
  out = [sweep.Arm('sft', f'{CONFIG}:sft{smoke}')]
  out += [sweep.Arm(arm_name(name, lr), f'{CONFIG}:{name}{smoke}',
                    {'init_from': sweep.After('sft'), 'optim.lr': lr})
          for lr in grid(quick) for name in STAGE2]
  return out


def curves(runs: Sequence[sweep.Run], key: str) -> tuple[list[int], list[list[float]]]:
  """(steps, one curve per seed) of `eval/<key>`."""
  histories = [r.history(f'eval/{key}') for r in runs]
  return histories[0][0], [h[1] for h in histories]


def _mean(runs: Mapping[str, Sequence[sweep.Run]], arm: str, key: str) -> float:
  return float(np.mean([r.metrics[key] for r in runs[arm]]))


def pick_rates(runs: Mapping[str, Sequence[sweep.Run]], rates: Sequence[float]
               ) -> dict[str, float]:
  """Per objective, the rate with the best seed-mean validation pass@1 (the lower on a tie)."""
  picked = {}
  for name in STAGE2:
    ran = [lr for lr in rates if arm_name(name, lr) in runs]
    if ran:
      picked[name] = max(ran, key=lambda lr, n=name: (_mean(runs, arm_name(n, lr), VALID), -lr))
  return picked


def analyse(runs: Mapping[str, Sequence[sweep.Run]], *, quick: bool, out: pathlib.Path) -> dict:
  """Claims (common.stats, paired by seed), tables and plots from the finished runs."""
  rates = [lr for lr in grid(quick) if any(arm_name(n, lr) in runs for n in STAGE2)]
  picked = pick_rates(runs, rates)
  pass1 = sweep.metric(runs, PASS1)
  sft = runs['sft']
  untrained = float(np.mean([r.metrics[f'floor/untrained_{PASS1}'] for r in sft]))
  majority = float(np.mean([r.metrics['floor/majority_answer_test_pass1'] for r in sft]))
  floor = stats.Floor('max(untrained model, majority answer) test pass@1',
                      max(untrained, majority), FLOOR_MARGIN)
  converged = {arm: stats.convergence(curves(rs, PASS1)[1], CONVERGENCE_TOL)
               for arm, rs in runs.items()}
  claims = []

  def compare(text: str, paper: str, a: str | None, b: str | None) -> None:
    missing = [x for x in (a, b) if x not in pass1]
    if missing:
      claims.append(stats.not_tested(text, paper, f'arm {missing[0]} not run'))
      return
    claims.append(stats.compare(text, paper, pass1, a, b, 'a>b', metric=f'{PASS1} (test)',
                                fmt='.3f', floor=floor,
                                converged={a: converged[a], b: converged[b]}))

  at_picked = {name: arm_name(name, lr) for name, lr in picked.items()}
  redi = at_picked.get('redi')
  compare('REDI beats the SFT checkpoint it starts from', '81.7 vs 76.7 (MATH-500 pass@1)',
          redi, 'sft')
  compare('REDI beats DPO from the same SFT checkpoint', '81.7 vs 81.3 (MATH-500 pass@1)',
          redi, at_picked.get('dpo'))
  compare('REDI beats SimPO from the same SFT checkpoint', '81.7 vs 81.1 (MATH-500 pass@1)',
          redi, at_picked.get('simpo'))
  compare('REDI beats continued SFT on the positives', 'REDI > SFT on positives',
          redi, at_picked.get('continued_sft'))
  paper_stable = 'collapse vs stable (Fig. 3)'
  for lr in rates:
    stable = arm_name('redi', lr)
    text = (f'REDI is stable at stage-2 lr {lr:g}: test pass@1 no more than {STABLE_MARGIN:g} '
            'below the SFT checkpoint')
    if stable not in pass1:
      claims.append(stats.not_tested(text, paper_stable, f'arm {stable} not run'))
    else:
      claims.append(stats.noninferior(
          text, paper_stable, pass1, stable, 'sft', STABLE_MARGIN, metric=f'{PASS1} (test)',
          fmt='.3f', floor=floor, converged={stable: converged[stable], 'sft': converged['sft']}))
    for other in UNSTABLE:
      compare(f'{LABELS[other]} degrades more than REDI at stage-2 lr {lr:g}', paper_stable,
              stable, arm_name(other, lr))

  tables = [main_table(runs, pass1, picked, untrained, majority, quick),
            grid_table(runs, rates, picked)]
  plot_files = [pass1_plot(runs, rates, floor.value, out), loglik_plot(runs, rates, out)]
  return {'claims': claims, 'tables': tables, 'plots': plot_files,
          'notes': notes(sft, untrained, majority, rates, quick)}


def notes(sft: Sequence[sweep.Run], untrained: float, majority: float, rates: Sequence[float],
          quick: bool) -> list[str]:
  d = sft[0].metrics
  smoke = ',smoke' if quick else ''
  config, sft_config = arith.get_config('redi' + smoke), arith.get_config('sft' + smoke)
  out = [
      f'Data: {d["data/train_problems"]:.0f} training problems, {d["data/sft_examples"]:.0f} SFT '
      f'traces, {d["data/pref_pairs"]:.0f} preference pairs (teacher accuracy '
      f'{d["data/teacher_accuracy"]:.3f}); {config.data.num_test} test and '
      f'{config.data.num_valid} validation problems.',
      f'SFT {sft_config.train.steps} steps x {sft_config.train.batch_size} traces (lr '
      f'{sft_config.optim.lr:g}, cosine); stage 2 {config.train.steps} steps x '
      f'{config.train.batch_size} pairs (warmup {config.optim.warmup_steps} then linear decay '
      f'to 0) at each rate of {list(rates)}; each objective is compared at its rate with the '
      'best validation pass@1.',
      f'Floor: the untrained model\'s test pass@1 ({untrained:.3f}) and answering every test '
      f'problem with the most frequent training answer ({majority:.3f}); an arm is trained when '
      f'its mean beats the larger by {FLOOR_MARGIN:g}. Converged: the seed-mean test pass@1 '
      f'gains at most {CONVERGENCE_TOL:g} over the last 20% of the arm\'s evaluations.',
      'Verdicts (common.stats): 95% Student-t interval of the per-seed differences (seed s of '
      'every stage-2 arm starts from seed s\'s SFT checkpoint and sees the same pair order); '
      '"not tested" when fewer than 3 seeds, an arm at its floor, or an arm still improving.']
  if quick:
    out.append('QUICK MODE: smoke configs, numbers meaningless.')
  return out


def _mean_ci(values: Sequence[float]) -> str:
  m, h = plots.mean_ci(np.asarray(values, np.float64))
  return f'{float(m):.3f} ± {float(h):.3f}'


def main_table(runs, pass1, picked: Mapping[str, float], untrained: float, majority: float,
               quick: bool) -> dict:
  keys = [PASS1, VALID]
  config = arith.get_config('redi,smoke' if quick else 'redi')
  sampled = f'test pass@1 T={config.eval.temperature:g} (k={config.eval.num_samples})'
  if config.eval.num_samples:
    keys.insert(1, 'test_pass1_sampled')
  rows = [['floor: untrained model', '-', '-', f'{untrained:.3f}'] + ['-'] * len(keys),
          ['floor: majority answer', '-', '-', f'{majority:.3f}'] + ['-'] * len(keys)]
  for name in ('sft', *picked):
    arm = 'sft' if name == 'sft' else arm_name(name, picked[name])
    rows.append([LABELS[name], PAPER_NUMBERS.get(name, '-'),
                 '-' if name == 'sft' else f'{picked[name]:g}']
                + [_mean_ci([r.metrics[k] for r in runs[arm]]) for k in keys]
                + [', '.join(f'{v:.3f}' for v in pass1[arm])])
  names = {PASS1: 'test pass@1 greedy', VALID: 'valid pass@1 greedy',
           'test_pass1_sampled': sampled}
  return results.table(
      'Test pass@1 (paper: MATH-500 / 5-benchmark average; ours: held-out a*b+c problems, mean '
      '± 95% interval over seeds), each objective at its rate picked on validation',
      ['method', 'paper', 'stage-2 lr', *(names[k] for k in keys),
       'test pass@1 greedy per seed'], rows)


def grid_table(runs, rates: Sequence[float], picked: Mapping[str, float]) -> dict:
  rows = []
  for name in STAGE2:
    for lr in rates:
      arm = arm_name(name, lr)
      if arm not in runs:
        continue
      mark = ' (picked)' if picked.get(name) == lr else ''
      rows.append([LABELS[name], f'{lr:g}{mark}'] + [
          f'{_mean(runs, arm, k):.3f}' for k in (VALID, PASS1, 'test_chosen_logp',
                                                 'test_rejected_logp')])
  sft = ['sft', '-'] + [f'{_mean(runs, "sft", k):.3f}' for k in (
      VALID, PASS1, 'test_chosen_logp', 'test_rejected_logp')]
  return results.table(
      'Learning-rate grid (seed means): pass@1 and the held-out mean log-likelihood per token '
      'of correct (chosen) and incorrect (rejected) traces',
      ['method', 'stage-2 lr', 'valid pass@1', 'test pass@1', 'logp chosen', 'logp rejected'],
      [[LABELS['sft'], *sft[1:]], *rows])


def _with_start(runs, arm: str, key: str) -> tuple[list[int], list[list[float]]]:
  """A stage-2 arm's curve with the SFT checkpoint's value at step 0."""
  steps, values = curves(runs[arm], key)
  start = [r.metrics[key] for r in runs['sft']]
  return [0, *steps], [[s, *v] for s, v in zip(start, values, strict=True)]


def _panel(ax, runs, lr: float, key: str, ylabel: str, title: str, floor=None) -> None:
  arms = {LABELS[n]: arm_name(n, lr) for n in STAGE2 if arm_name(n, lr) in runs}
  steps = _with_start(runs, next(iter(arms.values())), key)[0]
  plots.curves(ax, steps, {k: _with_start(runs, a, key)[1] for k, a in arms.items()},
               ylabel=ylabel, xlabel='stage-2 step (0: the SFT checkpoint)', title=title,
               floor=floor)


def pass1_plot(runs, rates: Sequence[float], floor: float, out: pathlib.Path) -> str:
  fig, axes = plots.figure(len(rates))
  for ax, lr in zip(axes, rates, strict=True):
    _panel(ax, runs, lr, PASS1, 'test pass@1 (greedy)', f'stage-2 lr {lr:g}', floor)
  return plots.save(fig, out / 'pass_at_1.png', len(runs['sft']))


def loglik_plot(runs, rates: Sequence[float], out: pathlib.Path) -> str:
  lr = max(rates)
  fig, axes = plots.figure(2)
  _panel(axes[0], runs, lr, 'test_chosen_logp', 'log-likelihood per token',
         f'held-out correct traces, lr {lr:g}')
  _panel(axes[1], runs, lr, 'test_rejected_logp', 'log-likelihood per token',
         f'held-out incorrect traces, lr {lr:g}')
  return plots.save(fig, out / 'loglik.png', len(runs['sft']))


def main(argv: Sequence[str] | None = None) -> dict:
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv)


if __name__ == '__main__':
  main()
