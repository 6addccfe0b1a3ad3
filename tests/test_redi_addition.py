"""REDI's addition task: the column algorithm and the teacher's two strategies, the verifier on
token ids, and the evaluators (exact pass@1 against step-by-step decoding probabilities, the
forced strategies, pass@k) on hand-checkable cases."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import parallel, train
from configs.redi.addition import get_config
from papers.redi import addition, task
from papers.redi import experiment as ex


def test_correct_traces_by_hand():
  p = addition.Problem(123456, 987654)  # 1111110
  assert p.prompt == '645546372819:'
  assert addition.correct_traces(p) == {'long': ';011111111111', 'short': '=1111110'}
  q = addition.Problem(120, 3)
  assert addition.correct_traces(q) == {'long': ';302010000000', 'short': '=123'}
  assert addition.verify(q, '=123') and addition.verify(q, ';302010000000')
  assert not addition.verify(q, '=0123') and not addition.verify(q, ';302010000001')
  assert len(p.prompt) == addition.PROMPT_LEN


def test_teacher_strategies_and_errors():
  rng = np.random.default_rng(0)
  problems = addition.sample_problems(300, rng)
  for p in problems:
    s, c = addition.columns(p.x, p.y)
    assert addition.value_of(s, c) == p.answer
    trace, strategy = addition.teacher_trace(p, rng, 0.0, 1.0, 0.0)
    assert strategy == 'long' and addition.verify(p, trace)
    trace, strategy = addition.teacher_trace(p, rng, 0.0, 0.0, 1.0)  # a slip: always wrong
    assert strategy == 'long' and not addition.verify(p, trace)
    trace, strategy = addition.teacher_trace(p, rng, 1.0, 1.0, 0.0)  # every carry forgotten
    assert strategy == 'short' and addition.verify(p, trace) == (not any(c))
    no_carry = sum(int(a) % 10 * 10 ** i for i, a in enumerate(
        int(x) + int(y) for x, y in zip(f'{p.x:06d}'[::-1], f'{p.y:06d}'[::-1], strict=True)))
    assert trace == '=' + str(no_carry)


def test_datasets_mix_strategies_in_positives_and_short_negatives():
  ds = addition.make_datasets(400, 16, 32, 4, 0.9, 0.4, 0.03, seed=0)
  st = ds.stats
  assert 0.15 < st['sft_long_share'] < 0.5 and st['pair_neg_short_share'] > 0.9
  assert st['pref_pairs'] == len(ds.pref['pos_tokens']) <= st['sft_examples']
  for tokens, mask, good in ((ds.pref['pos_tokens'], ds.pref['pos_mask'], True),
                             (ds.pref['neg_tokens'], ds.pref['neg_mask'], False)):
    for row, m in zip(tokens[:50], mask[:50], strict=True):
      prompt, completion = task.decode(row[:addition.PROMPT_LEN]), task.decode(
          row[addition.PROMPT_LEN:])
      digits = [int(ch) for ch in prompt[:-1]]
      x = sum(d * 10 ** i for i, d in enumerate(digits[0::2]))
      y = sum(d * 10 ** i for i, d in enumerate(digits[1::2]))
      assert addition.verify(addition.Problem(x, y), completion) == good
      assert m.sum() == len(completion) + 1  # completion + EOS
  assert not set(ds.train) & set(ds.test) and not set(ds.valid) & set(ds.test)


def test_verify_ids_equals_the_string_verifier():
  rng = np.random.default_rng(2)
  problems = addition.sample_problems(40, rng)
  completions = []
  for i, p in enumerate(problems):
    good = addition.correct_traces(p)
    completions.append([good['long'], good['short'], good['short'][:-1], good['long'] + '0',
                        addition.teacher_trace(p, rng, 1.0, 1.0, 0.0)[0]][i % 5])
  tokens, _ = addition.sequences(problems, completions)
  ids = tokens[:, addition.PROMPT_LEN:].copy()
  ids[1::10, -1] = task.encode('7')[0]  # tokens after the EOS do not count
  targets = addition.targets(problems)
  got = np.asarray(addition.verify_ids(ids, targets['long_target'], targets['short_target']))
  want = [addition.verify(p, c) for p, c in zip(problems, completions, strict=True)]
  assert got.tolist() == want and any(want) and not all(want)
  no_eos = np.where(ids == addition.EOS, task.encode('0')[0], ids)  # never ends: fails
  assert not np.asarray(addition.verify_ids(no_eos, targets['long_target'],
                                            targets['short_target'])).any()


def test_pass_at_k_matches_the_combinatorial_formula():
  n = 8
  c = jnp.arange(n + 1)
  for k in (1, 3, 8):
    want = [1 - math.comb(n - ci, k) / math.comb(n, k) for ci in range(n + 1)]
    np.testing.assert_allclose(ex.pass_at_k(n, c, k), want, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope='module')
def setup():
  c = get_config('smoke')
  c.model.update(d_model=16, num_heads=2, num_kv_heads=2, mlp_dim=32, num_layers=1)
  ds = addition.make_datasets(64, 8, 16, 4, 0.9, 0.4, 0.03, seed=0)
  model = ex.make_model(c)
  params = model.init(jax.random.key(0), jnp.zeros((1, addition.SEQ_LEN), jnp.int32))
  params = jax.tree.map(lambda x: x * 20, params)  # a peaked distribution
  return c, ds, model, params


def test_exact_probabilities_equal_stepwise_products(setup):
  """log P_T(correct completion) and log P_T(first token) of `strategy_logprobs` against the
  product of next-token probabilities at T, one prefix at a time."""
  c, ds, model, params = setup
  problems, temperature = ds.test[:3], 0.6
  batch = {'prompt': jnp.asarray(addition.prompts(problems)),
           **{k: jnp.asarray(v) for k, v in addition.targets(problems).items()}}
  got = ex.strategy_logprobs(model, params, batch, temperature)
  for i, p in enumerate(problems):
    for name, completion in addition.correct_traces(p).items():
      ids = task.encode(p.prompt) + task.encode(completion) + [addition.EOS]
      total, first = 0.0, None
      for t in range(addition.PROMPT_LEN, len(ids)):
        logits = np.asarray(model.apply(params, jnp.asarray([ids[:t]])))[0, -1] / temperature
        logp = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        total += logp[ids[t]]
        first = logp[ids[t]] if first is None else first
      np.testing.assert_allclose(got[f'{name}_correct'][i], total, rtol=1e-4, atol=1e-4)
      np.testing.assert_allclose(got[f'{name}_first'][i], first, rtol=1e-4, atol=1e-4)


def _long_if_x_is_even(model, params, prompts, keys=None, temperature=0.0,
                       seq_len=addition.SEQ_LEN):
  """A stand-in decoder on concrete arrays: the correct long trace when x is even or the long
  strategy is forced; else the short answer, right only when x ends in 0 or 5."""
  out = np.zeros((len(prompts), seq_len), np.int32)
  out[:, :prompts.shape[1]] = np.asarray(prompts)
  for i, row in enumerate(np.asarray(prompts)):
    digits = [int(d) - 2 for d in row[:addition.PROMPT_LEN - 1]]
    p = addition.Problem(sum(d * 10 ** j for j, d in enumerate(digits[0::2])),
                         sum(d * 10 ** j for j, d in enumerate(digits[1::2])))
    forced = row[addition.PROMPT_LEN] if len(row) > addition.PROMPT_LEN else None
    long = forced == addition.LONG_ID or (forced is None and p.x % 2 == 0)
    good = addition.correct_traces(p)
    trace = good['long'] if long else good['short'] if p.x % 5 == 0 else '=' + str(p.answer + 1)
    ids = task.encode(trace) + [addition.EOS]
    out[i, addition.PROMPT_LEN:addition.PROMPT_LEN + len(ids)] = ids
  return jnp.asarray(out)


def test_evaluators_count_strategies_and_forced_accuracy(setup, monkeypatch):
  c, ds, model, params = setup
  monkeypatch.setattr(ex, 'generate', _long_if_x_is_even)
  c.eval.batch_size, c.eval.num_samples = 8, 2
  evaluation = ex.make_evaluation(model, c, ds)
  got = train.evaluate(evaluation.eval_fn, params, evaluation.batches(), parallel.make_mesh(1))
  for split, problems in (('test', ds.test), ('valid', ds.valid)):
    even = np.array([p.x % 2 == 0 for p in problems])
    five = np.array([p.x % 5 == 0 for p in problems])
    np.testing.assert_allclose(got[f'{split}_pass1_greedy'], np.mean(even | five), atol=1e-6)
    np.testing.assert_allclose(got[f'{split}_pass1_greedy_long_forced'], 1.0, atol=1e-6)
    np.testing.assert_allclose(got[f'{split}_pass1_greedy_short_forced'], np.mean(five),
                               atol=1e-6)
    if split == 'test':
      np.testing.assert_allclose(got['test_long_share_greedy'], np.mean(even), atol=1e-6)
      np.testing.assert_allclose(got['test_long_share_sampled'], np.mean(even), atol=1e-6)
      np.testing.assert_allclose(got['test_pass1_sampled'], np.mean(even | five), atol=1e-6)
      np.testing.assert_allclose(got['test_passk_sampled'], np.mean(even | five), atol=1e-6)
  assert 0 < got['test_long_share_greedy'] < 1
  for key in ('test_pass1_exact', 'test_long_share_exact', 'test_pass1_exact_long_forced'):
    assert 0 <= got[key] <= 1
