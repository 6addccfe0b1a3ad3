"""Benchmarks: each paper's training step against the machine's matmul roofline and PyTorch.

    python -m benchmarks.run --paper=all            # full run, writes benchmarks/results.json
    python -m benchmarks.run --paper=lm --quick     # seconds; asserts nothing about speed

Per entry: compile time, median step time, achieved FLOP/s from XLA's cost analysis as a
fraction of a float32 matmul's FLOP/s measured in the same run, the same step in PyTorch
(when installed: `pip install -e .[bench]`), loader time per batch against step time, and the
same global batch on 1 vs 8 (simulated) devices. `python -m common.report` puts the table in
WORKSPACE.md. RL loops (`--paper=props`) are not one step: `benchmarks/rl.py` measures env
steps per second end to end (rows under `rl_rows`). A run merges its rows into an existing
results file, so one paper can be re-measured alone.
"""

from __future__ import annotations

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from benchmarks import harness  # noqa: E402
from common import lm, parallel, train  # noqa: E402
from common.models.convnet import ConvNet  # noqa: E402
from common.models.transformer import Transformer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Workload:
  """One training step as the experiments run it: the loss, parameters, loader, optimizer."""
  loss_fn: Callable
  params: Any
  batch_fn: Callable[[int], dict[str, np.ndarray]]
  optim: ml_collections.ConfigDict
  torch_step: Callable[[], Callable[[], float]] | None = None
  note: str = ''


def _optim(name='adamw', lr=1e-3, weight_decay=0.01, grad_clip=1.0, **kw):
  return ml_collections.ConfigDict(dict(name=name, lr=lr, schedule='constant', warmup_steps=0,
                                        weight_decay=weight_decay, grad_clip=grad_clip, **kw))


def lm_workload(quick: bool) -> Workload:
  """The shared transformer as a character LM (the backbone of parscale, edlm, redi)."""
  layers, d, heads, batch, seq = (2, 64, 4, 8, 64) if quick else (4, 256, 8, 32, 256)
  corpus = lm.load_corpus()
  data = lm.windows(corpus.train, seq)
  order = np.random.default_rng(0)
  model = Transformer(vocab_size=corpus.vocab_size, num_layers=layers, d_model=d,
                      num_heads=heads, mlp_dim=4 * d)
  params = model.init(jax.random.key(0), data[:1, :-1])

  def loss_fn(params, batch, rng):
    logits = model.apply(params, batch['tokens'][:, :-1])
    return lm.token_cross_entropy(logits, batch['tokens'][:, 1:]), {}

  def torch_step():
    from benchmarks import torch_steps
    return torch_steps.make_lm_step(corpus.vocab_size, layers, d, heads, 4 * d, batch, seq)

  return Workload(loss_fn, params,
                  lambda step: {'tokens': data[order.integers(0, len(data), batch)]},
                  _optim(), torch_step, f'{layers}x{d}, seq {seq}, batch {batch}')


