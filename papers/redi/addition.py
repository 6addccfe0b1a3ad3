"""The addition task in which the teacher's failures carry information: two strategies, one
reliable and long, one short and often wrong.

A problem adds two DIGITS-digit numbers x + y. The prompt writes them column by column, least
significant column first (x_0 y_0 x_1 y_1 ... ':', 13 tokens), as one lays them out for the
column algorithm. A completion takes one of two strategies, named by its first token:

- long, `;`: per column from the least significant, the sum digit s_i and the carry c_i out of
  it (`;s_0c_0s_1c_1...s_5c_5`); the answer is sum_i s_i 10^i + c_5 10^6. Each step reads its
  column at a fixed distance and the carry just written.
- short, `=`: the answer directly, most significant digit first (`=1234567`); its first digit
  already depends on every carry.

The verifier accepts exactly the correct completion of either strategy (a long trace passes
only when every column's digit and carry are right; a short one when its digits are the answer's,
with no leading zero), so the probability of passing is the sum of two sequence probabilities.

The teacher takes the short way with probability `short_rate` and there forgets each carry with
probability `carry_drop` (a direct answer that misses carries); the long way slips with
probability `long_error_rate` (one column's digit off by one or its carry dropped; the later
columns follow from the slip). The student's correct traces mix both strategies; its incorrect
ones are mostly short-way answers with missed carries.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from papers.redi import task

DIGITS = 6
PROMPT_LEN = 2 * DIGITS + 1
SEQ_LEN = PROMPT_LEN + 2 * DIGITS + 3  # prompt, ';' + 2 tokens per column + EOS, 1 spare
LONG, SHORT = ';', '='
LONG_ID, SHORT_ID = task.encode(LONG)[0], task.encode(SHORT)[0]
STRATEGIES = {'long': LONG_ID, 'short': SHORT_ID}
VOCAB_SIZE = task.VOCAB_SIZE
PAD, EOS = task.PAD, task.EOS


@dataclasses.dataclass(frozen=True)
class Problem:
  x: int
  y: int

  @property
  def prompt(self) -> str:
    return ''.join(a + b for a, b in zip(_digits(self.x), _digits(self.y), strict=True)) + ':'

  @property
  def answer(self) -> int:
    return self.x + self.y


def _digits(x: int) -> list[str]:
  """DIGITS digits, least significant first."""
  return list(f'{x:0{DIGITS}d}'[::-1])


def columns(x: int, y: int, drop_carry: np.ndarray | None = None, slip: tuple | None = None
            ) -> tuple[list[int], list[int]]:
  """(sum digits, carries) of the column algorithm, least significant first. `drop_carry[i]`
  forgets the carry out of column i; `slip=(i, 'digit' | 'carry')` makes column i's digit one
  off (+1 mod 10) or drops its carry; later columns follow from what was written."""
  s, c, carry = [], [], 0
  for i, (a, b) in enumerate(zip(_digits(x), _digits(y), strict=True)):
    v = int(a) + int(b) + carry
    digit, carry = v % 10, v // 10
    if drop_carry is not None and drop_carry[i]:
      carry = 0
    if slip is not None and slip[0] == i:
      if slip[1] == 'digit':
        digit = (digit + 1) % 10
      else:
        carry = 0
    s.append(digit)
    c.append(carry)
  return s, c


def long_trace(s: list[int], c: list[int]) -> str:
  return LONG + ''.join(f'{d}{k}' for d, k in zip(s, c, strict=True))


def short_trace(value: int) -> str:
  return SHORT + str(value)


def value_of(s: list[int], c: list[int]) -> int:
  return sum(d * 10 ** i for i, d in enumerate(s)) + c[-1] * 10 ** len(s)


def correct_traces(p: Problem) -> dict[str, str]:
  """The one correct completion of each strategy."""
  return {'long': long_trace(*columns(p.x, p.y)), 'short': short_trace(p.answer)}


def verify(p: Problem, completion: str) -> bool:
  return completion in correct_traces(p).values()


def teacher_trace(p: Problem, rng: np.random.Generator, short_rate: float, carry_drop: float,
                  long_error_rate: float) -> tuple[str, str]:
  """(completion, strategy) of the erring teacher (see the module doc)."""
  if rng.random() < short_rate:
    s, c = columns(p.x, p.y, drop_carry=rng.random(DIGITS) < carry_drop)
    return short_trace(value_of(s, c)), 'short'
  slip = None
  if rng.random() < long_error_rate:
    s, c = columns(p.x, p.y)
    carries = [i for i in range(DIGITS) if c[i]]
    slip = (int(rng.choice(carries)), 'carry') if carries and rng.random() < 0.5 else (
        int(rng.integers(DIGITS)), 'digit')
  return long_trace(*columns(p.x, p.y, slip=slip)), 'long'


def sample_problems(n: int, rng: np.random.Generator) -> list[Problem]:
  x, y = rng.integers(0, 10 ** DIGITS, n), rng.integers(0, 10 ** DIGITS, n)
  return [Problem(int(a), int(b)) for a, b in zip(x, y, strict=True)]


def sequences(problems: list[Problem], completions: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """tokens [N, SEQ_LEN] (prompt, completion, EOS, PAD...) and the completion mask."""
  tokens = np.full((len(problems), SEQ_LEN), PAD, np.int32)
  mask = np.zeros((len(problems), SEQ_LEN), np.float32)
  for i, (p, y) in enumerate(zip(problems, completions, strict=True)):
    ids = task.encode(p.prompt) + task.encode(y) + [EOS]
    tokens[i, :len(ids)] = ids
    mask[i, PROMPT_LEN:len(ids)] = 1.0
  return tokens, mask


def prompts(problems: list[Problem]) -> np.ndarray:
  return np.array([task.encode(p.prompt) for p in problems], np.int32)


def targets(problems: list[Problem]) -> dict[str, np.ndarray]:
  """The correct completions as token rows [N, SEQ_LEN - PROMPT_LEN] (completion, EOS, PAD...):
  `long_target` and `short_target`, what `verify_ids` compares with."""
  out = {}
  for name in STRATEGIES:
    tokens, _ = sequences(problems, [correct_traces(p)[name] for p in problems])
    out[f'{name}_target'] = tokens[:, PROMPT_LEN:]
  return out


def verify_ids(ids, long_target, short_target):
  """`verify` on token ids, batched and jittable: completions [B, L] -> bool [B]. A completion
  passes when its tokens up to and including the first EOS equal one target's."""
  import jax.numpy as jnp
  ids = jnp.asarray(ids)
  is_eos = ids == EOS
  upto = (jnp.cumsum(is_eos, -1) - is_eos) == 0  # up to and including the first EOS
  return jnp.any(jnp.stack([jnp.all(~upto | (ids == t), -1)
                            for t in (long_target, short_target)]), 0)


