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

from common.results import PROVENANCE, VERDICTS

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEGIN, END = '<!-- results:begin -->', '<!-- results:end -->'
PAPERS = ('parscale', 'edlm', 'rs2', 'redi', 'props', 'atss', 'sampling_free', 'unpg')


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


def paper_section(results: dict) -> str:
  p = results['provenance']
  parts = [f'Measured by `{p["command"]}` on {p["date"]} ({p["machine"]}; commit '
           f'`{p["git_commit"][:12]}`; seeds {p["seeds"]}; wall time {p["wall_time_s"]:.0f} s).',
           '', markdown_table(('claim', 'paper', 'ours', 'verdict'),
                              [(c['claim'], c['paper'], c['ours'], c['verdict'])
                               for c in results['claims']])]
  for t in results.get('tables', []):
    parts += ['', f'**{t["title"]}**', '', markdown_table(t['columns'], t['rows'])]
  for plot in results.get('plots', []):
    parts += ['', f'![{plot}]({plot})']
  for note in results.get('notes', []):
    parts += ['', f'- {note}']
  return '\n'.join(parts)


def status_table(all_results: dict[str, dict | None]) -> str:
  rows = []
  for name in PAPERS:
    r = all_results.get(name)
    if r is None:
      rows.append((f'`{name}`', 'not yet reproduced', '', '', '', '', '', ''))
      continue
    p = r['provenance']
    for i, c in enumerate(r['claims']):
      head = (f'[{name}](papers/{name}/README.md)', ) if i == 0 else ('',)
      tail = (p['date'], f'`{p["command"]}`', f'{p["wall_time_s"]:.0f} s') if i == 0 else \
          ('', '', '')
      rows.append(head + (c['claim'], c['paper'], c['ours'], c['verdict']) + tail)
  return markdown_table(('paper', 'claim', 'paper says', 'ours', 'verdict', 'date', 'command',
                         'wall time'), rows)


def replace_block(text: str, block: str, where: str) -> str:
  if BEGIN not in text or END not in text:
    raise ValueError(f'{where} has no {BEGIN} ... {END} markers')
  head, rest = text.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  return f'{head}{BEGIN}\n{block}\n{END}{tail}'


def render(root: pathlib.Path = ROOT) -> dict[pathlib.Path, str]:
  """Every generated file's new text, keyed by path."""
  out, all_results = {}, {}
  for name in PAPERS:
    path = root / 'papers' / name / 'results.json'
    if not path.exists():
      all_results[name] = None
      continue
    results = json.loads(path.read_text())
    check_results(results, str(path))
    all_results[name] = results
    readme = root / 'papers' / name / 'README.md'
    out[readme] = replace_block(readme.read_text(), paper_section(results), str(readme))
  workspace = root / 'WORKSPACE.md'
  out[workspace] = replace_block(workspace.read_text(), status_table(all_results), str(workspace))
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
