"""The quickstart experiment end to end: train the tiny character LM, print its results table.

    python3 dev.py reproduce            # = python -m common.quickstart [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import time

from common import lm, report
from common.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(path: pathlib.Path, arg: str = ''):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--quick', action='store_true', help='a few steps only')
  parser.add_argument('--workdir', default='', help='default: runs/quickstart-<time>')
  args = parser.parse_args()
  config = load_config(ROOT / 'configs' / 'quickstart.py', 'smoke' if args.quick else '')
  workdir = args.workdir or str(ROOT / 'runs' / time.strftime('quickstart-%Y%m%d-%H%M%S'))
  result = lm.train_and_evaluate(config, workdir)
  rows = [(r['step'], f'{r["train/loss"]:.3f}') for r in read_metrics(workdir)
          if 'train/loss' in r]
  evals = {r['step']: r['eval/bits_per_char'] for r in read_metrics(workdir)
           if 'eval/bits_per_char' in r}
  print()
  print(report.markdown_table(('step', 'train loss (nats)', 'valid bits/char'),
                              [(s, loss, f'{evals[s]:.3f}' if s in evals else '')
                               for s, loss in rows]))
  print(f'\n{config.train.steps} steps in {result.seconds:.0f} s; workdir {workdir}')


if __name__ == '__main__':
  main()
