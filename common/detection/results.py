"""What the detection reproductions share when they turn runs into results: the pilot's choice
of the training length, the COCO-metric table rows (arms and floors), the notes, the results
figure and the acceptance check (AP50 and a flat AP curve per arm)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from common import plots, sweep
from common.detection import evaluation, schedule

AP50_TARGET = 50.0  # an arm counts as a trained detector at AP50 >= this (percent)
CURVE = 'eval/AP'


def choose_steps(pilot: Mapping[str, Sequence[sweep.Run]], tol: float, multiple: int = 100
                 ) -> tuple[int, dict[str, int]]:
  """(main-run length, {pilot arm: its plateau step}): the latest plateau step of the pilot's
  arms (`schedule.plateau_step` of their seed-mean AP curves, tolerance `tol` AP), rounded up
  to a multiple of `multiple` steps."""
  per_arm = {}
  for name, runs in pilot.items():
    steps, curves = sweep.curves(runs, CURVE)
    per_arm[name] = schedule.plateau_step(steps, curves, tol)
  return schedule.round_steps(max(per_arm.values()), multiple), per_arm


def pilot(pretrain_arm: Callable[[bool], sweep.Arm],
          detector_arms: Callable[[bool, sweep.After], Sequence[sweep.Arm]],
          tol: float) -> sweep.Pilot:
  """The pilot of a detection reproduction: the backbone pretraining and
  `detector_arms(quick, backbone)` from it, at constant lr; its choice is {'steps': the main
  length (`choose_steps`), 'plateau_steps': {arm: its plateau step}}."""

  def choose(runs: Mapping[str, Sequence[sweep.Run]], quick: bool) -> dict[str, Any]:
    steps, plateaus = choose_steps(detectors(runs), tol, 5 if quick else 100)
    return {'steps': steps, 'plateau_steps': plateaus}

  return sweep.Pilot(
      lambda quick: [pretrain_arm(quick), *detector_arms(quick, sweep.After('pretrain'))],
      choose)


def detectors(runs: Mapping[str, Sequence[sweep.Run]]) -> dict[str, Sequence[sweep.Run]]:
  """The detector arms of a sweep (every arm but the backbone pretraining)."""
  return {n: rs for n, rs in runs.items() if n != 'pretrain'}


def metrics_row(label: str, per_seed_ap: Sequence[float], runs: Sequence[sweep.Run],
                suffix: str = '') -> list[Any]:
  """[label, AP mean, 95% half-width, AP per seed, AP50 .. APl seed means] of one arm; the
  metrics are `<name><suffix>` of each run's final metrics."""
  mean, half = plots.mean_ci(np.asarray(per_seed_ap))
  means = [float(np.mean([r.metrics[k + suffix] for r in runs])) for k in evaluation.METRICS]
  return ([label, round(float(mean), 2), round(float(half), 2),
           ', '.join(f'{x:.2f}' for x in per_seed_ap)] + [round(m, 2) for m in means[1:]])


def floor_rows(floors: Mapping[str, Mapping[str, float]], extra: int) -> list[list[Any]]:
  """One row per floor (`floors.ap_floors`), padded with `extra` empty cells."""
  out = []
  for name, f in floors.items():
    label = f'floor: val gt boxes, {name}' + (' (5 draws)' if name == 'random class'
                                              else ' at one score')
    out.append([label, round(f['AP'], 2), '', ''] + [round(f[k], 2)
                                                      for k in evaluation.METRICS[1:]]
               + [''] * extra)
  return out


def acceptance(runs: Mapping[str, Sequence[sweep.Run]], converged: Mapping[str, dict],
               labels: Mapping[str, str]) -> str:
  """One note: which arms reach seed-mean AP50 >= AP50_TARGET and have a flat AP curve."""
  parts = []
  for name, rs in runs.items():
    ap50 = float(np.mean([r.metrics['AP50'] for r in rs]))
    c = converged[name]
    parts.append(f'{labels.get(name, name)}: AP50 {ap50:.1f} '
                 f'({"ok" if ap50 >= AP50_TARGET else "below " + format(AP50_TARGET, "g")}), '
                 f'AP gain over the last 20% {c["improvement"]:.2f} '
                 f'({"flat" if c["ok"] else "still improving"})')
  ok = all(float(np.mean([r.metrics['AP50'] for r in rs])) >= AP50_TARGET
           and converged[n]['ok'] for n, rs in runs.items())
  head = ('Acceptance (every arm a trained detector: seed-mean AP50 >= '
          f'{AP50_TARGET:g} and a flat AP curve): {"met" if ok else "NOT met"}. ')
  return head + '; '.join(parts) + '.'


