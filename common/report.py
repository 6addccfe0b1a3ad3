"""Results files -> README results sections and the WORKSPACE.md status table.

    python -m common.report            # rewrite them from papers/*/results.json
    python -m common.report --check    # exit 1 if any is stale (the test suite runs this)

Text between `<!-- results:begin -->` and `<!-- results:end -->` is generated; edit the
results files (by rerunning the reproduction), never the tables.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from common.results import PROVENANCE
from common.stats import VERDICTS

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEGIN, END = '<!-- results:begin -->', '<!-- results:end -->'
BENCH_BEGIN, BENCH_END = '<!-- bench:begin -->', '<!-- bench:end -->'
SEEDS_BEGIN, SEEDS_END = '<!-- seeds:begin -->', '<!-- seeds:end -->'
THROUGHPUT_BEGIN, THROUGHPUT_END = '<!-- throughput:begin -->', '<!-- throughput:end -->'
HEAD_BEGIN, HEAD_END = '<!-- headline:begin -->', '<!-- headline:end -->'


def papers(root: pathlib.Path = ROOT) -> list[str]:
  """Every folder under papers/ with a README.md (a reproduction, whether run yet or not)."""
  return sorted(p.parent.name for p in (root / 'papers').glob('*/README.md'))


def _cell(value) -> str:
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value).replace('|', '\\|').replace('\n', ' ')


def markdown_table(columns, rows) -> str:
  lines = ['| ' + ' | '.join(map(_cell, columns)) + ' |', '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(map(_cell, row)) + ' |' for row in rows]
  return '\n'.join(lines)


def check_results(results: dict, where: str) -> None:
  """Raises ValueError naming what a results file lacks."""
  missing = [k for k in PROVENANCE if k not in results.get('provenance', {})]
  if missing:
    raise ValueError(f'{where}: provenance lacks {", ".join(missing)}')
  for c in results.get('claims', []):
    if c.get('verdict') not in VERDICTS:
      raise ValueError(f'{where}: claim {c.get("claim")!r} has verdict {c.get("verdict")!r}')


def verdict_cell(c: dict) -> str:
  """The verdict, with the earlier ones a rerun changed (newest last)."""
  earlier = '; '.join(f'{h["verdict"]} on {h["date"]} at {h["commit"][:7]}'
                      for h in c.get('history', []))
  return f'**{c["verdict"]}**' + (f' (was: {earlier})' if earlier else '')


def floor_cell(c: dict) -> str:
  f = c.get('floor')
  return f'{f["name"]}: {f["value"]:.4g}' if f else ''


def per_seed_rows(claims: list[dict]) -> list[tuple]:
  """One row per (claim metric, arm): its value on every seed and the mean."""
  rows, seen = [], set()
  for c in claims:
    for arm, values in (c.get('per_seed') or {}).items():
      key = (c.get('metric'), arm)
      if key in seen:
        continue
      seen.add(key)
      rows.append((c.get('metric', ''), arm, ', '.join(f'{v:.4g}' for v in values),
                   f'{sum(values) / len(values):.4g}' if values else ''))
  return rows


def paper_section(results: dict) -> str:
  p = results['provenance']
  parts = [f'Measured by `{p["command"]}` on {p["date"]} ({p["machine"]}; commit '
           f'`{p["git_commit"][:12]}`; seeds {p["seeds"]}; wall time {p["wall_time_s"]:.0f} s). '
           'Verdicts by `common.stats` (95% Student-t intervals of paired seed differences; '
           'see CONTRIBUTING.md).',
           '', markdown_table(('claim', 'paper', 'ours', 'floor', 'verdict'),
                              [(c['claim'], c['paper'], c['ours'], floor_cell(c), verdict_cell(c))
                               for c in results['claims']])]
  seeds = per_seed_rows(results['claims'])
  if seeds:
    parts += ['', '**Per-seed values (seed order as in the provenance)**', '',
              markdown_table(('metric', 'arm', 'per seed', 'mean'), seeds)]
  for t in results.get('tables', []):
    parts += ['', f'**{t["title"]}**', '', markdown_table(t['columns'], t['rows'])]
  for plot in results.get('plots', []):
    parts += ['', f'![{plot}]({plot})']
  for note in results.get('notes', []):
    parts += ['', f'- {note}']
  return '\n'.join(parts)


def status_table(all_results: dict[str, dict | None]) -> str:
  rows = []
  for name in sorted(all_results):
    r = all_results.get(name)
    if r is None:
      rows.append((f'`{name}`', 'not yet reproduced', '', '', '', '', '', ''))
      continue
    p = r['provenance']
    for i, c in enumerate(r['claims']):
      head = (f'[{name}](papers/{name}/README.md)', ) if i == 0 else ('',)
      tail = (p['date'], f'`{p["command"]}`', f'{p["wall_time_s"]:.0f} s') if i == 0 else \
          ('', '', '')
      rows.append(head + (c['claim'], c['paper'], c['ours'], verdict_cell(c)) + tail)
  return markdown_table(('paper', 'claim', 'paper says', 'ours', 'verdict', 'date', 'command',
                         'wall time'), rows)


def headline_table(all_results: dict[str, dict | None]) -> str:
  """README's first table: every claim and its verdict, one row each."""
  rows = []
  for name in sorted(all_results):
    r = all_results[name]
    if r is None:
      rows.append((f'[{name}](papers/{name}/README.md)', 'not yet reproduced', ''))
      continue
    for i, c in enumerate(r['claims']):
      rows.append((f'[{name}](papers/{name}/README.md)' if i == 0 else '', c['claim'],
                   c['verdict']))
  return markdown_table(('paper', 'claim', 'verdict'), rows)


