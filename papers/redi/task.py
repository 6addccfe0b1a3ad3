"""The verifiable reasoning task: chained arithmetic problems, a verifier, an erring teacher.

A problem is `a*b+c` (a, c three digits, b one digit), written as the fixed-width prompt
`473*6+285:`. The teacher's step-by-step trace is `473*6=2838;2838+285=3123` followed by EOS.
With probability `error_rate` it makes one realistic mistake and carries on consistently from
the wrong value: a dropped carry in the multiplication or the addition, a wrong digit of the
partial product, transposed digits when copying the product, or a slip in the final sum.
Correct / incorrect labels come from the verifier, never from the injection flag.
"""

from __future__ import annotations

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

CHARS = '0123456789*+=;:'
PAD, EOS = 0, 1
VOCAB_SIZE = len(CHARS) + 2
PROMPT_LEN = 10  # 'ddd*d+ddd:'
SEQ_LEN = 36  # prompt + longest trace (25 chars incl. EOS) + 1 spare
EQUALS = CHARS.index('=') + 2
MAX_ANSWER_DIGITS = 6  # the verifier's longest accepted answer
ERROR_KINDS = ('mul_carry', 'partial_digit', 'transpose', 'add_carry', 'sum_slip')


@dataclasses.dataclass(frozen=True)
class Problem:
  a: int
  b: int
  c: int

  @property
  def prompt(self) -> str:
    return f'{self.a:03d}*{self.b}+{self.c:03d}:'

  @property
  def answer(self) -> int:
    return self.a * self.b + self.c


def encode(text: str) -> list[int]:
  return [CHARS.index(ch) + 2 for ch in text]


def decode(ids) -> str:
  """Token ids -> text, stopping at the first EOS (PAD is skipped)."""
  out = []
  for i in np.asarray(ids).tolist():
    if i == EOS:
      break
    if i >= 2:
      out.append(CHARS[i - 2])
  return ''.join(out)


def sample_problems(n: int, rng: np.random.Generator) -> list[Problem]:
  a = rng.integers(100, 1000, n)
  b = rng.integers(2, 10, n)
  c = rng.integers(100, 1000, n)
  return [Problem(int(x), int(y), int(z)) for x, y, z in zip(a, b, c, strict=False)]


def verify(problem: Problem, completion: str) -> bool:
  """Exact check: the completion is well formed and the number after its last '=' is the
  answer (the final answer, as a math verifier reads a boxed result)."""
  if '=' not in completion:
    return False
  tail = completion.rsplit('=', 1)[1]
  return tail.isdigit() and len(tail) <= MAX_ANSWER_DIGITS and int(tail) == problem.answer


def verify_ids(ids: jax.Array, answer: jax.Array) -> jax.Array:
  """`verify` on token ids, batched and jittable: completions [B, L] -> bool [B].

  The completion is read as `decode` reads it (up to the first EOS, PAD skipped); it passes when
  the tokens after its last '=' are 1 to MAX_ANSWER_DIGITS digits whose number is `answer`."""
  ids = jnp.asarray(ids)
  kept = (jnp.cumsum(ids == EOS, -1) == 0) & (ids >= 2)
  position = jnp.arange(ids.shape[-1])
  last_eq = jnp.max(jnp.where(kept & (ids == EQUALS), position, -1), -1, keepdims=True)
  tail = kept & (position > last_eq)
  digit = ids - 2
  is_digit = (digit >= 0) & (digit <= 9)
  length = tail.sum(-1)
  # place value of each tail digit: 10 ** (number of tail digits after it)
  after = jnp.minimum(length[:, None] - jnp.cumsum(tail, -1), MAX_ANSWER_DIGITS)
  value = jnp.sum(jnp.where(tail, digit * 10 ** after, 0), -1)
  return ((last_eq[:, 0] >= 0) & jnp.all(~tail | is_digit, -1) & (length >= 1)
          & (length <= MAX_ANSWER_DIGITS) & (value == answer))


def answers(problems: list[Problem]) -> np.ndarray:
  return np.array([p.answer for p in problems], np.int32)


def majority_answer(problems: list[Problem]) -> int:
  """The most frequent answer among `problems` (the smallest among ties): the trivial answer
  baseline, given to every problem."""
  counts = collections.Counter(p.answer for p in problems)
  top = max(counts.values())
  return min(a for a, n in counts.items() if n == top)


