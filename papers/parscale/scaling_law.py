"""The parallel scaling law L(N, P) = E + (A * 1e9 / (N (k ln P + 1)))^alpha and its fit.

Fitted as in the official `parametric_fit.py`: Huber loss (delta 1e-3) between log true and
log predicted loss, L-BFGS-B from a grid of starting points, R^2 on the loss itself.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize

# The paper's 48 points (Table / Figure 3 data, as hard-coded in the official parametric_fit.py):
# non-embedding parameters N per P (rows P = 1, 2, 4, 8) and final loss on two corpora.
PAPER_N = np.array([
    [535813376, 693753856, 1088376320, 1571472384, 2774773760, 4353203200],
    [538195842, 696738818, 1092762882, 1577522690, 2784937986, 4368529922],
    [540577412, 699722756, 1097148164, 1583571460, 2795100164, 4383854084],
    [545340552, 705690632, 1105918728, 1595669000, 2815424520, 4414502408],
])
PAPER_P = np.repeat(np.array([1, 2, 4, 8])[:, None], 6, axis=1)
PAPER_LOSS = {
    'stack_v2_python': np.array([
        [1.1722, 1.1496, 1.1131, 1.0817, 1.0451, 1.0213],
        [1.1507, 1.1262, 1.094, 1.0623, 1.0244, 1.0025],
        [1.1354, 1.1124, 1.0808, 1.049, 1.0126, 0.9906],
        [1.1231, 1.0997, 1.0688, 1.0383, 1.0016, 0.9794],
    ]),
    'pile': np.array([
        [2.1113, 2.0671, 2.0027, 1.9539, 1.8876, 1.8451],
        [2.0772, 2.0363, 1.973, 1.9266, 1.861, 1.8137],
        [2.0544, 2.0128, 1.9509, 1.904, 1.8394, 1.7938],
        [2.0364, 1.9933, 1.9318, 1.8856, 1.8218, 1.7772],
    ]),
}
PAPER_K = {'stack_v2_python': 0.39, 'pile': 0.33}  # the paper's fitted k
# (E, A, alpha, k) starts for a fast fit (smoke runs); the default is the official 300-point grid
QUICK_STARTS = [(0.5, 0.01, 0.2, 0.2), (0.5, 0.01, 0.2, 0.6), (1.0, 1.0, 0.5, 0.2),
                (1.0, 1.0, 0.5, 0.6)]


def predict(fit_: dict[str, float], n, p) -> np.ndarray:
  """L(N, P) = E + (A * 1e9 / (N (k ln P + 1)))^alpha (the paper's Eq. (5))."""
  n, p = np.asarray(n, np.float64), np.asarray(p, np.float64)
  base = fit_['A'] * 1e9 / (n * (fit_['k'] * np.log(p) + 1.0))
  return fit_['E'] + base ** fit_['alpha']


def multiplier(k: float, p) -> np.ndarray:
  """The equivalent parameter multiplier k ln P + 1: P streams ~ N (k ln P + 1) parameters."""
  return k * np.log(np.asarray(p, np.float64)) + 1.0


def huber(error: np.ndarray, delta: float = 1e-3) -> float:
  small = np.abs(error) <= delta
  return float(np.where(small, 0.5 * error ** 2, delta * (np.abs(error) - 0.5 * delta)).sum())


def r_squared(y: np.ndarray, pred: np.ndarray) -> float:
  y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
  return float(1.0 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def fit(n, p, loss, delta: float = 1e-3, starts=None) -> dict[str, float]:
  """Fits E, A, alpha, k by Huber loss on log-loss (L-BFGS-B, the official grid of starts).

  `starts`: (E, A, alpha, k) starting points; default the official 300-point grid.
  Returns {'E', 'A', 'alpha', 'k', 'r2', 'objective'}.
  """
  n = np.asarray(n, np.float64).ravel()
  p = np.asarray(p, np.float64).ravel()
  log_loss = np.log(np.asarray(loss, np.float64).ravel())

  def objective(theta):  # Huber(log L - log L_hat) and its exact gradient
    e, a, alpha, k = theta
    denom = np.log(p) * k + 1.0
    base = a * 1e9 / (n * denom)
    power = base ** alpha
    pred = e + power
    error = log_loss - np.log(pred)
    slope = -np.clip(error, -delta, delta) / pred  # dHuber/dpred
    grads = [np.ones_like(pred), alpha * power / a, power * np.log(base),
             -alpha * power * np.log(p) / denom]
    return huber(error, delta), np.array([(slope * g).sum() for g in grads])

  best, best_value = None, np.inf
  if starts is None:
    starts = [(np.exp(log_e), np.exp(log_a), alpha, k) for log_e, log_a, alpha, k in
              itertools.product([-1, -0.5, 0], [-4, -2, 0, 2, 4], [0, 0.5, 1, 1.5, 2],
                                [0.2, 0.4, 0.6, 0.8])]
  with np.errstate(all='ignore'):
    for start in starts:
      result = minimize(objective, start, method='L-BFGS-B', jac=True,
                        bounds=[(1e-8, None)] * 4)
      if np.isfinite(result.fun) and result.fun < best_value:
        best, best_value = result.x, result.fun
  out = dict(zip(('E', 'A', 'alpha', 'k'), map(float, best), strict=True))
  out['r2'] = r_squared(np.exp(log_loss), predict(out, n, p))
  out['objective'] = float(best_value)
  return out
