"""Reproduces PROPS (CPU-sized): fixed-target sampling error, and RL on CartPole and Hopper.

    python -m papers.props.reproduce            # full (about 5 minutes on 2 CPU cores)
    python -m papers.props.reproduce --quick    # the smoke configs, same code path

Every arm is a config of `configs/props/` run by `common.sweep` through the one run path, its
seeds vmapped in one run: the bandit (`bandit.py`, on-policy vs PROPS sampling of a fixed
target), CartPole with a fixed network target (`cartpole.py:fixed`), PPO / PPO-buffer / PROPS on
CartPole (`cartpole.py`) and on Hopper (`hopper.py`). This file holds only the arms, the claims
(`common.stats`), the tables and the plot.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from common import plots, stats, sweep
from common.results import table
from papers.props.props import ARMS

TITLE = 'On-Policy Policy Gradient RL Without On-Policy Sampling (PROPS)'
SEEDS = (0, 1, 2, 3, 4)
FLOOR_MARGIN = 0.1  # an arm is trained when its return-curve area beats the floor by 10% of it
CONVERGED_TOL = 0.05  # converged: over the last 20% of evaluations the return rose <= 5% of it
THEORY_MARGIN = 0.1  # equivalence margin of the bandit claim: 10% of (K-1)/2N
ENVS = {'': 'CartPole-v1', 'hopper_': 'Hopper-v5'}  # arm prefix -> environment
PAPER_FIXED = 'sampling error 0.51-0.84x of on-policy sampling (fixed expert targets)'
PAPER_SE = 'lower sampling error than PPO-buffer on all 6 MuJoCo tasks'
PAPER_AUC = 'larger return-curve area than PPO on 5 of 6 MuJoCo tasks (1M steps)'
PAPER_AUC_BUFFER = ('no number: PPO-buffer is the ablation with the same buffer sampled '
                    'on-policy; the paper shows PROPS above it')


def arms(quick: bool) -> list[sweep.Arm]:
  def spec(name: str, *args: str) -> str:
    arg = ','.join((*args, 'smoke') if quick else args)
    return f'configs/props/{name}.py' + (f':{arg}' if arg else '')

  return [
      sweep.Arm('bandit_on_policy', spec('bandit'), {'arm': 'on_policy'}, vmap_seeds=True),
      sweep.Arm('bandit_props', spec('bandit'), {'arm': 'props'}, vmap_seeds=True),
      sweep.Arm('fixed_on_policy', spec('cartpole', 'fixed'), {'arm': 'ppo_buffer'},
                vmap_seeds=True),
      sweep.Arm('fixed_props', spec('cartpole', 'fixed'), {'arm': 'props'}, vmap_seeds=True),
      *[sweep.Arm(a, spec('cartpole'), {'arm': a}, vmap_seeds=True) for a in ARMS],
      *[sweep.Arm(f'hopper_{a}', spec('hopper'), {'arm': a}, vmap_seeds=True) for a in ARMS],
  ]


# --- reading the runs -------------------------------------------------------------------------

def _metric(runs: Mapping[str, Sequence[sweep.Run]], names: Sequence[str], key: str
            ) -> dict[str, list[float]]:
  return sweep.metric({a: runs[a] for a in names}, key)


def _curves(runs: Sequence[sweep.Run], key: str) -> tuple[list[int], list[list[float]]]:
  """(steps, one curve per seed) of a vmapped run's `<key>/seed<i>`."""
  steps, curves = [], []
  for i, run in enumerate(runs):
    steps, values = run.history(f'{key}/seed{i}')
    curves.append(values)
  return steps, curves


def _config(runs: Sequence[sweep.Run]) -> dict:
  with open(os.path.join(runs[0].workdir, 'config.json')) as f:
    return json.load(f)


def _floor(runs, names: Sequence[str]) -> stats.Floor:
  """The untrained policy's return (every run's step-0 evaluation, same evaluator)."""
  value = float(np.mean([r.metrics['initial_return'] for a in names for r in runs[a]]))
  return stats.Floor('untrained policy return', value, FLOOR_MARGIN * abs(value))


def _converged(runs, names: Sequence[str]) -> dict[str, dict]:
  out = {}
  for a in names:
    curves = np.asarray(_curves(runs[a], 'eval_return')[1])
    out[a] = stats.convergence(curves, CONVERGED_TOL * abs(curves[:, -1].mean()))
  return out


def _ci(values: Sequence[float], fmt: str) -> str:
  mean, half = plots.mean_ci(np.asarray(values))
  return f'{mean:{fmt}} [{mean - half:{fmt}}, {mean + half:{fmt}}]'


def _per_seed(values: Sequence[float], fmt: str) -> str:
  return ', '.join(f'{v:{fmt}}' for v in values)


