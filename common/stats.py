"""The one statistics module: every verdict in a results.json comes from here.

Verdicts:
- `reproduced`: the 95% interval excludes 0 on the paper's side (equivalence: it lies inside the
  margin; a deterministic fact: the exact values point the paper's way);
- `contradicted`: the interval excludes 0 on the other side (equivalence: it lies outside the
  margin; a deterministic fact: the exact values point the other way);
- `inconclusive`: the interval covers 0; the claim also gives the smallest effect this design
  could detect (`mde`: 80% power, two-sided 5% level, the measured spread);
- `not tested`: fewer than `MIN_SEEDS` paired seeds, an arm not beyond its floor by the stated
  margin, or an arm whose metric was still improving at the end.

Comparative claims pair seeds: seed s of arm a and seed s of arm b share the initialisation and
data order, so the interval is Student's t on the per-seed differences a_s - b_s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

VERDICTS = ('reproduced', 'contradicted', 'inconclusive', 'not tested')
MIN_SEEDS = 3
DIRECTIONS = ('a>b', 'a<b')


@dataclasses.dataclass(frozen=True)
class Interval:
  """Mean of paired differences with its Student-t interval."""
  mean: float
  lo: float
  hi: float
  sd: float
  n: int


def t_interval(diffs: Sequence[float], level: float = 0.95) -> Interval:
  """Two-sided Student-t interval of the mean of `diffs` (n >= 2)."""
  d = np.asarray(diffs, np.float64)
  n = len(d)
  if n < 2:
    raise ValueError(f'a t interval needs at least 2 values, got {n}')
  sd = float(d.std(ddof=1))
  half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
  m = float(d.mean())
  return Interval(m, m - half, m + half, sd, n)


def min_detectable_effect(sd: float, n: int, power: float = 0.8) -> float:
  """Smallest true mean difference a paired t test with `n` seeds detects with `power` at the
  two-sided 5% level, given the per-seed difference spread `sd`."""
  if n < 2:
    return math.inf
  df = n - 1
  return float((sps.t.ppf(0.975, df) + sps.t.ppf(power, df)) * sd / math.sqrt(n))


@dataclasses.dataclass(frozen=True)
class Floor:
  """A trivial baseline of a metric (chance accuracy, random-policy return, unigram loss, ...).
  An arm counts as trained when its seed mean beats `value` by at least `margin`."""
  name: str
  value: float
  margin: float
  higher_is_better: bool = True

  def check(self, per_seed: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    sign = 1.0 if self.higher_is_better else -1.0
    means = {arm: float(np.mean(v)) for arm, v in per_seed.items()}
    above = {arm: sign * (m - self.value) >= self.margin for arm, m in means.items()}
    return {'name': self.name, 'value': self.value, 'margin': self.margin,
            'higher_is_better': self.higher_is_better, 'arm_means': means,
            'ok': all(above.values())}


def convergence(curves: Sequence[Sequence[float]], tol: float, *, higher_is_better: bool = True,
                window: float = 0.2) -> dict[str, Any]:
  """Whether a metric has flattened: over the last `window` of the evaluations (at least the
  last two points), its seed-mean improvement is at most `tol` (in the metric's units).

  `curves` holds one evaluation curve per seed, equally spaced, in training order."""
  c = np.asarray(curves, np.float64)
  if c.ndim != 2 or c.shape[1] < 2:
    raise ValueError('convergence needs one curve of at least 2 evaluations per seed')
  start = min(int(round((1 - window) * (c.shape[1] - 1))), c.shape[1] - 2)
  change = float(np.mean(c[:, -1] - c[:, start]))
  improvement = change if higher_is_better else -change
  return {'ok': improvement <= tol, 'improvement': improvement, 'tol': tol, 'window': window,
          'points': int(c.shape[1])}


def _fmt(x: float, spec: str) -> str:
  return format(x, spec)


def _not_tested(reasons: list[str], n: int, floor: dict | None,
                converged: Mapping[str, dict] | None) -> list[str]:
  if n < MIN_SEEDS:
    reasons.append(f'{n} paired seeds < {MIN_SEEDS}')
  if floor is not None and not floor['ok']:
    low = [a for a, m in floor['arm_means'].items()
           if (m - floor['value']) * (1 if floor['higher_is_better'] else -1) < floor['margin']]
    reasons.append(f'{", ".join(low)} not beyond the floor {floor["name"]} '
                   f'({floor["value"]:.4g}) by {floor["margin"]:.4g}')
  for arm, c in (converged or {}).items():
    if not c['ok']:
      reasons.append(f'{arm} still improving ({c["improvement"]:.3g} > tol {c["tol"]:.3g} over '
                     f'the last {c["window"]:.0%} of training)')
  return reasons


def compare(text: str, paper: str, per_seed: Mapping[str, Sequence[float]], a: str, b: str,
            direction: str, *, metric: str, fmt: str = '.4g', floor: Floor | None = None,
            converged: Mapping[str, dict] | None = None, reference: float | None = None
            ) -> dict[str, Any]:
  """A comparative claim: arm `a` vs arm `b` on `metric`, paired by seed.

  `direction` is the paper's: 'a>b' or 'a<b'. With `reference`, `b` is a fixed value (a theory
  value, a paper's constant) and the test is one-sample. `ci95` is of mean(a - b)."""
  if direction not in DIRECTIONS:
    raise ValueError(f'direction {direction!r} is not one of {DIRECTIONS}')
  va = np.asarray(per_seed[a], np.float64)
  vb = (np.full_like(va, reference) if reference is not None
        else np.asarray(per_seed[b], np.float64))
  if va.shape != vb.shape:
    raise ValueError(f'{a} has {len(va)} seeds and {b} {len(vb)}: pair them seed by seed')
  n = len(va)
  arms = {a: va} if reference is not None else {a: va, b: vb}
  floor_out = floor.check(arms) if floor is not None else None
  reasons = _not_tested([], n, floor_out, converged)
  claim: dict[str, Any] = {
      'claim': text, 'paper': paper, 'kind': 'comparative', 'metric': metric, 'a': a, 'b': b,
      'direction': direction, 'n': n,
      'per_seed': {k: [float(x) for x in v] for k, v in per_seed.items()},
      'floor': floor_out, 'converged': dict(converged) if converged else None}
  if reference is not None:
    claim['reference'] = float(reference)
  diff = va - vb
  sign = 1 if direction == 'a>b' else -1
  if n >= 2:
    ci = t_interval(diff)
    mde = min_detectable_effect(ci.sd, n)
    claim.update(ci95=[ci.lo, ci.hi], mean_diff=ci.mean, mde=mde)
    interval = f'[{_fmt(ci.lo, fmt)}, {_fmt(ci.hi, fmt)}]'
  else:
    ci, mde = None, math.inf
    claim.update(ci95=None, mean_diff=float(diff.mean()) if n else None, mde=None)
    interval = 'n/a'
  if reasons:
    verdict = 'not tested'
  elif min(ci.lo * sign, ci.hi * sign) > 0:
    verdict = 'reproduced'
  elif max(ci.lo * sign, ci.hi * sign) < 0:
    verdict = 'contradicted'
  else:
    verdict = 'inconclusive'
  bname = _fmt(reference, fmt) if reference is not None else f'{_fmt(vb.mean(), fmt)}'
  ours = (f'{_fmt(va.mean(), fmt)} vs {bname} (a - b {_fmt(float(diff.mean()), fmt)}, '
          f'95% CI {interval}, {n} seeds)')
  if verdict == 'inconclusive':
    ours += f'; smallest detectable |a - b| {_fmt(mde, fmt)}'
  if reasons:
    ours += '; not tested: ' + '; '.join(reasons)
  claim.update(ours=ours, verdict=verdict, reasons=reasons)
  return claim


def _paired(text: str, paper: str, kind: str, per_seed: Mapping[str, Sequence[float]], a: str,
            b: str, metric: str, floor: Floor | None, converged: Mapping[str, dict] | None,
            **extra: Any) -> tuple[np.ndarray, int, list[str], dict[str, Any]]:
  """(a - b per seed, n, not-tested reasons, the claim's common fields) of a paired claim."""
  va, vb = (np.asarray(per_seed[k], np.float64) for k in (a, b))
  floor_out = floor.check({a: va, b: vb}) if floor is not None else None
  reasons = _not_tested([], len(va), floor_out, converged)
  claim = {'claim': text, 'paper': paper, 'kind': kind, 'metric': metric, 'a': a, 'b': b,
           **extra, 'n': len(va),
           'per_seed': {k: [float(x) for x in v] for k, v in per_seed.items()},
           'floor': floor_out, 'converged': dict(converged) if converged else None}
  return va - vb, len(va), reasons, claim


def equivalent(text: str, paper: str, per_seed: Mapping[str, Sequence[float]], a: str, b: str,
               margin: float, *, metric: str, fmt: str = '.4g', floor: Floor | None = None,
               converged: Mapping[str, dict] | None = None) -> dict[str, Any]:
  """An equivalence claim |a - b| < margin by two one-sided paired t tests at 5% each (the 90%
  interval inside (-margin, margin)); contradicted when the 95% interval lies outside it."""
  diff, n, reasons, claim = _paired(text, paper, 'equivalence', per_seed, a, b, metric, floor,
                                    converged, margin=margin)
  if n >= 2:
    ci90, ci95 = t_interval(diff, 0.90), t_interval(diff, 0.95)
    claim.update(ci90=[ci90.lo, ci90.hi], ci95=[ci95.lo, ci95.hi], mean_diff=ci95.mean)
  if reasons:
    verdict = 'not tested'
  elif -margin < ci90.lo and ci90.hi < margin:
    verdict = 'reproduced'
  elif ci95.lo >= margin or ci95.hi <= -margin:
    verdict = 'contradicted'
  else:
    verdict = 'inconclusive'
  ours = f'a - b {_fmt(float(diff.mean()), fmt)}'
  if n >= 2:
    ours += f', 90% CI [{_fmt(ci90.lo, fmt)}, {_fmt(ci90.hi, fmt)}]'
  ours += f' vs margin +-{_fmt(margin, fmt)} ({n} seeds)'
  if reasons:
    ours += '; not tested: ' + '; '.join(reasons)
  claim.update(ours=ours, verdict=verdict, reasons=reasons)
  return claim


def noninferior(text: str, paper: str, per_seed: Mapping[str, Sequence[float]], a: str, b: str,
                margin: float, *, metric: str, higher_is_better: bool = True, fmt: str = '.4g',
                floor: Floor | None = None, converged: Mapping[str, dict] | None = None
                ) -> dict[str, Any]:
  """A non-inferiority claim: `a` is no worse than `b` by more than `margin` (> 0), by a
  one-sided paired t test at 5% (the 90% interval's worse end beyond -margin); contradicted
  when the whole 95% interval is worse than -margin."""
  sign = 1.0 if higher_is_better else -1.0
  diff, n, reasons, claim = _paired(text, paper, 'noninferiority', per_seed, a, b, metric, floor,
                                    converged, margin=margin, higher_is_better=higher_is_better)
  if n >= 2:
    ci90, ci95 = t_interval(diff, 0.90), t_interval(diff, 0.95)
    claim.update(ci90=[ci90.lo, ci90.hi], ci95=[ci95.lo, ci95.hi], mean_diff=ci95.mean)
    worse90 = min(sign * ci90.lo, sign * ci90.hi)
    better95 = max(sign * ci95.lo, sign * ci95.hi)
  if reasons:
    verdict = 'not tested'
  elif worse90 > -margin:
    verdict = 'reproduced'
  elif better95 < -margin:
    verdict = 'contradicted'
  else:
    verdict = 'inconclusive'
  ma, mb = (float(np.mean(claim['per_seed'][k])) for k in (a, b))
  ours = (f'{_fmt(ma, fmt)} vs {_fmt(mb, fmt)} (a - b {_fmt(float(diff.mean()), fmt)}'
          + (f', 90% CI [{_fmt(ci90.lo, fmt)}, {_fmt(ci90.hi, fmt)}]' if n >= 2 else '')
          + f'; margin {_fmt(margin, fmt)}, {n} seeds)')
  if reasons:
    ours += '; not tested: ' + '; '.join(reasons)
  claim.update(ours=ours, verdict=verdict, reasons=reasons)
  return claim


def deterministic(text: str, paper: str, values: Mapping[str, float], a: str, b: str,
                  direction: str, *, metric: str, fmt: str = '.4g') -> dict[str, Any]:
  """A property of a function on fixed data (no seed involved): exact values compared."""
  if direction not in DIRECTIONS:
    raise ValueError(f'direction {direction!r} is not one of {DIRECTIONS}')
  va, vb = float(values[a]), float(values[b])
  holds = va > vb if direction == 'a>b' else va < vb
  return {'claim': text, 'paper': paper, 'kind': 'deterministic', 'deterministic': True,
          'metric': metric, 'a': a, 'b': b, 'direction': direction,
          'values': {a: va, b: vb}, 'ours': f'{_fmt(va, fmt)} vs {_fmt(vb, fmt)} (exact)',
          'verdict': 'reproduced' if holds else 'contradicted', 'reasons': []}


def not_tested(text: str, paper: str, why: str) -> dict[str, Any]:
  """A claim this reproduction does not test, with the reason (e.g. the scale it needs)."""
  return {'claim': text, 'paper': paper, 'kind': 'not tested', 'ours': f'not tested: {why}',
          'verdict': 'not tested', 'reasons': [why]}