def make_datasets(num_train: int, num_valid: int, num_test: int, samples_per_problem: int,
                  short_rate: float, carry_drop: float, long_error_rate: float, seed: int = 0
                  ) -> task.Datasets:
  """As `task.make_datasets`: one correct trace per training problem that has one (SFT), the
  first correct and first incorrect trace of each that has both (pairs), and for each test
  problem the teacher's first correct and first incorrect trace (held-out pairs; a problem the
  teacher never fails gets a zero-weight negative row)."""
  rng = np.random.default_rng(seed)
  pool = list(dict.fromkeys(sample_problems(2 * (num_train + num_valid + num_test), rng)))
  train = pool[:num_train]
  valid = pool[num_train:num_train + num_valid]
  test = pool[num_train + num_valid:num_train + num_valid + num_test]
  counts = {f'{k}_{s}': 0 for k in ('correct', 'incorrect') for s in STRATEGIES}

  def draw(problems, generator, tally):
    good, bad = [], []
    for p in problems:
      traces = [teacher_trace(p, generator, short_rate, carry_drop, long_error_rate)
                for _ in range(samples_per_problem)]
      ok = [verify(p, t) for t, _ in traces]
      if tally:
        for (_, strategy), k in zip(traces, ok, strict=True):
          counts[f'{"correct" if k else "incorrect"}_{strategy}'] += 1
      good.append(next((t for (t, _), k in zip(traces, ok, strict=True) if k), None))
      bad.append(next((t for (t, _), k in zip(traces, ok, strict=True) if not k), None))
    return good, bad

  good, bad = draw(train, rng, True)
  sft = [i for i, g in enumerate(good) if g is not None]
  pairs = [i for i in sft if bad[i] is not None]
  tok, mask = sequences([train[i] for i in sft], [good[i] for i in sft])
  pt, pm = sequences([train[i] for i in pairs], [good[i] for i in pairs])
  nt, nm = sequences([train[i] for i in pairs], [bad[i] for i in pairs])
  test_good, test_bad = draw(test, np.random.default_rng([seed, 1]), False)
  tpt, tpm = sequences(test, [g or correct_traces(p)['long'] for p, g in zip(
      test, test_good, strict=True)])
  tnt, tnm = sequences(test, [b or '' for b in test_bad])
  tnm *= np.array([b is not None for b in test_bad], np.float32)[:, None]
  total = max(sum(counts.values()), 1)
  positives = [good[i] for i in sft]
  stats = {'train_problems': len(train), 'sft_examples': len(sft), 'pref_pairs': len(pairs),
           'teacher_accuracy': (counts['correct_long'] + counts['correct_short']) / total,
           'teacher_short_share': (counts['correct_short'] + counts['incorrect_short']) / total,
           'sft_long_share': float(np.mean([t[0] == LONG for t in positives])),
           'pair_pos_long_share': float(np.mean([good[i][0] == LONG for i in pairs])),
           'pair_neg_short_share': float(np.mean([bad[i][0] == SHORT for i in pairs]))}
  return task.Datasets({'tokens': tok, 'mask': mask},
                       {'pos_tokens': pt, 'pos_mask': pm, 'neg_tokens': nt, 'neg_mask': nm},
                       valid, test,
                       {'pos_tokens': tpt, 'pos_mask': tpm, 'neg_tokens': tnt, 'neg_mask': tnm},
                       train, stats)