def _speed(runs: Sequence[sweep.Run]) -> float:
  """Env steps per second of a run (all seeds), blocks after the first (which compiles)."""
  _, rates = runs[0].history('perf/env_steps_per_s')
  return float(np.mean(rates[1:] if len(rates) > 1 else rates))


# --- claims, tables, plot ---------------------------------------------------------------------

def rl_claims(runs, prefix: str) -> list[dict]:
  env = ENVS[prefix]
  names = [prefix + a for a in ARMS]
  ppo, buffer, props = names
  se = _metric(runs, [buffer, props], 'sampling_error')
  auc = _metric(runs, names, 'auc')
  floor = _floor(runs, names)
  converged = _converged(runs, names)
  return [
      stats.compare(f'{env}: PROPS has lower sampling error than PPO-buffer during training',
                    PAPER_SE, se, props, buffer, 'a<b', metric='mean sampling error before '
                    'each PPO update'),
      stats.compare(f'{env}: PROPS has a larger return-curve area than PPO', PAPER_AUC,
                    {props: auc[props], ppo: auc[ppo]}, props, ppo, 'a>b',
                    metric='mean evaluation return over the run', fmt='.1f', floor=floor,
                    converged={props: converged[props], ppo: converged[ppo]}),
      stats.compare(f'{env}: PROPS has a larger return-curve area than PPO-buffer',
                    PAPER_AUC_BUFFER, {props: auc[props], buffer: auc[buffer]}, props, buffer,
                    'a>b', metric='mean evaluation return over the run', fmt='.1f',
                    floor=floor, converged={props: converged[props], buffer: converged[buffer]}),
  ]


def fixed_claims(runs) -> list[dict]:
  bandit, cart = _config(runs['bandit_on_policy']), _config(runs['fixed_on_policy'])
  se = _metric(runs, ['bandit_on_policy', 'bandit_props'], 'sampling_error')
  theory = runs['bandit_on_policy'][0].metrics['theory']
  fixed = _metric(runs, ['fixed_on_policy', 'fixed_props'], 'final_sampling_error')
  samples = cart['loop']['total_steps']
  return [
      stats.compare(f'Bandit (K={bandit["k"]}, fixed target): PROPS lowers the sampling error '
                    f'of N={bandit["n"]} samples below on-policy sampling', PAPER_FIXED, se,
                    'bandit_props', 'bandit_on_policy', 'a<b',
                    metric=f'sampling error after {bandit["n"]} samples'),
      stats.equivalent(f'Bandit: on-policy sampling error equals (K-1)/2N within '
                       f'{THEORY_MARGIN:.0%} of it (N={bandit["n"]})', '(K-1)/2N for large N',
                       {'bandit_on_policy': se['bandit_on_policy'],
                        '(K-1)/2N': [theory] * len(se['bandit_on_policy'])},
                       'bandit_on_policy', '(K-1)/2N', THEORY_MARGIN * theory,
                       metric=f'sampling error after {bandit["n"]} samples'),
      stats.compare(f'CartPole, fixed network target: PROPS lowers the sampling error of '
                    f'{samples} samples below on-policy sampling', PAPER_FIXED, fixed,
                    'fixed_props', 'fixed_on_policy', 'a<b',
                    metric=f'sampling error after {samples} samples'),
  ]


def tables(runs) -> list[dict]:
  bandit = _config(runs['bandit_on_policy'])
  theory = runs['bandit_on_policy'][0].metrics['theory']
  fixed_samples = _config(runs['fixed_on_policy'])['loop']['total_steps']
  rows = []
  for exp, base, key, n, names, ref in (
      ('bandit', 'bandit_on_policy', 'sampling_error', bandit['n'],
       ('bandit_on_policy', 'bandit_props'), f'(K-1)/2N = {theory:.4g}'),
      ('CartPole, fixed target', 'fixed_on_policy', 'final_sampling_error', fixed_samples,
       ('fixed_on_policy', 'fixed_props'), '')):
    base_values = [r.metrics[key] for r in runs[base]]
    for a in names:
      values = [r.metrics[key] for r in runs[a]]
      ratio = np.mean(values) / np.mean(base_values)
      rows.append((exp, a, n, _ci(values, '.4g'), f'{ratio:.2f}x', _per_seed(values, '.4g'),
                   ref if a == base else PAPER_FIXED))
  fixed = table('Fixed-target sampling error (mean [95% CI] over seeds)',
                ('experiment', 'arm', 'samples', 'sampling error', 'ratio to on-policy',
                 'per seed', 'reference / paper'), rows)
  rl_rows, se_rows = [], []
  for prefix, env in ENVS.items():
    names = [prefix + a for a in ARMS]
    floor, converged = _floor(runs, names), _converged(runs, names)
    for a in names:
      auc = [r.metrics['auc'] for r in runs[a]]
      c = converged[a]
      rl_rows.append((env, a, _ci(auc, '.1f'), _per_seed(auc, '.1f'),
                      f'{np.mean([r.metrics["final_return"] for r in runs[a]]):.1f}',
                      f'{floor.value:.1f}',
                      f'{"yes" if c["ok"] else "no"}: rose {c["improvement"]:.1f} (tol '
                      f'{c["tol"]:.1f})',
                      f'{_speed(runs[a]):.0f}', PAPER_AUC))
      se = [r.metrics['sampling_error'] for r in runs[a]]
      se_rows.append((env, a, _ci(se, '.4g'), _per_seed(se, '.4g'), PAPER_SE))
  return [
      fixed,
      table('RL: area under the evaluation-return curve (mean return over the evaluations, '
            'mean [95% CI] over seeds); floor = the untrained policy; converged = the seed-mean '
            f'return rose by at most {CONVERGED_TOL:.0%} of its final value over the last 20% '
            'of evaluations', ('env', 'arm', 'return-curve area', 'per seed', 'final return',
                               'floor', 'converged', 'env steps/s', 'paper'),
            rl_rows),
      table('RL: sampling error during training (mean over the PPO updates, measured before '
            'each; mean [95% CI] over seeds)', ('env', 'arm', 'sampling error', 'per seed',
                                               'paper'), se_rows),
  ]


