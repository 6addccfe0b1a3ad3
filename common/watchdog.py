"""A run that stops making progress ends with one line saying where, never waits forever.

Loops call `beat(phase, step)` as they advance; `start(timeout_s)` (done by the entry points,
`common.main` and `common.sweep`) watches from a daemon thread and, when no beat came for
`timeout_s` seconds, prints `error: no progress for N s in <phase> at step <step> ...` and ends
the process with exit code 5. Without `start`, `beat` only records.
"""

from __future__ import annotations

import os
import sys
import threading
import time

EXIT_STALLED = 5
_last = {'phase': 'start', 'step': 0, 'time': time.monotonic()}
_thread: threading.Thread | None = None
_timeout = [0.0]


def beat(phase: str, step: int = 0) -> None:
  """Records progress: `phase` (e.g. 'train', 'eval', 'checkpoint') at `step`."""
  _last.update(phase=phase, step=int(step), time=time.monotonic())


def _watch() -> None:
  while True:
    timeout = _timeout[0]
    time.sleep(max(min(timeout / 10, 10.0), 0.05))
    idle = time.monotonic() - _last['time']
    if timeout and idle > timeout:
      print(f'error: no progress for {idle:.0f} s in {_last["phase"]} at step {_last["step"]} '
            f'(watchdog_s={timeout:g}); exiting. The newest checkpoint is kept: rerun the same '
            'command to resume, or raise --watchdog_s for slower steps', file=sys.stderr,
            flush=True)
      os._exit(EXIT_STALLED)


def start(timeout_s: float) -> None:
  """Starts (or re-arms) the watchdog; `timeout_s <= 0` disables it."""
  global _thread
  _timeout[0] = max(float(timeout_s), 0.0)
  beat('start')
  if _timeout[0] and _thread is None:
    _thread = threading.Thread(target=_watch, name='watchdog', daemon=True)
    _thread.start()