def replace_block(text: str, block: str, where: str, begin: str = BEGIN, end: str = END) -> str:
  if begin not in text or end not in text:
    raise ValueError(f'{where} has no {begin} ... {end} markers')
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  return f'{head}{begin}\n{block}\n{end}{tail}'


def targets(rows: list[dict]) -> str:
  """Issue 8's targets against the rows: met, or which entries miss them."""
  def line(name: str, missed: list[str]) -> str:
    return f'- {name}: ' + (f'missed by {", ".join(missed)}' if missed else 'met')
  return '\n\nTargets:\n' + '\n'.join([
      line('LM step at 50% or more of the roofline',
           [r['entry'] for r in rows if r['entry'] == 'lm' and r['roofline_fraction'] < 0.5]),
      line('JAX faster than PyTorch (speed-up > 1)',
           [r['entry'] for r in rows if (r.get('jax_speedup_over_torch') or 0) <= 1]),
      line('loader at most 5% of the step',
           [r['entry'] for r in rows if r['loader_fraction'] > 0.05]),
      line('compile under 30 s', [r['entry'] for r in rows if r['compile_s'] >= 30])])


def bench_table(bench: dict) -> str:
  """The benchmark table: ratios against the roofline, PyTorch, the loader and 1 device."""
  fmt = lambda v, spec: '' if v is None else format(v, spec)  # noqa: E731
  rows = [(r['entry'], r['shape'], fmt(r['compile_s'], '.1f'), fmt(r['step_s'] * 1e3, '.1f'),
           fmt(r['flop_per_s'] / 1e9, '.1f'), fmt(r['roofline_fraction'], '.0%'),
           fmt(r.get('torch_step_s') and r['torch_step_s'] * 1e3, '.1f'),
           fmt(r.get('jax_speedup_over_torch'), '.2f'), fmt(r['loader_fraction'], '.1%'),
           fmt(r['dp8_over_dp1'], '.2f')) for r in bench['rows']]
  head = (f'Measured by `{bench["command"]}` on {bench["date"]} ({bench["machine"]}); float32 '
          f'matmul roofline {bench["roofline_flop_per_s"] / 1e9:.1f} GFLOP/s.\n\n')
  table = head + markdown_table(
      ('entry', 'shape', 'compile s', 'step ms', 'GFLOP/s', 'of roofline', 'PyTorch ms',
       'JAX speed-up', 'loader / step', '8 dev / 1 dev time'), rows) + targets(bench['rows'])
  rl = bench.get('rl_rows', [])
  if not rl:
    return table
  rows = [(r['entry'], r['shape'], fmt(r['jax_compile_s'], '.1f'),
           fmt(r['jax_env_steps_per_s'], '.0f'),
           fmt(r.get('vmap_env_steps_per_s'), '.0f') + f' ({r["vmap_seeds"]} seeds)',
           fmt(r['torch_env_steps_per_s'], '.0f'), fmt(r['jax_over_torch'], '.1f'),
           fmt(r.get('vmap_over_torch'), '.1f')) for r in rl]
  return table + (f'\n\nPPO / PROPS end to end (collection + updates), measured by '
                  f'`{rl[0]["command"]}` on {rl[0]["date"]}: env steps/s of the jitted loop '
                  '(compile excluded) against the same loop in the official PyTorch style.\n\n'
                  ) + markdown_table(
      ('entry', 'setting', 'compile s', 'JAX env steps/s (1 seed)', 'JAX vmapped',
       'PyTorch env steps/s', 'JAX / PyTorch (1 seed)', 'JAX vmapped / PyTorch'), rows)