# --- the teacher's arithmetic, digit by digit (so it can drop a carry) ------------------------

def _digits(x: int) -> list[int]:
  return [int(d) for d in reversed(str(x))]  # least significant first


def _from_digits(ds: list[int]) -> int:
  return int(''.join(str(d) for d in reversed(ds)))


def column_multiply(a: int, b: int, drop_carry_at: int | None = None) -> int:
  """a * b (b one digit) column by column; `drop_carry_at` forgets the carry out of that column."""
  out, carry = [], 0
  for i, d in enumerate(_digits(a)):
    v = d * b + carry
    out.append(v % 10)
    carry = 0 if i == drop_carry_at else v // 10
  if carry:
    out.extend(_digits(carry))
  return _from_digits(out)


def column_add(x: int, y: int, drop_carry_at: int | None = None) -> int:
  """x + y column by column; `drop_carry_at` forgets the carry out of that column."""
  dx, dy = _digits(x), _digits(y)
  n = max(len(dx), len(dy))
  dx, dy = dx + [0] * (n - len(dx)), dy + [0] * (n - len(dy))
  out, carry = [], 0
  for i in range(n):
    v = dx[i] + dy[i] + carry
    out.append(v % 10)
    carry = 0 if i == drop_carry_at else v // 10
  if carry:
    out.append(carry)
  return _from_digits(out)


def _carry_columns(a: int, b: int, op: str) -> list[int]:
  cols = []
  if op == 'mul':
    carry = 0
    for i, d in enumerate(_digits(a)):
      v = d * b + carry
      carry = v // 10
      if carry and i < len(_digits(a)) - 1:
        cols.append(i)
  else:
    dx, dy = _digits(a), _digits(b)
    n = max(len(dx), len(dy))
    dx, dy = dx + [0] * (n - len(dx)), dy + [0] * (n - len(dy))
    carry = 0
    for i in range(n):
      carry = (dx[i] + dy[i] + carry) // 10
      if carry and i < n - 1:
        cols.append(i)
  return cols


def _change_digit(x: int, rng: np.random.Generator, delta_one: bool = False) -> int:
  s = list(str(x))
  i = int(rng.integers(len(s)))
  old = int(s[i])
  if delta_one:
    new = (old + (1 if rng.random() < 0.5 else -1)) % 10
  else:
    new = int(rng.choice([d for d in range(10) if d != old]))
  if i == 0 and new == 0 and len(s) > 1:
    new = old % 9 + 1
  s[i] = str(new)
  return int(''.join(s))


def _transpose(x: int, rng: np.random.Generator) -> int | None:
  s = list(str(x))
  pairs = [i for i in range(len(s) - 1) if s[i] != s[i + 1] and not (i == 0 and s[1] == '0')]
  if not pairs:
    return None
  i = int(rng.choice(pairs))
  s[i], s[i + 1] = s[i + 1], s[i]
  return int(''.join(s))


def teacher_trace(problem: Problem, rng: np.random.Generator, error_rate: float = 0.0,
                  error_kind: str | None = None) -> tuple[str, str | None]:
  """A step-by-step trace and the error kind it contains (None when error-free).

  With probability `error_rate` (or always, when `error_kind` is given) one mistake is made;
  the steps after it are computed correctly from the wrong value, as a real solver would.
  """
  a, b, c = problem.a, problem.b, problem.c
  kind = error_kind
  if kind is None and rng.random() < error_rate:
    kind = ERROR_KINDS[int(rng.integers(len(ERROR_KINDS)))]
  product = column_multiply(a, b)
  copied = None
  if kind == 'mul_carry':
    cols = _carry_columns(a, b, 'mul')
    if cols:
      product = column_multiply(a, b, int(rng.choice(cols)))
    else:
      kind = 'partial_digit'
  if kind == 'partial_digit':
    product = _change_digit(product, rng)
  if kind == 'transpose':
    copied = _transpose(product, rng)
    if copied is None:
      kind, copied = 'sum_slip', None
  carried = product if copied is None else copied
  total = column_add(carried, c)
  if kind == 'add_carry':
    cols = _carry_columns(carried, c, 'add')
    if cols:
      total = column_add(carried, c, int(rng.choice(cols)))
    else:
      kind = 'sum_slip'
  if kind == 'sum_slip':
    total = _change_digit(total, rng, delta_one=True)
  return f'{a:03d}*{b}={product};{carried}+{c:03d}={total}', kind


