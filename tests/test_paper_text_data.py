"""The text papers' paper configs on real-format inputs: token files, tokenizer.json, a Qwen2
checkpoint in the Hugging Face layout, trace jsonl.

Each test writes tiny files into tmp_path (a BPE tokenizer trained with `tokenizers`, jsonl and
parquet documents, a random Qwen2 checkpoint saved with `common.hf.save_qwen2`) and runs one
step of a `configs/*/paper_*.py:tiny` config on them through `train_and_evaluate`.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import config as cfglib
from common import data, hf, lm, train
from common.models.transformer import Transformer
from common.quickstart import load_config
from papers.redi import experiment as redi
from papers.redi import task, traces
from tests.testutil import ROOT

tokenizers = pytest.importorskip('tokenizers')
pa = pytest.importorskip('pyarrow')
pq = pytest.importorskip('pyarrow.parquet')
EOS = '<|endoftext|>'


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  """Documents split over a jsonl and a parquet file, a trained tokenizer, trace rows."""
  from tokenizers import decoders, models, pre_tokenizers, trainers

  root = tmp_path_factory.mktemp('text')
  docs = [line for line in lm.synthetic_text(30_000, seed=3).splitlines() if line]
  half = len(docs) // 2
  with open(root / 'a.jsonl', 'w') as f:
    for d in docs[:half]:
      f.write(json.dumps({'text': d, 'id': 0}) + '\n')
  pq.write_table(pa.table({'text': docs[half:]}), root / 'b.parquet')
  tok = tokenizers.Tokenizer(models.BPE(unk_token='<unk>'))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(docs, trainers.BpeTrainer(
      vocab_size=200, special_tokens=['<pad>', EOS, '<unk>'],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.save(str(root / 'tokenizer.json'))
  rng = np.random.default_rng(0)
  with open(root / 'traces.jsonl', 'w') as f:
    for i, p in enumerate(task.sample_problems(24, rng)):
      good = task.teacher_trace(p, rng)[0]
      bad = task.teacher_trace(p, rng, error_kind='sum_slip')[0]
      f.write(json.dumps({'prompt': p.prompt, 'chosen': good,
                          'rejected': None if i % 5 == 0 else bad}) + '\n')
  return {'root': root, 'docs': docs, 'tokenizer': tok}


def _checkpoint(path, config, vocab_size: int, seed: int = 0):
  """A random Qwen2 checkpoint with `config.model`'s architecture; returns its directory."""
  kwargs = {k: v for k, v in lm.model_kwargs(config).items() if k not in ('dtype', 'remat')}
  model = Transformer(vocab_size=vocab_size, causal=True, **kwargs)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: rng.normal(0.0, 0.3, s.shape).astype(np.float32), shapes)
  hf.save_qwen2(str(path), model, params)
  return str(path)


def _tiny(name: str, arg: str = 'tiny'):
  return load_config(ROOT / 'configs' / name, arg)


def _capture_fit(monkeypatch) -> dict:
  """Wraps `train.fit` to record the initial parameters and the first training batch."""
  seen, fit = {}, train.fit

  def wrapped(config, workdir, **kw):
    seen.setdefault('params', jax.device_get(kw['params']))
    seen.setdefault('batch0', kw['train_batch'](0))
    return fit(config, workdir, **kw)

  monkeypatch.setattr(train, 'fit', wrapped)
  return seen


def _expected_stream(files) -> np.ndarray:
  """All documents (jsonl first, then parquet) tokenized and joined with EOS, by hand."""
  tok = files['tokenizer']
  ids = []
  for d in files['docs']:
    ids += tok.encode(d, add_special_tokens=False).ids + [tok.token_to_id(EOS)]
  return np.asarray(ids, np.int32)


def test_edlm_trains_on_token_files(files, tmp_path, monkeypatch):
  root = files['root']
  c = _tiny('edlm/paper_owt.py')
  c.data.update(text_files=f'{root}/a.jsonl, {root}/*.parquet',
                tokenizer=str(root / 'tokenizer.json'))
  seen = _capture_fit(monkeypatch)
  from papers.edlm import experiment
  result = experiment.train_and_evaluate(c, str(tmp_path / 'run'))
  stream = _expected_stream(files)
  train_ids = stream[:int(0.9 * len(stream))]
  windows = lm.windows(train_ids, c.data.seq_len)
  order = data.batch_indices(len(windows), c.train.batch_size, c.seed)
  np.testing.assert_array_equal(seen['batch0']['tokens'], windows[order[0]])
  vocab = files['tokenizer'].get_vocab_size(with_added_tokens=True)
  embed = seen['params']['params']['embed']['embedding']
  assert embed.shape == (vocab + 1, c.model.d_model)  # + [MASK]
  assert np.isfinite(result.eval_metrics['nelbo_bits_per_token'])


@pytest.mark.parametrize('arg', ['tiny', 'tiny,p1'])
def test_parscale_recycles_a_qwen2_checkpoint(files, tmp_path, monkeypatch, arg):
  root = files['root']
  c = _tiny('parscale/paper_pile.py', arg)
  vocab = files['tokenizer'].get_vocab_size(with_added_tokens=True) + 3  # padded, as Qwen2.5
  ckpt = _checkpoint(tmp_path / 'ckpt', c, vocab)
  c.data.update(text_files=str(root / 'b.parquet'), tokenizer=str(root))
  c.model.init_checkpoint = ckpt
  seen = _capture_fit(monkeypatch)
  from papers.parscale import experiment
  result = experiment.train_and_evaluate(c, str(tmp_path / 'run'))
  _, expected = hf.load_qwen2(ckpt)
  got = seen['params']['params']
  jax.tree.map(np.testing.assert_array_equal, expected['params'], got['backbone'])
  assert ('aggregator' in got) == (c.parscale.num_streams > 1)  # fresh P-stream parts
  assert np.isfinite(result.eval_metrics['bits_per_token'])