def plot(runs, path: pathlib.Path) -> str:
  fig, axes = plots.figure(2, 3, height_px=270)
  steps, _ = _curves(runs['bandit_on_policy'], 'sampling_error')
  plots.curves(axes[0], steps, {a.split('_', 1)[1]: _curves(runs[a], 'sampling_error')[1]
                                for a in ('bandit_on_policy', 'bandit_props')},
               ylabel='sampling error', xlabel='samples N', title='Bandit, fixed target',
               logx=True)
  axes[0].plot(steps, runs['bandit_on_policy'][0].history('theory')[1], 'k:', label='(K-1)/2N')
  plots.legend_outside(axes[0])
  steps, _ = _curves(runs['fixed_on_policy'], 'se/sampling_error')
  plots.curves(axes[1], steps, {a.split('_', 1)[1]: _curves(runs[a], 'se/sampling_error')[1]
                                for a in ('fixed_on_policy', 'fixed_props')},
               ylabel='sampling error', xlabel='samples', title='CartPole, fixed target')
  for row, (prefix, env) in enumerate(ENVS.items(), start=1):
    names = [prefix + a for a in ARMS]
    steps, _ = _curves(runs[names[0]], 'eval_return')
    plots.curves(axes[2 * row], steps, {a: _curves(runs[prefix + a], 'eval_return')[1]
                                        for a in ARMS},
                 ylabel='evaluation return', xlabel='env steps', title=env,
                 floor=_floor(runs, names).value)
    steps, _ = _curves(runs[names[0]], 'se/sampling_error')
    plots.curves(axes[2 * row + 1], steps,
                 {a: _curves(runs[prefix + a], 'se/sampling_error')[1] for a in ARMS},
                 ylabel='sampling error', xlabel='env steps', title=f'{env}, during training')
  for ax in axes[[0, 1, 3, 5]]:
    ax.set_yscale('log')
  return plots.save(fig, path, n_seeds=len(runs['ppo']))


def notes(runs) -> list[str]:
  out = []
  for name, arm in (('Bandit', 'bandit_props'), ('CartPole, fixed target', 'fixed_props'),
                    ('CartPole', 'props'), ('Hopper', 'hopper_props')):
    c = _config(runs[arm])
    settings = {k: c[k] for k in ('k', 'n', 'm', 'trials', 'behavior', 'b', 'loop', 'ppo',
                                  'props') if k in c}
    out.append(f'{name} settings (`{arm}` run; the other arms differ only in `arm`): '
               f'{json.dumps(settings, sort_keys=True)}.')
  out += [
      'Arms: ppo = b 1, on-policy; ppo_buffer = b 2, on-policy sampling; props = b 2 with the '
      'PROPS behaviour policy. Seeds are vmapped in one run per arm; seed s of every arm shares '
      'the initialisation, so claims pair seeds.',
      f'Floor of the return claims: the untrained policy\'s return (each run\'s step-0 '
      f'evaluation through the same evaluator); an arm counts as trained when its return-curve '
      f'area beats it by {FLOOR_MARGIN:.0%} of it. A return claim whose arms still improve '
      'is not tested.',
      'Speed: env steps/s per arm in the RL table (all seeds, wall clock); the jitted loop '
      'against the same loop in PyTorch: `python -m benchmarks.run --paper=props`.',
  ]
  return out


def analyse(runs, *, quick: bool, out: pathlib.Path) -> dict:
  del quick
  return {'claims': fixed_claims(runs) + rl_claims(runs, '') + rl_claims(runs, 'hopper_'),
          'tables': tables(runs), 'plots': [plot(runs, out / 'props.png')],
          'notes': notes(runs)}


if __name__ == '__main__':
  sweep.main('props', TITLE, arms, analyse, SEEDS)
