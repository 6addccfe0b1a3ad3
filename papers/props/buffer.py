"""The PROPS replay-buffer schedule (Algorithm 1): a FIFO buffer of b * n transitions, a
behaviour update every m steps, a PPO update every n steps (n % m == 0)."""

from __future__ import annotations


def update_windows(n: int, b: int, m: int, total_steps: int) -> list[dict]:
  """Per behaviour iteration (every m env steps), the global step ranges [start, stop) used.

  Each entry: `step` (transitions collected so far), `ppo_rows` (the whole buffer, on PPO
  iterations, i.e. step % n == 0; else None; the PPO update runs first) and `behavior_rows`
  (the buffer, minus its oldest m rows once it is full: they leave before the next update).
  """
  if n % m:
    raise ValueError(f'n={n} must be a multiple of m={m}')
  size = b * n
  out = []
  for step in range(m, total_steps + 1, m):
    start = max(0, step - size)
    full = step >= size
    out.append({'step': step,
                'ppo_rows': (start, step) if step % n == 0 else None,
                'behavior_rows': (start + m if full else start, step)})
  return out