def flags_table(after: dict, before: dict) -> str:
  """Step time with XLA's own CPU defaults (`--xla-default`) against common.CPU_XLA_FLAGS."""
  old = {r['entry']: r for r in before['rows']}
  rows = [(r['entry'], f'{old[r["entry"]]["step_s"] * 1e3:.1f}', f'{r["step_s"] * 1e3:.1f}',
           f'{old[r["entry"]]["step_s"] / r["step_s"]:.2f}')
          for r in after['rows'] if r['entry'] in old]
  head = (f'\n\nThe same steps with XLA:CPU\'s own defaults, measured by `{before["command"]}` '
          f'on {before["date"]} (XLA_FLAGS `{before.get("xla_flags") or "unset"}`; the table '
          f'above: `{after.get("xla_flags", "")}`, from `common.CPU_XLA_FLAGS`).\n\n')
  return head + markdown_table(
      ('entry', 'step ms, XLA defaults', 'step ms, with the flags', 'speed-up'), rows)


SEED_WAYS = ('one after another', 'side by side', 'vmapped', 'k steps per dispatch')


def seeds_table(result: dict) -> str:
  """`benchmarks/seeds.json`: seeds per minute of each paper's first full arm, per way."""

  def cell(row: dict, way: str) -> str:
    if way not in row:
      return ''
    m = row[way]
    k = f', k={row["block"]}' if way == SEED_WAYS[3] else ''
    load = 'n/a' if m.get('load_before') is None else f'{m["load_before"]:.1f}'
    return f'{m["seeds_per_min"]:.2f} ({m["wall_s"]:.0f} s, load {load}{k})'

  rows = [(r['paper'], r['arm'], r['seeds'], *(cell(r, w) for w in SEED_WAYS), r['best'])
          for r in result['rows']]
  commands = ' then '.join(f'`{c}`' for c in result['commands'])
  return (f'Measured by {commands} on {result["date"]} ({result["machine"]}).\n\n'
          + markdown_table(('paper', 'arm', 'seeds', *(f'{w}: seeds/min' for w in SEED_WAYS),
                            'fastest'), rows))


def throughput_tables(result: dict, all_results: dict[str, dict | None]) -> str:
  """`benchmarks/throughput.json`: the per-step table, then seeds per minute per way."""
  rows = result['rows']
  jax_ways = list(dict.fromkeys(w for r in rows for w in r['jax']))  # in measurement order
  torch_ways = list(dict.fromkeys(w for r in rows for w in r['torch']))

  def spm(ways: dict, way: str) -> str:
    return f'{ways[way]["seeds_per_min"]:.3g}' if way in ways else ''

  def why(r: dict) -> str:
    prof = r.get('profile')
    if not prof:
      return ''
    top = ', '.join(f'{k} {v:.0%}' for k, v in prof['category_share'].items())
    return f'{prof["op_ms_per_step"]:.1f} ms of ops per step: {top}'

  def wall(name: str) -> str:
    res = all_results.get(name)
    return f'{res["provenance"]["wall_time_s"] / 60:.0f}' if res else ''

  step_rows = [(r['paper'], r['shape'], f'{r["load_before"]:.1f}', f'{r["compile_s"]:.1f}',
                f'{r["jax"]["one seed"]["step_s"] * 1e3:.1f}',
                *((f'{r["torch"]["one process"]["step_s"] * 1e3:.1f} '
                   f'({r["torch"]["one process"]["threads"]} thr)', f'{r["step_ratio"]:.2f}')
                  if r['torch'] else ('', ''))) for r in rows]
  seed_rows = [(r['paper'], r['steps_per_seed'], *(spm(r['jax'], w) for w in jax_ways),
                *(spm(r['torch'], w) for w in torch_ways), r['jax_best'],
                r.get('torch_best', ''), f'{r["best_ratio"]:.2f}' if 'best_ratio' in r else '',
                why(r), wall(r['paper'])) for r in rows]
  return (f'Measured by `{result["command"]}` on {result["date"]} ({result["machine"]}, '
          f'{result["wall_time_s"] / 60:.0f} min).\n\n'
          + markdown_table(('paper', 'shape', 'load before', 'JAX compile s', 'JAX step ms',
                            'PyTorch step ms', 'JAX speed-up per step'), step_rows)
          + '\n\nSeeds per minute of the whole machine (a seed: the reproduction config\'s '
          'training steps of this step; compile, data and evaluation excluded), each way:\n\n'
          + markdown_table(('paper', 'steps per seed', *(f'JAX {w}' for w in jax_ways),
                            *(f'PyTorch {w}' for w in torch_ways), 'JAX best', 'PyTorch best',
                            'JAX best / PyTorch best', 'JAX profile where slower',
                            'reproduction wall min'), seed_rows)
          + hlo_table(rows, jax_ways))


