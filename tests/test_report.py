"""The README/WORKSPACE tables are exactly what `common.report` writes from results files."""

import pytest

from common import report, results


def test_generated_tables_are_up_to_date():
  stale = [str(p) for p, text in report.render().items() if p.read_text() != text]
  assert not stale, f'run `python -m common.report`: {stale}'


def test_results_without_provenance_are_rejected():
  with pytest.raises(ValueError, match='provenance lacks'):
    report.check_results({'provenance': {'command': 'x'}, 'claims': []}, 'r.json')


def test_a_changed_verdict_keeps_the_previous_one(tmp_path):
  claim = {'claim': 'a beats b', 'paper': 'p', 'ours': '1 vs 0', 'verdict': 'inconclusive'}
  results.write_results(tmp_path / 'results.json', paper='x', title='x', claims=[claim])
  again = results.write_results(tmp_path / 'results.json', paper='x', title='x', claims=[claim])
  assert 'history' not in again['claims'][0]  # same verdict: nothing to keep
  changed = results.write_results(tmp_path / 'results.json', paper='x', title='x',
                                  claims=[dict(claim, verdict='reproduced')])
  (before,) = changed['claims'][0]['history']
  assert before['verdict'] == 'inconclusive' and before['ours'] == '1 vs 0'
  assert report.verdict_cell(changed['claims'][0]).startswith('**reproduced** (was: inconclusive')


def test_the_report_finds_every_paper_folder():
  names = report.papers()
  assert {'atss', 'props', 'unpg'} <= set(names) and 'common' not in names


def test_replace_block_keeps_surrounding_text():
  text = f'intro\n{report.BEGIN}\nold\n{report.END}\noutro\n'
  expected = f'intro\n{report.BEGIN}\nnew\n{report.END}\noutro\n'
  assert report.replace_block(text, 'new', 'x') == expected


def test_benchmark_targets_name_the_entries_that_miss_them():
  row = dict(compile_s=2.0, loader_fraction=0.01, roofline_fraction=0.3)
  rows = [dict(row, entry='lm', roofline_fraction=0.49, jax_speedup_over_torch=1.2),
          dict(row, entry='rs2', jax_speedup_over_torch=0.9, loader_fraction=0.06),
          dict(row, entry='atss', jax_speedup_over_torch=None, compile_s=31.0)]
  assert report.targets(rows).splitlines()[3:] == [
      '- LM step at 50% or more of the roofline: missed by lm',
      '- JAX faster than PyTorch (speed-up > 1): missed by rs2, atss',
      '- loader at most 5% of the step: missed by rs2',
      '- compile under 30 s: missed by atss']
  rows[0]['roofline_fraction'] = 0.5
  assert report.targets(rows).splitlines()[3] == (
      '- LM step at 50% or more of the roofline: met')
