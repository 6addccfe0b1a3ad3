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


def test_verify_ids_matches_verify_on_hand_cases():
  p = task.Problem(473, 6, 285)  # answer 3123
  cases = ['473*6=2838;2838+285=3123', '473*6=2838;2838+285=3113', '473*6=2838;2838+285=',
           '*+;:', '', '3123', '=3123', '==3123', '=03123', '=0003123', '=12;=3123',
           '=3123;', '=3123=', '=31*23', '=1000003123']
  ids = np.zeros((len(cases) + 2, task.SEQ_LEN - task.PROMPT_LEN), np.int32)
  for i, text in enumerate(cases):
    enc = task.encode(text)[:ids.shape[1]]
    ids[i, :len(enc)] = enc
    if len(enc) < ids.shape[1]:
      ids[i, len(enc)] = task.EOS
  # PAD inside the answer is skipped (as `decode` skips it); tokens after EOS are not read
  ids[-2, :6] = [task.encode('=')[0], *task.encode('31'), task.PAD, *task.encode('23')]
  ids[-1, :7] = [*task.encode('=3123'), task.EOS, task.encode('9')[0]]
  expected = [task.verify(p, task.decode(row)) for row in ids]
  assert expected[:3] == [True, False, False] and expected[-2:] == [True, True]
  assert expected[8] and not expected[9]  # leading zeros count towards the 6 digits
  got = np.asarray(task.verify_ids(ids, np.full(len(ids), p.answer, np.int32)))
  np.testing.assert_array_equal(got, expected)


def test_verify_ids_matches_verify_on_random_completions():
  rng = np.random.default_rng(0)
  problems = task.sample_problems(400, rng)
  ids = np.zeros((400, task.SEQ_LEN - task.PROMPT_LEN), np.int32)
  for i, p in enumerate(problems):  # teacher traces, perturbed by random token edits
    trace, _ = task.teacher_trace(p, rng, 0.5)
    enc = task.encode(trace) + [task.EOS]
    ids[i, :len(enc)] = enc
    for _ in range(int(rng.integers(0, 3))):
      ids[i, rng.integers(ids.shape[1])] = rng.integers(task.VOCAB_SIZE)
  expected = [task.verify(p, task.decode(row)) for p, row in zip(problems, ids, strict=True)]
  assert 0.2 < np.mean(expected) < 0.8
  got = np.asarray(task.verify_ids(ids, task.answers(problems)))
  np.testing.assert_array_equal(got, expected)


def test_majority_answer_and_test_pairs():
  probs = [task.Problem(100, 2, 100), task.Problem(150, 2, 0), task.Problem(101, 2, 100)]
  assert task.majority_answer(probs) == 300  # 300 twice, 302 once
  assert task.majority_answer(probs[1:]) == 300  # a tie: the smaller answer
  ds = task.make_datasets(100, 10, 20, 4, 0.4, seed=0)
  pairs = ds.test_pairs
  for i, p in enumerate(ds.test):
    assert task.verify(p, task.decode(pairs['pos_tokens'][i, task.PROMPT_LEN:]))
    assert not task.verify(p, task.decode(pairs['neg_tokens'][i, task.PROMPT_LEN:]))
    np.testing.assert_array_equal(pairs['pos_tokens'][i, :task.PROMPT_LEN],
                                  task.prompts([p])[0])