def convnet_workload(quick: bool) -> Workload:
  """The shared conv net as a 28x28 classifier (the backbone of rs2 and unpg)."""
  features, batch = ((8, 16), 16) if quick else ((32, 64, 128), 128)
  model = ConvNet(features=features, num_outputs=10)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(1024, 28, 28, 1)).astype(np.float32)
  labels = rng.integers(0, 10, 1024).astype(np.int32)
  params = model.init(jax.random.key(0), images[:1])

  def loss_fn(params, batch, rng):
    logits = model.apply(params, batch['images'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels']).mean(), {}

  def torch_step():
    from benchmarks import torch_steps
    return torch_steps.make_convnet_step(features, 10, batch, 28)

  def batch_fn(step):
    idx = rng.integers(0, len(images), batch)
    return {'images': images[idx], 'labels': labels[idx]}

  return Workload(loss_fn, params, batch_fn,
                  _optim('sgd', lr=0.1, weight_decay=5e-4, grad_clip=0.0, momentum=0.9,
                         nesterov=True), torch_step, f'features {features}, batch {batch}')


ENTRIES: dict[str, Callable[[bool], Workload]] = {
    'lm': lm_workload,
    'convnet': convnet_workload,
}


def props_rows(quick: bool) -> list[dict[str, Any]]:
  """PROPS/PPO env steps per second end to end, JAX against PyTorch (benchmarks/rl.py)."""
  from benchmarks import rl  # gymnax and PyTorch only when measured
  return rl.measure_props(quick)


# Not a supervised step: an RL loop has its own measure function (rows under 'rl_rows').
RL_ENTRIES: dict[str, Callable[[bool], list[dict[str, Any]]]] = {'props': props_rows}


def measure(name: str, workload: Workload, roofline: float, repeats: int) -> dict[str, Any]:
  tx = train.make_optimizer(workload.optim, 1000)
  step = train.make_train_step(workload.loss_fn, tx)
  state = train.init_state(workload.params, tx, 0)
  batch = workload.batch_fn(0)
  row: dict[str, Any] = {'entry': name, 'shape': workload.note}
  for n in (1, 8):
    mesh = parallel.make_mesh(n)
    stats = harness.bench_step(step, parallel.replicate(state, mesh),
                               parallel.shard_batch(batch, mesh), repeats)
    if n == 1:
      row.update(stats)
      row['roofline_fraction'] = stats['flop_per_s'] / roofline
    row[f'step_s_{n}dev'] = stats['step_s']
  row['dp8_over_dp1'] = row['step_s_8dev'] / row['step_s_1dev']
  row['loader_s'] = harness.loader_seconds(workload.batch_fn, repeats)
  row['loader_fraction'] = row['loader_s'] / row['step_s']
  if workload.torch_step is not None:
    try:
      from benchmarks import torch_steps
      torch_steps.set_threads(os.cpu_count() or 1)
      torch_fn = workload.torch_step()
      row['torch_step_s'] = harness.median_seconds(torch_fn, repeats)
      row['jax_speedup_over_torch'] = row['torch_step_s'] / row['step_s']
    except ImportError:
      row['torch_step_s'] = None
  return row


def merge_results(path: pathlib.Path, result: dict[str, Any]) -> dict[str, Any]:
  """`result` merged over the rows already in `path` (same entry: replaced; others kept), each
  row stamped with the command and date that measured it."""
  old = json.loads(path.read_text()) if path.exists() else {}
  for key in ('rows', 'rl_rows'):
    for r in old.get(key, []):
      r.setdefault('command', old.get('command'))
      r.setdefault('date', old.get('date'))
    fresh = {r['entry']: dict(r, command=result['command'], date=result['date'])
             for r in result.get(key, [])}
    kept = [fresh.pop(r['entry'], r) for r in old.get(key, [])]
    result[key] = kept + list(fresh.values())
  return result


def main() -> None:
  known = [*ENTRIES, *RL_ENTRIES]
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--paper', default='all', help=f'all or one of {", ".join(known)}')
  parser.add_argument('--quick', action='store_true', help='tiny shapes, few repeats')
  parser.add_argument('--out', default='', help='default: benchmarks/results.json (full runs)')
  args = parser.parse_args()
  names = known if args.paper == 'all' else [args.paper]
  unknown = [n for n in names if n not in known]
  if unknown:
    parser.error(f'--paper={unknown[0]} is not one of all, {", ".join(known)}')
  repeats = 3 if args.quick else 10
  started = time.time()
  roofline = harness.matmul_roofline(512 if args.quick else 2048, repeats)
  rows = [measure(n, ENTRIES[n](args.quick), roofline, repeats) for n in names
          if n in ENTRIES]
  rl_rows = [row for n in names if n in RL_ENTRIES for row in RL_ENTRIES[n](args.quick)]
  for row in rl_rows:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in row.items()}), flush=True)
  result = {'command': 'python -m benchmarks.run ' + ' '.join(
      f'--{k}={v}' if not isinstance(v, bool) else f'--{k}' for k, v in vars(args).items()
      if v and k != 'out'),
      'date': time.strftime('%Y-%m-%d'), 'machine': f'{platform.machine()}, '
      f'{os.cpu_count()} cores, jax {jax.__version__} on {jax.devices()[0].platform}',
      'roofline_flop_per_s': roofline, 'wall_time_s': time.time() - started, 'rows': rows,
      'rl_rows': rl_rows}
  for row in rows:
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
  out = args.out or ('' if args.quick else str(ROOT / 'benchmarks' / 'results.json'))
  if out:
    result = merge_results(pathlib.Path(out), result)
    pathlib.Path(out).write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
  main()