# --- token arrays ------------------------------------------------------------------------------

def sequences(problems: list[Problem], completions: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """tokens [N, SEQ_LEN] (prompt, completion, EOS, PAD...) and the completion mask [N, SEQ_LEN]
  (1 on completion tokens and the EOS, 0 on the prompt and padding)."""
  tokens = np.full((len(problems), SEQ_LEN), PAD, np.int32)
  mask = np.zeros((len(problems), SEQ_LEN), np.float32)
  for i, (p, y) in enumerate(zip(problems, completions, strict=False)):
    ids = encode(p.prompt) + encode(y) + [EOS]
    if len(ids) > SEQ_LEN:
      raise ValueError(f'sequence of {len(ids)} tokens exceeds SEQ_LEN={SEQ_LEN}')
    tokens[i, :len(ids)] = ids
    mask[i, PROMPT_LEN:len(ids)] = 1.0
  return tokens, mask


def prompts(problems: list[Problem]) -> np.ndarray:
  return np.array([encode(p.prompt) for p in problems], np.int32)


@dataclasses.dataclass
class Datasets:
  sft: dict[str, np.ndarray]  # tokens, mask: correct traces
  pref: dict[str, np.ndarray]  # pos_tokens, pos_mask, neg_tokens, neg_mask
  valid: list[Problem]
  test: list[Problem]
  test_pairs: dict[str, np.ndarray]  # a correct and an incorrect trace of each test problem
  train: list[Problem]
  stats: dict[str, float]


def make_datasets(num_train: int, num_valid: int, num_test: int, samples_per_problem: int,
                  error_rate: float, seed: int = 0) -> Datasets:
  """Train problems get `samples_per_problem` teacher traces each. The SFT set holds one correct
  trace per problem that has one; the preference set pairs the first correct with the first
  incorrect trace of every problem that has both. Valid/test problems are disjoint from train.
  `test_pairs` holds each test problem's correct trace and one with an injected mistake of a
  random kind (their own random stream: the training data does not depend on them)."""
  rng = np.random.default_rng(seed)
  pool = sample_problems(3 * (num_train + num_valid + num_test), rng)
  unique = list(dict.fromkeys(pool))
  train = unique[:num_train]
  valid = unique[num_train:num_train + num_valid]
  test = unique[num_train + num_valid:num_train + num_valid + num_test]
  sft_p, sft_y, pos_p, pos_y, neg_y = [], [], [], [], []
  num_traces = num_correct = 0
  for p in train:
    traces = [teacher_trace(p, rng, error_rate)[0] for _ in range(samples_per_problem)]
    ok = [verify(p, t) for t in traces]
    num_traces += len(traces)
    num_correct += sum(ok)
    good = [t for t, k in zip(traces, ok, strict=False) if k]
    bad = [t for t, k in zip(traces, ok, strict=False) if not k]
    if good:
      sft_p.append(p)
      sft_y.append(good[0])
    if good and bad:
      pos_p.append(p)
      pos_y.append(good[0])
      neg_y.append(bad[0])
  tok, mask = sequences(sft_p, sft_y)
  pt, pm = sequences(pos_p, pos_y)
  nt, nm = sequences(pos_p, neg_y)
  stats = {'train_problems': len(train), 'sft_examples': len(sft_p), 'pref_pairs': len(pos_p),
           'teacher_accuracy': num_correct / max(num_traces, 1)}
  test_rng = np.random.default_rng([seed, 1])
  good = [teacher_trace(p, test_rng)[0] for p in test]
  bad = [teacher_trace(p, test_rng, error_kind=ERROR_KINDS[int(test_rng.integers(
      len(ERROR_KINDS)))])[0] for p in test]
  tpt, tpm = sequences(test, good)
  tnt, tnm = sequences(test, bad)
  return Datasets({'tokens': tok, 'mask': mask},
                  {'pos_tokens': pt, 'pos_mask': pm, 'neg_tokens': nt, 'neg_mask': nm},
                  valid, test,
                  {'pos_tokens': tpt, 'pos_mask': tpm, 'neg_tokens': tnt, 'neg_mask': tnm},
                  train, stats)
