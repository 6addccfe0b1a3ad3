"""REDI experiment: the stage-2 step on 8 devices == 1, greedy decoding, the evaluators against
the string verifier, and the two stages end to end (stage 2 starts from SFT's checkpoint)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from common import checkpoint, data, parallel, train
from common.config import ConfigError
from common.metrics import read_metrics
from configs.redi.arith import get_config
from papers.redi import experiment as ex
from papers.redi import task


@pytest.fixture(scope='module')
def setup():
  c = get_config('smoke')
  c.model.update(d_model=16, num_heads=2, num_kv_heads=2, mlp_dim=32, num_layers=1)
  c.eval.num_samples = 2
  ds = task.make_datasets(64, 8, 24, 4, 0.5, seed=0)
  model = ex.make_model(c)
  params = model.init(jax.random.key(0), jnp.zeros((1, task.SEQ_LEN), jnp.int32))
  return c, ds, model, params


@pytest.mark.parametrize('method', ['redi', 'dpo'])
def test_stage2_step_8_devices_equals_1(setup, method):
  """The step `common.train.fit` runs for stage 2, data-parallel over 8 devices or on one."""
  c, ds, model, params = setup
  pref = ex.reference_logprobs(model, params, ds.pref, 8, parallel.make_mesh(1))
  cfg = ml_collections.ConfigDict(c.preference.to_dict())
  cfg.method = method
  c.optim.lr = 1e-2
  tx = train.make_optimizer(c.optim, 4)
  batch = data.take(pref, np.arange(8))
  step = train.make_train_step(lambda p, b, rng: ex.preference_loss(model, cfg, p, b), tx)
  out = []
  for n in (1, 8):
    mesh = parallel.make_mesh(n)
    state = parallel.replicate(train.init_state(params, tx, 0), mesh)
    fn = jax.jit(step)
    for _ in range(3):
      state, m = fn(state, parallel.shard_batch(batch, mesh))
    out.append((jax.device_get(state.params), jax.device_get(m)))
  np.testing.assert_allclose(out[0][1]['loss'], out[1][1]['loss'], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(out[0][0]), jax.tree.leaves(out[1][0]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)  # Adam on reassociated sums


def test_reference_logprobs_are_the_start_models(setup):
  _, ds, model, params = setup
  pref = ex.reference_logprobs(model, params, ds.pref, 16, parallel.make_mesh(1))
  s_pos, _, s_neg, _ = ex.pair_logprobs(model, params, ds.pref)
  np.testing.assert_allclose(pref['ref_pos'], s_pos, rtol=1e-5)
  np.testing.assert_allclose(pref['ref_neg'], s_neg, rtol=1e-5)
  assert len(pref['ref_pos']) == len(ds.pref['pos_tokens']) and len(ds.pref['pos_tokens']) % 16


def test_greedy_generate_matches_stepwise_argmax(setup):
  _, ds, model, params = setup
  prompts = jnp.asarray(task.prompts(ds.test[:3]))
  out = np.asarray(ex.generate(model, params, prompts))
  buf = np.zeros((3, task.SEQ_LEN), np.int32)
  buf[:, :task.PROMPT_LEN] = prompts
  for t in range(task.PROMPT_LEN, task.SEQ_LEN):
    buf[:, t] = np.argmax(np.asarray(model.apply(params, jnp.asarray(buf)))[:, t - 1], -1)
  np.testing.assert_array_equal(out, buf)


def test_stage2_alpha0_equals_sft_gradient(setup):
  """REDI with alpha = 0 is SFT on the positives (per-sequence mean NLL, equal lengths)."""
  c, ds, model, params = setup
  cfg = ml_collections.ConfigDict(c.preference.to_dict())
  cfg.update(method='redi', alpha=0.0)
  batch = {k: jnp.asarray(v[:1]) for k, v in ds.pref.items()}
  g_redi = jax.jit(jax.grad(lambda p: ex.preference_loss(model, cfg, p, batch)[0]))(params)
  sft_batch = {'tokens': batch['pos_tokens'], 'mask': batch['pos_mask']}
  g_sft = jax.jit(jax.grad(lambda p: ex.sft_loss(model, p, sft_batch)[0]))(params)
  for a, b in zip(jax.tree.leaves(g_redi), jax.tree.leaves(g_sft), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def _trained_params(setup, steps=60):
  """A few SFT steps, so that some greedy answers are right."""
  c, ds, model, params = setup
  tx = train.make_optimizer(ml_collections.ConfigDict(dict(
      name='adam', lr=1e-2, schedule='constant', warmup_steps=0, weight_decay=0.0,
      grad_clip=0.0)), steps)
  step = jax.jit(train.make_train_step(lambda p, b, rng: ex.sft_loss(model, p, b), tx))
  state = train.init_state(params, tx, 0)
  for i in range(steps):
    state, _ = step(state, data.take(ds.sft, np.arange(i * 8, i * 8 + 8) % len(ds.sft['tokens'])))
  return state.params


def test_evaluators_match_the_string_verifier_over_padded_batches(setup):
  """Weighted sums over batches (the last one padded) give exact means: greedy pass@1 as
  `task.verify` reads the decoded completions, the held-out pairs' per-token log-likelihoods."""
  c, ds, model, _ = setup
  params = _trained_params(setup)
  mesh = parallel.make_mesh(1)
  results = {}
  for batch_size in (32, 12):  # 32 rows in one batch; three batches of 12, the last padded
    c.eval.batch_size = batch_size
    evaluation = ex.make_evaluation(model, c, ds)
    assert len(evaluation.rows['w_test']) == -(-32 // batch_size) * batch_size
    results[batch_size] = train.evaluate(jax.jit(evaluation.eval_fn), params,
                                         evaluation.batches(), mesh)
  for split, problems in (('test', ds.test), ('valid', ds.valid)):
    out = np.asarray(ex.generate(model, params, jnp.asarray(task.prompts(problems))))
    ok = [task.verify(p, task.decode(r[task.PROMPT_LEN:])) for p, r in zip(problems, out,
                                                                           strict=True)]
    for got in results.values():
      np.testing.assert_allclose(got[f'{split}_pass1_greedy'], np.mean(ok), atol=1e-6)
  s_pos, n_pos, s_neg, n_neg = ex.pair_logprobs(model, params, ds.test_pairs)
  pos, neg = np.asarray(s_pos / n_pos), np.asarray(s_neg / n_neg)
  for got in results.values():
    np.testing.assert_allclose(got['test_chosen_logp'], pos.mean(), rtol=1e-5)
    np.testing.assert_allclose(got['test_rejected_logp'], neg.mean(), rtol=1e-5)
    np.testing.assert_allclose(got['test_pair_accuracy'], (pos > neg).mean(), atol=1e-6)
  # each row samples with its own keys: the same samples however the rows are batched
  np.testing.assert_allclose(results[32]['test_pass1_sampled'],
                             results[12]['test_pass1_sampled'], atol=1e-6)


def _answer_when_a_is_even(model, params, prompts, keys=None, temperature=0.0,
                           seq_len=task.SEQ_LEN):
  """A stand-in decoder: '=' and the 4-digit answer (zero-padded), off by one when a is odd."""
  d = prompts - 2
  a = d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]
  answer = a * d[:, 4] + d[:, 6] * 100 + d[:, 7] * 10 + d[:, 8] + a % 2
  digits = jnp.stack([answer // 10 ** i % 10 for i in (3, 2, 1, 0)], -1) + 2
  n, p = prompts.shape[0], task.PROMPT_LEN
  out = jnp.zeros((n, task.SEQ_LEN), jnp.int32).at[:, :p].set(prompts)
  return out.at[:, p].set(task.EQUALS).at[:, p + 1:p + 5].set(digits).at[:, p + 5].set(task.EOS)


def test_pass_at_1_counts_the_verified_completions(setup, monkeypatch):
  c, ds, model, params = setup
  monkeypatch.setattr(ex, 'generate', _answer_when_a_is_even)
  c.eval.batch_size = 12
  evaluation = ex.make_evaluation(model, c, ds)
  got = train.evaluate(jax.jit(evaluation.eval_fn), params, evaluation.batches(),
                       parallel.make_mesh(1))
  for split, problems in (('test', ds.test), ('valid', ds.valid)):
    out = np.asarray(_answer_when_a_is_even(None, None, jnp.asarray(task.prompts(problems))))
    ok = [task.verify(p, task.decode(r[task.PROMPT_LEN:])) for p, r in zip(problems, out,
                                                                           strict=True)]
    assert ok == [p.a % 2 == 0 for p in problems]
    np.testing.assert_allclose(got[f'{split}_pass1_greedy'], np.mean(ok), atol=1e-6)
  assert 0 < got['test_pass1_greedy'] < 1
  np.testing.assert_allclose(got['test_pass1_sampled'], got['test_pass1_greedy'], atol=1e-6)


def test_preference_stage_needs_the_sft_workdir(tmp_path):
  c = get_config('redi,smoke')
  with pytest.raises(ConfigError, match='needs --config.init_from'):
    ex.validate(c, 1)
  c.init_from = str(tmp_path)
  with pytest.raises(ConfigError, match='holds no checkpoint'):
    ex.train_and_evaluate(c, str(tmp_path / 'run'))
  s = get_config('smoke')
  s.init_from = str(tmp_path)
  with pytest.raises(ConfigError, match="config.stage='sft'"):
    ex.validate(s, 1)


@pytest.mark.slow
def test_two_stages_end_to_end(tmp_path, monkeypatch):
  """SFT reports its floors; DPO starts from SFT's final parameters with their log-probs as
  its reference, and logs the evaluators during training."""
  sft = get_config('smoke')
  result = ex.train_and_evaluate(sft, str(tmp_path / 'sft'))
  metrics = result.eval_metrics
  assert {'test_pass1_greedy', 'valid_pass1_greedy', 'test_chosen_logp', 'test_pair_accuracy',
          'floor/untrained_test_pass1_greedy', 'floor/majority_answer_test_pass1',
          'data/pref_pairs'} <= set(metrics)
  seen = {}
  fit = train.fit

  def wrapped(config, workdir, **kw):
    seen['params'], seen['batch0'] = kw['params'], kw['train_batch'](0)
    return fit(config, workdir, **kw)

  monkeypatch.setattr(train, 'fit', wrapped)
  dpo = get_config('dpo,smoke')
  dpo.init_from = str(tmp_path / 'sft')
  out = ex.train_and_evaluate(dpo, str(tmp_path / 'dpo'))
  jax.tree.map(np.testing.assert_array_equal, seen['params'],
               jax.device_get(result.state.params))
  model = ex.make_model(dpo)
  ref = ex.pair_logprobs(model, seen['params'], {k: v for k, v in seen['batch0'].items()
                                                 if not k.startswith('ref')})
  np.testing.assert_allclose(seen['batch0']['ref_pos'], ref[0], rtol=1e-5)
  assert not any(k.startswith('floor/') for k in out.eval_metrics)
  evals = [r for r in read_metrics(str(tmp_path / 'dpo')) if 'eval/test_pass1_greedy' in r]
  assert [r['step'] for r in evals] == list(range(dpo.train.eval_every, dpo.train.steps + 1,
                                                  dpo.train.eval_every))
  np.testing.assert_array_equal(checkpoint.restore_params(str(tmp_path / 'dpo'))['params'][
      'embed']['embedding'], jax.device_get(out.state.params)['params']['embed']['embedding'])