def pilot_table(pilot: Mapping[str, Sequence[sweep.Run]], per_arm: Mapping[str, int],
                steps: int, labels: Mapping[str, str], tol: float) -> dict[str, Any]:
  """The pilot's AP curve (seed mean) at each evaluation, its plateau step, the chosen length."""
  from common import results
  x, _ = sweep.curves(next(iter(pilot.values())), CURVE)
  rows = []
  for name, rs in pilot.items():
    curve = np.mean(sweep.curves(rs, CURVE)[1], 0)
    rows.append([labels.get(name, name), per_arm[name], round(float(curve.max()), 2),
                 ', '.join(f'{s}: {v:.1f}' for s, v in zip(x, curve, strict=True))])
  return results.table(
      f'Pilot (constant lr, its own validation canvases): AP per evaluation, the plateau step '
      f'(after it the 3-point running mean never rises more than {tol:g} AP) and the main-run '
      f'length chosen: {steps} steps',
      ['pilot arm', 'plateau step', 'best AP', 'AP at step'], rows)


def pilot_note(pilot: Mapping[str, Sequence[sweep.Run]], labels: Mapping[str, str],
               tol: float, steps: int) -> str:
  """Whether the pilot reached a plateau: an arm whose seed-mean AP still rose by more than
  `tol` over the pilot's last fifth (its best there minus its value at 80% of the pilot) was
  cut off by the pilot's length, whatever plateau step noise near the end gave, so the main
  runs' length `steps` is a fixed budget, not a converged length."""
  rising = []
  for name, rs in pilot.items():
    x, curves = sweep.curves(rs, CURVE)
    curve = np.mean(curves, 0)
    k = len(x) - max(1, len(x) // 5) - 1  # the evaluation at 80% of the pilot
    if curve[k:].max() - curve[k] > tol:
      rising.append(f'{labels.get(name, name)} (AP {curve[k]:.1f} at step {x[k]} -> best '
                    f'{curve[k:].max():.1f} after it)')
  if not rising:
    return (f'Pilot: every arm rose by at most {tol:g} AP over the pilot\'s last fifth (a '
            'plateau within its length).')
  return (f'Pilot: NO PLATEAU within the pilot\'s {x[-1]} steps; still rising by more than '
          f'{tol:g} AP over its last fifth at constant lr: {"; ".join(rising)}. The main runs '
          f'train {steps} steps (the latest plateau step of the running-mean rule, which noise '
          'near the pilot\'s end sets): the claims compare the arms at that fixed budget (the '
          'paper compares them at the 1x schedule), each arm judged only if its own decayed-lr '
          'curve is flat; longer training (`PILOT_STEPS` in the config) may still raise every '
          'arm.')


def convergence_note(tol: float) -> str:
  """One note: the rule that calls a main arm's AP curve flat, and the lr schedule's shape."""
  return (f'Convergence: an arm counts as flat when its seed-mean AP rose by at most {tol:g} AP '
          'over the last 20% of its evaluations (every fifth of training); the lr steps down '
          'x0.1 at 2/3 and 8/9 of training (the 1x schedule\'s shape).')


def figure(path: str | os.PathLike, ap: Mapping[str, Sequence[float]],
           runs: Mapping[str, Sequence[sweep.Run]],
           pilot: Mapping[str, Sequence[sweep.Run]], labels: Mapping[str, str], floor: float,
           steps: int) -> str:
  """The results plot, one panel per row: the final AP per seed of every entry of `ap` (bars,
  the random-class floor dashed), the main runs' AP curves and, with a pilot, its curves."""
  fig, axes = plots.figure(1, 3 if pilot else 2)
  plots.bars(axes[0], {labels[n]: v for n, v in ap.items()}, ylabel='COCO AP (val)',
             title=f'After {steps} steps', floor=floor, floor_label='random-class floor')
  panels = [(runs, 'COCO AP (val)', 'AP during training', floor)]
  if pilot:
    panels.append((pilot, 'COCO AP (pilot val)', 'Pilot, constant lr', None))
  for ax, (arms, ylabel, title, line) in zip(axes[1:], panels, strict=True):
    x, _ = sweep.curves(next(iter(arms.values())), CURVE)
    plots.curves(ax, x, {labels[n]: sweep.curves(rs, CURVE)[1] for n, rs in arms.items()},
                 ylabel=ylabel, title=title, floor=line)
  return plots.save(fig, path, len(next(iter(runs.values()))))


def pretraining_note(runs: Sequence[sweep.Run]) -> str:
  """One note: the pretrained backbones' digit accuracy on the validation digits, per seed."""
  acc = ', '.join(f'{100 * r.metrics["accuracy"]:.1f}%' for r in runs)
  return ('Backbone: pretrained as a digit classifier on the training canvases\' digits '
          f'(`pretrain` arm, one per seed); accuracy on the validation digits per seed: {acc}.')
