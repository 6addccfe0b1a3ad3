"""Where a benchmark entry's compiled step spends its time (the evidence behind the speed notes).

    python -m benchmarks.profile --paper=atss          # full shapes
    python -m benchmarks.profile --paper=edlm --quick  # the quick shapes

Prints XLA's cost analysis of the step (FLOPs, bytes accessed, FLOP per byte), the number of
fusions / convolutions / unfused dots in the optimised HLO, and the share of op time per kind of
XLA:CPU kernel over a few steps traced with `jax.profiler` (e.g. `ynn_fusion`: matmuls and
convolutions run by YNNPACK; `transpose_copy_fusion`: layout copies).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
from typing import Any

import jax

import common
from benchmarks import harness
from benchmarks.run import ENTRIES
from common import parallel

_NOT_OPS = ('Thunk', '$', 'Pjit', 'Common', 'Slinky', 'PjRt', 'Pjrt', 'Execute')


def op_kind(name: str) -> str:
  """'multiply_add_fusion.12' -> 'multiply_add_fusion'."""
  return re.sub(r'[._]\d+$', '', re.sub(r'\.\d+', '', name))


# kind of XLA:CPU kernel -> what it does, first match wins (`category`)
CATEGORIES = (('matmul / conv', ('conv', 'dot', 'ynn', 'gemm', 'matmul')),
              ('reduction', ('reduce',)),
              ('layout copy', ('transpose', 'copy')))


def category(kind: str) -> str:
  """'transpose_copy_fusion' -> 'layout copy'; unmatched kinds are 'elementwise / other'."""
  return next((name for name, keys in CATEGORIES if any(k in kind for k in keys)),
              'elementwise / other')


def profile(name: str, quick: bool, steps: int = 5, top: int = 10) -> dict[str, Any]:
  workload = ENTRIES[name](quick)
  step, state = workload.step_and_state()
  mesh = parallel.make_mesh(1)
  state = parallel.replicate(state, mesh)
  batch = parallel.shard_batch(workload.loader(0), mesh)
  compiled = jax.jit(step).lower(state, batch).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  hlo = compiled.as_text()
  run = lambda: jax.block_until_ready(compiled(state, batch))  # noqa: E731
  out: dict[str, Any] = {
      'entry': name, 'flops': cost.get('flops'), 'bytes': cost.get('bytes accessed'),
      'flop_per_byte': cost.get('flops', 0.0) / max(cost.get('bytes accessed', 1.0), 1.0),
      'fusions': hlo.count(' fusion('), 'convolutions': hlo.count(' convolution('),
      'unfused_dots': hlo.count(' dot('), 'step_s': harness.median_seconds(run, steps)}
  trace_dir = tempfile.mkdtemp()
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    for _ in range(steps):
      run()
  path = glob.glob(f'{trace_dir}/**/*.trace.json.gz', recursive=True)[0]
  events = json.load(gzip.open(path))
  events = events['traceEvents'] if isinstance(events, dict) else events
  time_of, count_of = collections.Counter(), collections.Counter()
  for e in events:
    nm = e.get('name', '')
    if e.get('ph') == 'X' and 'dur' in e and nm and not nm.startswith(_NOT_OPS) \
        and not nm[0].isupper():
      time_of[op_kind(nm)] += e['dur']
      count_of[op_kind(nm)] += 1
  total = sum(time_of.values()) or 1
  out['op_ms_per_step'] = total / steps / 1e3
  out['op_share'] = {k: {'share': v / total, 'per_step': count_of[k] / steps}
                     for k, v in time_of.most_common(top)}
  by_category = collections.Counter()
  for k, v in time_of.items():
    by_category[category(k)] += v / total
  out['category_share'] = dict(by_category.most_common())
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--paper', required=True, help=f'one of {", ".join(ENTRIES)}')
  parser.add_argument('--quick', action='store_true', help='the quick shapes')
  args = parser.parse_args()
  common.add_xla_flags(*common.CPU_XLA_FLAGS)  # as the experiments run (before any computation)
  if args.paper not in ENTRIES:
    parser.error(f'--paper={args.paper} is not one of {", ".join(ENTRIES)}')
  out = profile(args.paper, args.quick)
  shares = out.pop('op_share')
  print(', '.join(f'{k} {v:.0%}' for k, v in out.pop('category_share').items()))
  print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))
  for kind, s in shares.items():
    print(f'{100 * s["share"]:5.1f}%  x{s["per_step"]:5.0f} per step  {kind}')


if __name__ == '__main__':
  main()
