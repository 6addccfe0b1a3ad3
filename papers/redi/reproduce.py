"""Reproduction: on two tasks, SFT, then continued SFT / REDI / symmetric REDI / DPO / SimPO, each
started from the same seed's SFT checkpoint at its learning rate picked on validation.

    python -m papers.redi.reproduce            # full: papers/redi/results.json and plots
    python -m papers.redi.reproduce --quick    # smoke configs, writes beside its runs

Tasks (`TASKS`): `addition` (`configs/redi/addition.py`), where the teacher's incorrect traces
are mostly short-way answers that miss carries, so they say which strategy to avoid; `arith`
(`configs/redi/arith.py`), the control, where an incorrect trace is one random slip in the one
deterministic solution and says nothing the correct trace does not.

Pilot (`<workdir>/pilot`, seed `PILOT_SEEDS`, disjoint from the main seeds): each task's SFT and
every stage-2 objective at every rate of its grid (`LR_GRID[task][objective]`), evaluated once,
at the end; each objective's rate is the one with the best validation pass@1 (`VALID`; the lower
rate on a tie). The choice counts only when the pilot's SFT checkpoint trained (`sft_trained`:
validation pass@1 beyond the floor by FLOOR_MARGIN and at least SFT_FAILED_FRACTION of the main
SFT seeds' median); otherwise the notes say the task's rates were picked on a failed checkpoint.
Main sweep: each task's SFT and the five objectives at the picked rates on `SEEDS`; seed s of
every stage-2 arm starts from seed s's SFT checkpoint (`sweep.After`). Every run is
`python -m common.main --config=<task config>:<arm>` (its command is in results.json).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from common import plots, results, stats, sweep
from configs.redi import addition, arith

PAPER = 'redi'
TITLE = 'REDI: reinforcement distillation from positive and negative teacher traces'
TASKS = {'addition': 'configs/redi/addition.py', 'arith': 'configs/redi/arith.py'}
CONFIGS = {'addition': addition, 'arith': arith}
SEEDS = (0, 1, 2, 3, 4)
QUICK_SEEDS = (0, 1)
PILOT_SEEDS = (5,)
# stage-2 rate grids per task and objective (SFT runs at 3e-3), each three to four rates a
# factor ~3 apart around where the objective's validation pass@1 peaks within its stage 2 (on
# addition the symmetric objective and SimPO peak lower than the others)
_ADDITION = (3e-4, 1e-3, 3e-3)
LR_GRID = {'addition': {'continued_sft': _ADDITION, 'redi': _ADDITION,
                        'symmetric': (3e-5, 1e-4, 3e-4, 1e-3), 'dpo': _ADDITION,
                        'simpo': (1e-6, 3e-6, 1e-5, 3e-5)},
           'arith': dict.fromkeys(('continued_sft', 'redi', 'symmetric', 'dpo', 'simpo'),
                                  (1e-5, 3e-5, 1e-4, 3e-4))}
STAGE2 = ('continued_sft', 'redi', 'symmetric', 'dpo', 'simpo')
LABELS = {'sft': 'SFT (stage-1 checkpoint)', 'continued_sft': 'continued SFT on positives',
          'redi': 'REDI (alpha 0.8)', 'symmetric': 'symmetric (alpha 1)',
          'dpo': 'DPO (beta 0.001)', 'simpo': 'SimPO (beta 2, gamma 1)'}
PAPER_NUMBERS = {'sft': '76.7', 'redi': '81.7', 'symmetric': '81.7', 'dpo': '81.3',
                 'simpo': '81.1'}  # MATH-500 pass@1 (Table 2; SFT: Qwen-SFT-1.5B-3ep)
# the claims' metric per task: addition's exact expected pass@1 at the eval temperature; the
# control's greedy pass@1 (its verifier reads only the final answer: no exact expectation)
PASS1 = {'addition': 'test_pass1_exact', 'arith': 'test_pass1_greedy'}
VALID = {'addition': 'valid_pass1_exact', 'arith': 'valid_pass1_greedy'}
GATE_LONG, GATE_SHORT = 'valid_pass1_greedy_long_forced', 'valid_pass1_greedy_short_forced'
GATE_MARGIN = 0.2  # the long strategy forced must beat the short one by this after SFT
FLOOR_MARGIN = 0.05  # an arm counts as trained when its mean test pass@1 beats the floor by this
CONVERGENCE_TOL = 0.02  # seed-mean test pass@1 gain allowed over the last 20% of evaluations
# an SFT run failed when its validation pass@1 is below this fraction of its task's median SFT
SFT_FAILED_FRACTION = 0.5


def arm_name(task: str, objective: str, lr: float | None = None) -> str:
  return f'{task}_{objective}' + ('' if lr is None else f'_lr{lr:g}')


def grid(task: str, objective: str, quick: bool) -> tuple[float, ...]:
  rates = LR_GRID[task][objective]
  return rates[1:2] if quick else rates


def _spec(task: str, arg: str, quick: bool) -> str:
  return sweep.spec(TASKS[task], arg, smoke=quick)


def _sft_arms(quick: bool) -> list[sweep.Arm]:
  """Each task's SFT, first: the sweep runs them together before the stages that need them."""
  return [sweep.Arm(arm_name(task, 'sft'), _spec(task, 'sft', quick)) for task in TASKS]


