"""Teacher traces from a jsonl file, tokenized for SFT and the stage-2 objectives.

`data.traces_jsonl` holds one JSON object per line (any format `common.data.read_table` reads):

    {"prompt": "Solve 2x+3=7.", "chosen": "2x = 4, so x = 2. \\boxed{2}", "rejected": "... x = 5"}

`prompt` and `chosen` (a verified-correct trace) are required; `rejected` (an incorrect trace
for the same prompt) may be missing, null or empty. Every row's chosen trace is an SFT example
(stage 1); rows with a rejected trace are the preference pairs (stage 2). The last
`data.num_test` rows are held out for evaluation. Each sequence is prompt + completion + EOS
tokenized with `data.tokenizer` (no other special tokens, no chat template), cut at
`data.max_len` tokens for SFT and `data.pair_max_len` for the pairs and held-out rows; the mask
is 1 on the completion tokens and the EOS that remain. Arrays are padded to their longest
sequence (at most the cut). Rows whose prompt leaves no room for a completion are dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from common import data

FIELDS = ('prompt', 'chosen', 'rejected')
PAD = 0


@dataclasses.dataclass
class TraceDatasets:
  sft: dict[str, np.ndarray]  # tokens, mask: chosen traces of the training rows
  pref: dict[str, np.ndarray]  # pos_tokens, pos_mask, neg_tokens, neg_mask
  test: dict[str, np.ndarray]  # held-out rows: pos_*, neg_* (neg_mask all 0 without rejected)
  stats: dict[str, float]


def read_traces(path: str) -> list[dict[str, str]]:
  """Rows {'prompt', 'chosen', 'rejected'} ('' when a row has no rejected trace)."""
  table = data.read_table(path)
  missing = [f for f in FIELDS[:2] if f not in table.column_names]
  if missing:
    raise data.DataError(f'{path} has no field {missing[0]!r} (it has {table.column_names}): '
                         'each line needs "prompt" and "chosen" (and optionally "rejected")')
  columns = {f: table.column(f).to_pylist() if f in table.column_names else [None] * len(table)
             for f in FIELDS}
  rows = [{f: columns[f][i] or '' for f in FIELDS} for i in range(len(table))]
  rows = [r for r in rows if r['chosen']]
  if not rows:
    raise data.DataError(f'{path} has no row with a non-empty "chosen" trace: check the file')
  return rows


def _sequences(prompts: list[list[int]], completions: list[list[int] | None], eos_id: int,
               max_len: int, width: int) -> tuple[np.ndarray, np.ndarray]:
  """tokens [N, width] (prompt, completion, EOS, PAD...) and completion mask [N, width]; a row
  without a completion stays all PAD with mask 0."""
  tokens = np.full((len(prompts), width), PAD, np.int32)
  mask = np.zeros((len(prompts), width), np.float32)
  for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
    if c is None:
      continue
    ids = (p + c + [eos_id])[:max_len]
    tokens[i, :len(ids)] = ids
    mask[i, len(p):len(ids)] = 1.0
  return tokens, mask


def make_datasets(path: str, tokenizer, eos_id: int, max_len: int, num_test: int,
                  pair_max_len: int | None = None) -> TraceDatasets:
  """SFT arrays, preference pairs and held-out rows from the jsonl (see the module doc)."""
  rows = read_traces(path)
  pair_max_len = pair_max_len or max_len

  def tokenize(texts: list[str]) -> list[list[int] | None]:
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    return [e.ids if t else None for t, e in zip(texts, encoded, strict=True)]

  prompt, chosen, rejected = (tokenize([r[f] for r in rows]) for f in FIELDS)
  cut = min(max_len, pair_max_len)
  keep = [i for i, p in enumerate(prompt) if len(p) < cut]  # room for a completion token
  if len(keep) <= num_test:
    raise data.DataError(f'{path} has {len(keep)} traces with prompts shorter than {cut} tokens '
                         f'(data.max_len, data.pair_max_len), not more than data.num_test='
                         f'{num_test}: add traces, raise the lengths or lower data.num_test')
  train, test = keep[:-num_test] if num_test else keep, keep[-num_test:] if num_test else []
  pairs = [i for i in train if rejected[i] is not None]
  if not pairs:
    raise data.DataError(f'{path} has no training row with a "rejected" trace: stage 2 needs '
                         'preference pairs')
  def full(i: int, completions: list) -> int:
    return len(prompt[i]) + len(completions[i] or []) + 1

  sft_width = min(max(full(i, chosen) for i in train), max_len)
  pair_width = min(max(max(full(i, chosen), full(i, rejected)) for i in pairs + test),
                   pair_max_len)

  def arrays(index: list[int], completions: list, cap: int, width: int):
    return _sequences([prompt[i] for i in index], [completions[i] for i in index], eos_id,
                      cap, width)

  tok, mask = arrays(train, chosen, max_len, sft_width)
  pt, pm = arrays(pairs, chosen, pair_max_len, pair_width)
  nt, nm = arrays(pairs, rejected, pair_max_len, pair_width)
  tpt, tpm = arrays(test, chosen, pair_max_len, pair_width)
  tnt, tnm = arrays(test, rejected, pair_max_len, pair_width)
  stats = {'sft_examples': len(train), 'pref_pairs': len(pairs), 'test_rows': len(test),
           'dropped_long_prompts': len(rows) - len(keep), 'sft_seq_len': sft_width,
           'pair_seq_len': pair_width,
           'truncated_sft': sum(full(i, chosen) > max_len for i in train),
           'truncated_pairs': sum(max(full(i, chosen), full(i, rejected)) > pair_max_len
                                  for i in pairs)}
  return TraceDatasets({'tokens': tok, 'mask': mask},
                       {'pos_tokens': pt, 'pos_mask': pm, 'neg_tokens': nt, 'neg_mask': nm},
                       {'pos_tokens': tpt, 'pos_mask': tpm, 'neg_tokens': tnt, 'neg_mask': tnm},
                       stats)
