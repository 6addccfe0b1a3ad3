"""REDI task: verifier, teacher traces and its error injection, token layout."""

import numpy as np
import pytest

from papers.redi import task


def test_verifier_exact():
  p = task.Problem(473, 6, 285)
  assert p.answer == 3123
  assert task.verify(p, '473*6=2838;2838+285=3123')
  assert not task.verify(p, '473*6=2838;2838+285=3113')
  assert not task.verify(p, '473*6=2838;2838+285=')
  assert not task.verify(p, 'garbage')


def test_teacher_correct_without_errors():
  rng = np.random.default_rng(0)
  for p in task.sample_problems(200, rng):
    trace, kind = task.teacher_trace(p, rng, 0.0)
    assert kind is None and task.verify(p, trace)


def test_column_arithmetic_and_dropped_carry():
  assert task.column_multiply(473, 6) == 2838
  assert task.column_add(2838, 285) == 3123
  assert task.column_multiply(473, 6, drop_carry_at=0) == 2828  # 3*6=18: carry 1 dropped
  assert task.column_add(2838, 285, drop_carry_at=0) == 3113


@pytest.mark.parametrize('kind', task.ERROR_KINDS)
def test_injected_errors_are_wrong_and_consistent(kind):
  rng = np.random.default_rng(1)
  for p in task.sample_problems(100, rng):
    trace, _ = task.teacher_trace(p, rng, error_kind=kind)
    assert not task.verify(p, trace), (p, trace)
    # the chain continues consistently from the (possibly wrong) intermediate value
    head, tail = trace.split(';')
    x, rest = tail.split('+')
    c, total = rest.split('=')
    assert int(x) + int(c) == int(total) or kind in ('add_carry', 'sum_slip')
    assert head.startswith(f'{p.a:03d}*{p.b}=')


def test_error_rate_and_datasets():
  ds = task.make_datasets(300, 20, 30, 4, 0.4, seed=0)
  assert 0.5 < ds.stats['teacher_accuracy'] < 0.7
  test_set, train_prompts = set(ds.test), ds.sft['tokens'][:, :task.PROMPT_LEN]
  assert not test_set & set(ds.valid)
  assert len(ds.pref['pos_tokens']) == len(ds.pref['neg_tokens']) > 0
  # mask covers completion + EOS only
  tok, mask = ds.sft['tokens'][0], ds.sft['mask'][0]
  n = int(mask.sum())
  assert mask[:task.PROMPT_LEN].sum() == 0 and tok[task.PROMPT_LEN + n - 1] == task.EOS
  assert train_prompts.shape[1] == task.PROMPT_LEN
  assert task.decode(tok[task.PROMPT_LEN:]) + '' == task.decode(tok[task.PROMPT_LEN:])
