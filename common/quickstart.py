"""The quickstart experiment end to end: train the tiny character LM, print its results table.

    python3 dev.py reproduce            # = python -m common.quickstart [--quick]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import common

common.add_xla_flags(*common.CPU_XLA_FLAGS)  # before the first computation

from common import experiment, report, sweep  # noqa: E402
from common.metrics import read_metrics  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(path: pathlib.Path, arg: str = ''):
  """The unlocked config of a config file (tests change it in place)."""
  return sweep.load_config(f'{path}:{arg}' if arg else str(path), lock=False)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--quick', action='store_true', help='a few steps only')
  parser.add_argument('--workdir', default='', help='default: runs/quickstart-<time>')
  args = parser.parse_args()
  config = sweep.load_config('configs/quickstart.py' + (':smoke' if args.quick else ''))
  workdir = args.workdir or str(ROOT / 'runs' / time.strftime('quickstart-%Y%m%d-%H%M%S'))
  started = time.time()
  experiment.train_and_evaluate(config, workdir)
  rows = [(r['step'], f'{r["train/loss"]:.3f}') for r in read_metrics(workdir)
          if 'train/loss' in r]
  evals = {r['step']: r['eval/bits_per_char'] for r in read_metrics(workdir)
           if 'eval/bits_per_char' in r}
  print()
  print(report.markdown_table(('step', 'train loss (nats)', 'valid bits/char'),
                              [(s, loss, f'{evals[s]:.3f}' if s in evals else '')
                               for s, loss in rows]))
  print(f'\n{config.train.steps} steps in {time.time() - started:.0f} s; workdir {workdir}')


if __name__ == '__main__':
  main()