def pilot_arms(quick: bool) -> list[sweep.Arm]:
  """Per task: SFT, then every objective at every rate of its grid from its checkpoint, each
  evaluated only at the end (`train.eval_every` 0: the pick reads the final metrics)."""
  return _sft_arms(quick) + [
      sweep.Arm(arm_name(task, name, lr), _spec(task, name, quick),
                {'init_from': sweep.After(arm_name(task, 'sft')), 'optim.lr': lr,
                 'train.eval_every': 0})
      for task in TASKS for name in STAGE2 for lr in grid(task, name, quick)]


def _mean(runs: Sequence[sweep.Run], key: str) -> float:
  return float(np.mean([r.metrics[key] for r in runs]))


def choose(pilot: Mapping[str, Sequence[sweep.Run]], quick: bool = False
           ) -> dict[str, dict[str, float]]:
  """{task: {objective: the rate with the best validation pass@1 (the lower on a tie)}}."""
  return {task: {name: max(grid(task, name, quick), key=lambda lr, t=task, n=name: (
      _mean(pilot[arm_name(t, n, lr)], VALID[t]), -lr)) for name in STAGE2} for task in TASKS}


def arms(quick: bool, choice: Mapping[str, Mapping[str, float]] | None = None
         ) -> list[sweep.Arm]:
  """Per task: SFT and each objective at its picked rate (`choice`; default the grid's middle)."""
  out = _sft_arms(quick)
  for task in TASKS:
    for name in STAGE2:
      rates = grid(task, name, quick)
      lr = choice[task][name] if choice else rates[len(rates) // 2]
      out.append(sweep.Arm(arm_name(task, name), _spec(task, name, quick),
                           {'init_from': sweep.After(arm_name(task, 'sft')), 'optim.lr': lr}))
  return out


def _with_start(runs: Mapping[str, Sequence[sweep.Run]], task: str, arm: str, key: str
                ) -> tuple[list[int], list[list[float]]]:
  """A stage-2 arm's eval curve per seed with the SFT checkpoint's value at step 0."""
  steps, values = sweep.curves(runs[arm], f'eval/{key}')
  start = [r.metrics[key] for r in runs[arm_name(task, 'sft')]]
  return [0, *steps], [[s, *v] for s, v in zip(start, values, strict=True)]


def gate(runs: Mapping[str, Sequence[sweep.Run]]) -> dict:
  """The addition task's precondition, after SFT: validation greedy pass@1 with the long
  strategy forced beats the short one (paired over seeds) by at least GATE_MARGIN."""
  sft = runs[arm_name('addition', 'sft')]
  per_seed = {'SFT, long forced': [r.metrics[GATE_LONG] for r in sft],
              'SFT, short forced': [r.metrics[GATE_SHORT] for r in sft]}
  claim = stats.compare(
      f'Gate (addition, after SFT): validation greedy pass@1 with the long strategy forced '
      f'exceeds the short one by at least {GATE_MARGIN:g}', 'the premise: long traces are '
      'the reliable strategy', per_seed, 'SFT, long forced', 'SFT, short forced', 'a>b',
      metric=f'{GATE_LONG} vs {GATE_SHORT}', fmt='.3f')
  passed = claim['verdict'] == 'reproduced' and claim['ci95'][0] >= GATE_MARGIN
  if claim['verdict'] == 'reproduced' and not passed:
    claim['verdict'] = 'inconclusive'
    claim['ours'] += f'; the 95% interval reaches below the gate margin {GATE_MARGIN:g}'
  claim['passed'] = passed
  return claim


def task_claims(runs: Mapping[str, Sequence[sweep.Run]], task: str, gate_ok: bool = True
                ) -> list[dict]:
  """REDI vs the SFT start, continued SFT, symmetric, DPO and SimPO on the task's pass@1."""
  key = PASS1[task]
  runs = {arm: rs for arm, rs in runs.items() if arm.startswith(task + '_')}
  pass1 = sweep.metric(runs, key)
  sft = runs[arm_name(task, 'sft')]
  floor = stats.Floor('max(untrained model, majority answer) test pass@1',
                      floor_value(sft, task), FLOOR_MARGIN)
  converged = {arm: stats.convergence(sweep.curves(rs, f'eval/{key}')[1], CONVERGENCE_TOL)
               for arm, rs in runs.items()}
  paper = {'sft': '81.7 vs 76.7 (MATH-500 pass@1)', 'continued_sft': 'REDI > SFT on positives',
           'symmetric': '81.7 vs 81.7 MATH-500; 48.3 vs 47.7 5-benchmark average',
           'dpo': '81.7 vs 81.3 (MATH-500 pass@1)', 'simpo': '81.7 vs 81.1 (MATH-500 pass@1)'}
  what = {'sft': 'the SFT checkpoint it starts from', 'continued_sft': 'continued SFT',
          'symmetric': 'the symmetric objective', 'dpo': 'DPO', 'simpo': 'SimPO'}
  redi = arm_name(task, 'redi')
  out = []
  for other in ('sft', 'continued_sft', 'symmetric', 'dpo', 'simpo'):
    text = f'{task}: REDI beats {what[other]}'
    b = arm_name(task, other)
    if redi not in pass1 or b not in pass1:
      out.append(stats.not_tested(text, paper[other], f'arm {redi if redi not in pass1 else b} '
                                  'not run'))
    elif not gate_ok:
      out.append(stats.not_tested(text, paper[other], 'the gate after SFT failed: the long '
                                  'strategy is not the reliable one, the task is not the '
                                  'designed test'))
    else:
      out.append(stats.compare(text, paper[other], pass1, redi, b, 'a>b',
                               metric=f'{key} (test)', fmt='.3f', floor=floor,
                               converged={redi: converged[redi], b: converged[b]}))
  return out


def analyse(runs: Mapping[str, Sequence[sweep.Run]], *, quick: bool, out: pathlib.Path,
            pilot: Mapping[str, Sequence[sweep.Run]] | None = None,
            choice: Mapping[str, Mapping[str, float]] | None = None) -> dict:
  """Claims (common.stats, paired by seed), tables and plots from the finished runs."""
  claims, tables = [], []
  gate_ok = True
  if arm_name('addition', 'sft') in runs:
    g = gate(runs)
    gate_ok = g.pop('passed')
    claims.append(g)
  for task in TASKS:
    if arm_name(task, 'sft') in runs:
      claims += task_claims(runs, task, gate_ok if task == 'addition' else True)
      tables.append(main_table(runs, task, choice, quick))
  if arm_name('addition', 'sft') in runs:
    tables.append(strategy_table(runs))
  if pilot:
    tables.append(pilot_table(pilot, choice, quick, runs))
  plot_files = [pass1_plot(runs, out)]
  if arm_name('addition', 'redi') in runs:
    plot_files.append(strategy_plot(runs, out))
  return {'claims': claims, 'tables': tables, 'plots': plot_files,
          'notes': notes(runs, quick, choice, pilot)}


def floor_value(sft: Sequence[sweep.Run], task: str) -> float:
  """The larger trivial baseline of the task's pass@1: the untrained model, the majority answer."""
  return max(_mean(sft, f'floor/untrained_{PASS1[task]}'),
             _mean(sft, 'floor/majority_answer_test_pass1'))


def sft_trained(value: float, floor: float, seed_values: Sequence[float]) -> bool:
  """An SFT checkpoint trained: its validation pass@1 beats the floor by FLOOR_MARGIN and reaches
  SFT_FAILED_FRACTION of the median over the task's SFT seeds (a seed that found no solution
  sits far below the others, even where the floor is 0)."""
  return (value >= floor + FLOOR_MARGIN
          and value >= SFT_FAILED_FRACTION * float(np.median(seed_values)))


def sft_status(runs, pilot, task: str) -> tuple[list[int], bool | None, list[str]]:
  """(main seeds whose SFT failed, whether the pilot's SFT trained (None: no pilot), notes)."""
  sft = runs[arm_name(task, 'sft')]
  main = [r.metrics[VALID[task]] for r in sft]
  floor = floor_value(sft, task)
  failed = [r.seed for r, v in zip(sft, main, strict=True) if not sft_trained(v, floor, main)]
  out = []
  if failed:
    out.append(f'SFT failed on seed(s) {failed} (validation pass@1 below the floor + '
               f'{FLOOR_MARGIN:g} or below {SFT_FAILED_FRACTION:g} x the seeds\' median '
               f'{np.median(main):.3f}); their stage-2 arms start from that checkpoint, paired '
               'as every seed.')
  trained = None
  if pilot and arm_name(task, 'sft') in pilot:
    p = pilot[arm_name(task, 'sft')][0]
    v = p.metrics[VALID[task]]
    trained = sft_trained(v, floor, main)
    out.append(f'The pilot\'s SFT checkpoint (seed {p.seed}) '
               + (f'trained (validation pass@1 {v:.3f}; main seeds\' median {np.median(main):.3f})'
                  ': its rate picks count as tuned.' if trained else
                  f'did NOT train (validation pass@1 {v:.3f}; floor {floor:.3f} + '
                  f'{FLOOR_MARGIN:g}, main seeds\' median {np.median(main):.3f}): the rates were '
                  'picked on a failed checkpoint and do not count as tuned; the comparisons below '
                  'are at untuned rates.'))
  return failed, trained, out


def notes(runs, quick: bool, choice, pilot=None) -> list[str]:
  smoke = ',smoke' if quick else ''
  out = []
  for task in TASKS:
    sft = arm_name(task, 'sft')
    if sft not in runs:
      continue
    d = runs[sft][0].metrics
    c1, c2 = (CONFIGS[task].get_config(a + smoke) for a in ('sft', 'redi'))
    line = (f'{task}: {d["data/train_problems"]:.0f} training problems, '
            f'{d["data/sft_examples"]:.0f} SFT traces, {d["data/pref_pairs"]:.0f} pairs (teacher '
            f'accuracy {d["data/teacher_accuracy"]:.3f}')
    if task == 'addition':
      line += (f'; short-way share of its traces {d["data/teacher_short_share"]:.3f}, long-way '
               f'share of the SFT traces {d["data/sft_long_share"]:.3f}, of the pairs\' correct '
               f'traces {d["data/pair_pos_long_share"]:.3f}; short-way share of the pairs\' '
               f'incorrect traces {d["data/pair_neg_short_share"]:.3f}')
    o1, o2 = c1.optim, c2.optim
    out.append(line + f'); {c1.data.num_test} test and {c1.data.num_valid} validation '
               f'problems. SFT {c1.train.steps} steps x {c1.train.batch_size} traces (lr '
               f'{o1.lr:g}, {o1.warmup_steps} warmup steps, {o1.schedule} decay to '
               f'{o1.final_lr_fraction:g}x, weight decay {o1.weight_decay:g}), evaluated every '
               f'{c1.train.eval_every}; stage 2 {c2.train.steps} steps x {c2.train.batch_size} '
               f'pairs (continued SFT: x {2 * c2.train.batch_size} traces), {o2.warmup_steps} '
               f'warmup steps then {o2.schedule} decay to {o2.final_lr_fraction:g}x, evaluated '
               f'every {c2.train.eval_every} (the pilot\'s runs: at the end only).')
    out += [f'{task}: {line}' for line in sft_status(runs, pilot, task)[2]]
    if choice:
      out.append(f'{task}: stage-2 rates picked on validation pass@1 ({VALID[task]}) in the '
                 f'pilot (seed {PILOT_SEEDS[0] if not quick else QUICK_SEEDS[0]}): ' + ', '.join(
                     f'{n} {lr:g} of {list(grid(task, n, quick))}'
                     for n, lr in choice[task].items()) + '.')
      edge = [n for n, lr in choice[task].items()
              if len(rates := grid(task, n, quick)) > 1 and lr in (min(rates), max(rates))]
      if edge:
        out.append(f'{task}: picked at an edge of the grid (a wider grid might pick better): '
                   f'{", ".join(edge)}.')
  out += [
      'Metrics: addition\'s claims use the exact expected pass@1 at the evaluation temperature '
      '(the probabilities of the two correct completions under softmax(logits / T), summed); '
      'arith\'s use greedy pass@1 (exact for greedy decoding). Sampled pass@1 and pass@k are '
      'over k samples per test problem at the same temperature.',
      f'Floor: the untrained model\'s test pass@1 and the most frequent training answer given to '
      f'every test problem; an arm is trained when its mean beats the larger by {FLOOR_MARGIN:g}. '
      f'Converged: the seed-mean test pass@1 gains at most {CONVERGENCE_TOL:g} over the last '
      '20% of the arm\'s evaluations.',
      'Verdicts (common.stats): 95% Student-t interval of the per-seed differences; "not '
      'tested" when fewer than 3 seeds, an arm at its floor, an arm still improving, or (on '
      'addition) the gate failed.']
  if quick:
    out.append('QUICK MODE: smoke configs, numbers meaningless.')
  return out


def _mean_ci(values: Sequence[float]) -> str:
  m, h = plots.mean_ci(np.asarray(values, np.float64))
  return f'{float(m):.3f} ± {float(h):.3f}'


def main_table(runs, task: str, choice, quick: bool) -> dict:
  config = CONFIGS[task].get_config('redi,smoke' if quick else 'redi')
  t, k = config.eval.temperature, config.eval.num_samples
  keys = {PASS1[task]: f'test pass@1 exact (T={t:g})', 'test_pass1_greedy': 'test pass@1 greedy',
          'test_pass1_sampled': f'test pass@1 sampled (T={t:g}, {k} samples)',
          'test_passk_sampled': f'test pass@{k}',
          VALID[task]: 'valid pass@1' + (' exact' if task == 'addition' else ' greedy')}
  sft = runs[arm_name(task, 'sft')]
  floor = floor_value(sft, task)
  rows = [['floor: max(untrained, majority answer)', '-', '-', f'{floor:.3f}']
          + ['-'] * len(keys)]
  for name in ('sft', *STAGE2):
    arm = arm_name(task, name)
    if arm not in runs:
      continue
    lr = '-' if name == 'sft' else f'{choice[task][name]:g}' if choice else '?'
    rows.append([LABELS[name], PAPER_NUMBERS.get(name, '-'), lr]
                + [_mean_ci([r.metrics[key] for r in runs[arm]]) for key in keys]
                + [', '.join(f'{r.metrics[PASS1[task]]:.3f}' for r in runs[arm])])
  return results.table(
      f'{task}: test pass@1 (paper: MATH-500 pass@1 of 16 samples at T 0.6; ours: mean ± 95% '
      'interval over seeds), each objective at its rate picked on validation',
      ['method', 'paper', 'stage-2 lr', *keys.values(), f'{PASS1[task]} per seed'], rows)


def strategy_table(runs) -> dict:
  """Addition: each strategy's share in the student's outputs and its accuracy when forced."""
  keys = {'test_long_share_exact': 'long share exact (T)', 'test_long_share_sampled':
          'long share sampled (T)', 'test_long_share_greedy': 'long share greedy',
          'test_pass1_exact_long_forced': 'P(correct | long) exact',
          'test_pass1_exact_short_forced': 'P(correct | short) exact',
          'test_pass1_greedy_long_forced': 'greedy pass@1 long forced',
          'test_pass1_greedy_short_forced': 'greedy pass@1 short forced',
          'test_chosen_logp': 'logp/token correct', 'test_rejected_logp': 'logp/token incorrect'}
  rows = [[LABELS[name]] + [f'{_mean(runs[arm_name("addition", name)], k):.3f}' for k in keys]
          for name in ('sft', *STAGE2) if arm_name('addition', name) in runs]
  return results.table(
      'addition: the long (column-by-column) strategy\'s share in the student\'s outputs and '
      'each strategy\'s accuracy when forced (test problems, seed means); held-out mean '
      'log-likelihood per token of the teacher\'s correct and incorrect traces',
      ['method', *keys.values()], rows)


def pilot_table(pilot, choice, quick: bool, runs=None) -> dict:
  rows = []
  for task in TASKS:
    sft = pilot.get(arm_name(task, 'sft'))
    if sft:
      trained = (sft_status(runs, pilot, task)[1] if runs and arm_name(task, 'sft') in runs
                 else None)
      rows.append([task, LABELS['sft'], '-', f'{_mean(sft, VALID[task]):.3f}',
                   f'{_mean(sft, PASS1[task]):.3f}', {None: '', True: 'trained',
                                                      False: 'FAILED: picks not tuned'}[trained]])
    for name in STAGE2:
      for lr in grid(task, name, quick):
        arm = arm_name(task, name, lr)
        if arm in pilot:
          rows.append([task, LABELS[name], f'{lr:g}', f'{_mean(pilot[arm], VALID[task]):.3f}',
                       f'{_mean(pilot[arm], PASS1[task]):.3f}',
                       'picked' if choice and choice[task][name] == lr else ''])
  return results.table(
      'Pilot (its own seed): stage-2 learning rates; the picked rate has the best validation '
      'pass@1 (addition: exact at T; arith: greedy). Test pass@1 shown, never used to pick',
      ['task', 'method', 'stage-2 lr', 'valid pass@1', 'test pass@1', ''], rows)


def pass1_plot(runs, out: pathlib.Path) -> str:
  tasks = [t for t in TASKS if arm_name(t, 'redi') in runs]
  fig, axes = plots.figure(max(len(tasks), 1))
  for ax, task in zip(axes, tasks, strict=False):
    arms = {LABELS[n]: arm_name(task, n) for n in STAGE2 if arm_name(task, n) in runs}
    steps = _with_start(runs, task, next(iter(arms.values())), PASS1[task])[0]
    plots.curves(ax, steps, {k: _with_start(runs, task, a, PASS1[task])[1]
                             for k, a in arms.items()},
                 ylabel=PASS1[task].replace('_', ' '), xlabel='stage-2 step (0: SFT checkpoint)',
                 title=task)
  return plots.save(fig, out / 'pass_at_1.png', len(runs[arm_name(tasks[0], 'sft')]))


def strategy_plot(runs, out: pathlib.Path) -> str:
  fig, axes = plots.figure(2)
  for ax, key, label in ((axes[0], 'test_long_share_exact', 'P(long strategy) at T'),
                         (axes[1], 'test_pass1_exact_short_forced', 'P(correct | short) at T')):
    arms = {LABELS[n]: arm_name('addition', n) for n in STAGE2}
    steps = _with_start(runs, 'addition', arms[LABELS['redi']], key)[0]
    plots.curves(ax, steps, {k: _with_start(runs, 'addition', a, key)[1]
                             for k, a in arms.items()},
                 ylabel=label, xlabel='stage-2 step (0: SFT checkpoint)',
                 title=f'addition: {label}')
  return plots.save(fig, out / 'strategy.png', len(runs[arm_name('addition', 'sft')]))


def main(argv: Sequence[str] | None = None) -> dict:
  return sweep.main(PAPER, TITLE, arms, analyse, SEEDS, argv, quick_seeds=QUICK_SEEDS,
                    pilot=sweep.Pilot(pilot_arms, choose, PILOT_SEEDS))


if __name__ == '__main__':
  main()