def hlo_table(rows: list[dict], ways: list[str]) -> str:
  """Convolutions (grouped), transposes and copies of each JAX way's optimised HLO."""
  def cell(h: dict | None) -> str:
    if not h:
      return ''
    return (f'{h["convolutions"]} ({h["grouped_convolutions"]} grouped) / {h["transposes"]} / '
            f'{h["copies"]}')

  ways = [w for w in ways if any(w in r.get('hlo', {}) for r in rows)]
  body = [(r['paper'], *(cell(r['hlo'].get(w)) for w in ways)) for r in rows if r.get('hlo')]
  if not body:
    return ''
  return ('\n\nThe optimised HLO of each JAX way: convolutions (of which grouped) / transposes / '
          'copies (`benchmarks.harness.hlo_counts`):\n\n'
          + markdown_table(('paper', *ways), body))


def render(root: pathlib.Path = ROOT) -> dict[pathlib.Path, str]:
  """Every generated file's new text, keyed by path."""
  out, all_results = {}, {}
  for name in papers(root):
    path = root / 'papers' / name / 'results.json'
    if not path.exists():
      all_results[name] = None
      continue
    results = json.loads(path.read_text())
    check_results(results, str(path))
    all_results[name] = results
    readme = root / 'papers' / name / 'README.md'
    out[readme] = replace_block(readme.read_text(), paper_section(results), str(readme))
  readme = root / 'README.md'
  out[readme] = replace_block(readme.read_text(), headline_table(all_results), str(readme),
                              HEAD_BEGIN, HEAD_END)
  workspace = root / 'WORKSPACE.md'
  text = replace_block(workspace.read_text(), status_table(all_results), str(workspace))
  bench = root / 'benchmarks' / 'results.json'
  if bench.exists():
    table = bench_table(json.loads(bench.read_text()))
    before = bench.with_name('results_xla_default.json')
    if before.exists():
      table += flags_table(json.loads(bench.read_text()), json.loads(before.read_text()))
    text = replace_block(text, table, str(workspace), BENCH_BEGIN, BENCH_END)
  seeds = root / 'benchmarks' / 'seeds.json'
  if seeds.exists():
    text = replace_block(text, seeds_table(json.loads(seeds.read_text())), str(workspace),
                         SEEDS_BEGIN, SEEDS_END)
  throughput = root / 'benchmarks' / 'throughput.json'
  if throughput.exists():
    text = replace_block(text, throughput_tables(json.loads(throughput.read_text()), all_results),
                         str(workspace), THROUGHPUT_BEGIN, THROUGHPUT_END)
  out[workspace] = text
  return out


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--check', action='store_true', help='only report stale files')
  args = parser.parse_args()
  stale = []
  for path, text in render().items():
    if path.read_text() != text:
      stale.append(path)
      if not args.check:
        path.write_text(text)
  if args.check and stale:
    print('stale: ' + ', '.join(str(p.relative_to(ROOT)) for p in stale)
          + ' (run python -m common.report)', file=sys.stderr)
    return 1
  print(('updated: ' if stale else 'up to date: ') + ', '.join(
      str(p.relative_to(ROOT)) for p in stale) if stale else 'up to date')
  return 0


if __name__ == '__main__':
  sys.exit(main())