def test_redi_sft_starts_from_a_qwen2_checkpoint(files, tmp_path, monkeypatch):
  """SFT from the checkpoint on the traces, then DPO from the SFT run: the held-out trace
  log-likelihoods are the evaluators."""
  root = files['root']
  c = _tiny('redi/paper_qwen_math_1p5b.py')
  vocab = files['tokenizer'].get_vocab_size(with_added_tokens=True)
  ckpt = _checkpoint(tmp_path / 'ckpt', c, vocab)
  traces_data = dict(traces_jsonl=str(root / 'traces.jsonl'),
                     tokenizer=str(root / 'tokenizer.json'))
  c.data.update(traces_data)
  c.model.init_checkpoint = ckpt
  seen = _capture_fit(monkeypatch)
  result = redi.train_and_evaluate(c, str(tmp_path / 'sft'))
  _, expected = hf.load_qwen2(ckpt)
  jax.tree.map(np.testing.assert_array_equal, expected, seen['params'])  # SFT's start
  final = result.eval_metrics
  assert {'test_chosen_logp', 'test_rejected_logp', 'test_pair_accuracy',
          'floor/untrained_test_chosen_logp'} <= set(final)
  assert not any('pass1' in k for k in final)  # no answer verifier for free text
  assert all(np.isfinite(v) for v in final.values())
  assert final['data/sft_examples'] == 24 - c.data.num_test
  dpo = _tiny('redi/paper_qwen_math_1p5b.py', 'tiny,dpo')
  dpo.data.update(traces_data)
  dpo.init_from = str(tmp_path / 'sft')
  seen.clear()
  out = redi.train_and_evaluate(dpo, str(tmp_path / 'dpo'))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(result.state.params),
               seen['params'])
  assert np.isfinite(out.eval_metrics['test_chosen_logp'])
  np.testing.assert_allclose(seen['batch0']['ref_pos'], redi.pair_logprobs(  # bf16 compute
      redi.make_model(dpo, vocab), seen['params'], seen['batch0'])[0], rtol=1e-3)


def test_traces_are_prompt_completion_eos_with_a_completion_mask(files):
  tok = files['tokenizer']
  eos = tok.token_to_id(EOS)
  path = files['root'] / 'traces.jsonl'
  rows = traces.read_traces(str(path))
  ds = traces.make_datasets(str(path), tok, eos, max_len=64, num_test=4, pair_max_len=48)
  prompt = tok.encode(rows[0]['prompt'], add_special_tokens=False).ids
  chosen = tok.encode(rows[0]['chosen'], add_special_tokens=False).ids
  ids = prompt + chosen + [eos]
  np.testing.assert_array_equal(ds.sft['tokens'][0, :len(ids)], ids)
  assert not ds.sft['tokens'][0, len(ids):].any()
  np.testing.assert_array_equal(ds.sft['mask'][0], [0] * len(prompt) + [1] * (len(ids) - len(
      prompt)) + [0] * (ds.sft['tokens'].shape[1] - len(ids)))
  assert len(ds.sft['tokens']) == 20 and len(ds.test['pos_tokens']) == 4
  assert len(ds.pref['pos_tokens']) == sum(1 for r in rows[:20] if r['rejected'])
  assert ds.pref['pos_tokens'].shape[1] <= 48 and ds.sft['tokens'].shape[1] <= 64
  short = traces.make_datasets(str(path), tok, eos, max_len=len(prompt) + 2, num_test=4)
  assert short.sft['mask'][0].sum() == 2  # cut at max_len: two completion tokens left


def test_bad_text_settings_are_one_line_config_errors(files, tmp_path):
  from papers.parscale import experiment as parscale
  root = files['root']
  c = _tiny('parscale/paper_pile.py')
  c.data.text_files = str(root / 'a.jsonl')
  with pytest.raises(cfglib.ConfigError, match='config.data.tokenizer is empty'):
    parscale.validate(c, 1)
  c.data.tokenizer = str(root)
  wide = _tiny('parscale/paper_pile.py')
  wide.model.update(d_model=32, mlp_dim=48)
  c.model.init_checkpoint = _checkpoint(tmp_path / 'wide', wide, 300)
  with pytest.raises(cfglib.ConfigError,
                     match=r'config.model.d_model=16 but the checkpoint .* has 32: pass '
                           r'--config.model.d_model=32'):
    parscale.validate(c, 1)
  c.model.init_checkpoint = str(tmp_path)
  with pytest.raises(cfglib.ConfigError, match='has no config.json'):
    parscale.validate(c, 1)
  r = _tiny('redi/paper_qwen_math_1p5b.py')
  r.model.init_checkpoint = _checkpoint(tmp_path / 'redi', r, 300)
  with pytest.raises(cfglib.ConfigError, match='needs --config.data.traces_jsonl'):
    redi.validate(r, 1)
  small = _checkpoint(tmp_path / 'small', c, 10)  # fewer embeddings than the tokenizer has
  c.model.init_checkpoint = small
  with pytest.raises(cfglib.ConfigError, match="checkpoint's own tokenizer"):
    parscale.train_and_evaluate(c, str(tmp_path / 'run'))
