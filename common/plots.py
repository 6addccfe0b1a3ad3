"""The one plot helper: 95% intervals over seeds, legends outside the data, 900 px wide.

    fig, axes = plots.figure(2)
    plots.bars(axes[0], {'method': [39.1, 39.4, 39.2], 'baseline': [...]}, ylabel='AP')
    plots.curves(axes[1], steps, {'method': per_seed_curves, ...}, ylabel='AP')
    plots.save(fig, out / 'figure.png', n_seeds=3)

Every error bar and band is the Student-t 95% interval of the seed mean; `save` writes that
into the figure's caption line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats as sps  # noqa: E402

WIDTH_PX, DPI = 900, 100


def mean_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Seed mean and the half-width of its 95% t interval, over axis 0 (0 for one seed)."""
  v = np.asarray(values, np.float64)
  n = v.shape[0]
  if n < 2:
    return v.mean(0), np.zeros_like(v.mean(0))
  return v.mean(0), sps.t.ppf(0.975, n - 1) * v.std(0, ddof=1) / np.sqrt(n)


def figure(ncols: int = 1, nrows: int = 1, height_px: int = 320):
  """A figure 900 px wide (README width) with `nrows x ncols` axes (a flat array)."""
  fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH_PX / DPI, nrows * height_px / DPI),
                           squeeze=False)
  return fig, axes.ravel()


def bars(ax, per_seed: Mapping[str, Sequence[float]], *, ylabel: str, title: str = '',
         floor: float | None = None, floor_label: str = 'floor') -> None:
  """One bar per arm: seed mean with its 95% interval; the floor as a dashed line."""
  names = list(per_seed)
  stats = [mean_ci(np.asarray(per_seed[k])) for k in names]
  ax.bar(range(len(names)), [m for m, _ in stats], yerr=[h for _, h in stats], capsize=3,
         color=[f'C{i}' for i in range(len(names))])
  ax.set_xticks(range(len(names)), names, rotation=20, ha='right')
  if floor is not None:
    ax.axhline(floor, color='k', ls='--', lw=1, label=floor_label)
    legend_outside(ax)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)


def curves(ax, x: Sequence[float], per_arm: Mapping[str, Sequence[Sequence[float]]], *,
           ylabel: str, xlabel: str = 'step', title: str = '', floor: float | None = None,
           logx: bool = False) -> None:
  """One line per arm (seed mean) with a shaded 95% band; legend outside the axes."""
  for i, (name, runs) in enumerate(per_arm.items()):
    m, h = mean_ci(np.asarray(runs))
    ax.plot(x[:len(m)], m, color=f'C{i}', label=name)
    ax.fill_between(x[:len(m)], m - h, m + h, color=f'C{i}', alpha=0.2, lw=0)
  if floor is not None:
    ax.axhline(floor, color='k', ls='--', lw=1, label='floor')
  if logx:
    ax.set_xscale('log')
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  legend_outside(ax)


def legend_outside(ax) -> None:
  ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def save(fig, path, n_seeds: int | str) -> str:
  """Writes the figure with its caption line; returns the file name. `n_seeds`: the number of
  seeds, or words for it where panels differ (e.g. "each panel's title's")."""
  fig.text(0.01, 0.005, f'Error bars and bands: 95% Student-t interval of the mean over '
           f'{n_seeds} seeds.', fontsize=8, ha='left', va='bottom')
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return str(path).rsplit('/', 1)[-1]
