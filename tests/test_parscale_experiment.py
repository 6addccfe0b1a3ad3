"""ParScale experiment: data-parallel equality, the recycling stage (backbone from another run's
checkpoint, frozen or not, data stream continued), end to end."""

import jax
import numpy as np
import pytest

from common import checkpoint, data, lm
from common.quickstart import load_config
from papers.parscale import experiment as ex
from tests.testutil import ROOT, latest_state


def smoke_config(**overrides):
  config = load_config(ROOT / 'configs' / 'parscale' / 'char_lm.py', 'smoke')
  config.num_devices = 1
  for key, value in overrides.items():
    section, leaf = key.split('.')
    config[section][leaf] = value
  return config


def test_eight_devices_match_one(tmp_path):
  assert jax.device_count() == 8
  results = {}
  for n in (1, 8):
    config = smoke_config()
    config.num_devices = n
    results[n] = ex.train_and_evaluate(config, str(tmp_path / str(n)))
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)  # noqa: E731
  jax.tree.map(close, jax.device_get(results[1].state.params),
               jax.device_get(results[8].state.params))
  close(results[1].eval_metrics['loss'], results[8].eval_metrics['loss'])
  assert 'prefix_k_0' in results[1].state.params['params']


def test_validate_rejects_bad_settings():
  with pytest.raises(Exception, match='eps'):
    ex.validate(smoke_config(**{'parscale.eps': 1.0}), 1)
  with pytest.raises(Exception, match='freeze_backbone'):
    ex.validate(smoke_config(**{'parscale.freeze_backbone': True}), 1)


def test_non_embedding_params_is_a_final_metric(tmp_path):
  result = ex.train_and_evaluate(smoke_config(), str(tmp_path))
  params = result.state.params['params']
  embed = params['backbone']['embed']['embedding'].size
  total = sum(x.size for x in jax.tree.leaves(params))
  assert result.eval_metrics['non_embedding_params'] == total - embed


@pytest.fixture(scope='module')
def stage1(tmp_path_factory):
  """A trained P = 1 run (the first stage of recycling)."""
  workdir = tmp_path_factory.mktemp('stage1')
  ex.train_and_evaluate(smoke_config(**{'parscale.num_streams': 1}), str(workdir))
  return str(workdir), latest_state(workdir)[0]['params']['params']['backbone']


@pytest.mark.parametrize('freeze', [False, True])
def test_recycling_starts_from_the_p1_backbone(tmp_path, stage1, freeze):
  workdir, trained = stage1
  config = smoke_config(**{'parscale.num_streams': 2, 'parscale.init_from': workdir,
                           'parscale.freeze_backbone': freeze, 'train.steps': 2})
  vocab = lm.load_corpus(config.data.data_dir).vocab_size
  start = jax.device_get(ex.make_model(config, vocab).init(
      jax.random.key(config.seed), np.zeros((1, config.data.seq_len), np.int32)))['params']
  result = ex.train_and_evaluate(config, str(tmp_path))
  after = jax.device_get(result.state.params)['params']
  same = lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # noqa: E731
  if freeze:  # PEFT: the backbone is exactly stage 1's, only prefixes and aggregator train
    jax.tree.map(same, after['backbone'], trained)
  else:
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(after['backbone']), jax.tree.leaves(trained), strict=True))
  assert np.abs(after['prefix_k_0'] - start['prefix_k_0']).max() > 0
  assert np.abs(after['aggregator']['w1'] - start['aggregator']['w1']).max() > 0


def test_first_batch_continues_the_data_stream(tmp_path, monkeypatch):
  seen = []
  real = data.take
  monkeypatch.setattr(data, 'take', lambda arrays, idx, *a, **k: (
      seen.append(np.asarray(idx).copy()), real(arrays, idx, *a, **k))[1])
  config = smoke_config(**{'parscale.num_streams': 1, 'data.first_batch': 3,
                           'train.steps': 2, 'train.eval_every': 0})
  ex.train_and_evaluate(config, str(tmp_path))
  windows = lm.windows(lm.load_corpus(config.data.data_dir).train, config.data.seq_len)
  order = data.batch_indices(len(windows), config.train.batch_size, config.seed)
  train_rows = [s for s in seen if len(s) == config.train.batch_size][:2]
  np.testing.assert_array_equal(train_rows[0], order[3])
  np.testing.assert_array_equal(train_rows[1], order[4])


def test_snippet_prefixes_nest_across_p_and_match_the_slots_control(stage1):
  """At one seed P = 2's streams are P = 4's first two, and P = 1 with 4 x m slots holds P = 4's
  slots stream after stream (the same prefix values in one stream)."""
  workdir, _ = stage1
  config = smoke_config(**{'parscale.init_from': workdir})
  corpus = lm.load_corpus(config.data.data_dir)
  backbone = {'params': {'backbone': checkpoint.restore_params(workdir)['params']['backbone']}}

  def prefixes(p, m, at_p1=False):
    config.parscale.update(num_streams=p, num_prefix=m, prefix_at_p1=at_p1)
    return ex.snippet_prefixes(ex.make_model(config, corpus.vocab_size), backbone, corpus.train,
                               2, config.seed)

  four, two, one = prefixes(4, 2), prefixes(2, 2), prefixes(1, 8, True)
  assert four['prefix_k_0'].shape == (4, 2, 2, 8)  # [P, kv_heads, m, head_dim]
  np.testing.assert_array_equal(two['prefix_v_0'], four['prefix_v_0'][:2])
  for name, x in four.items():
    np.testing.assert_array_equal(one[name][0], x.transpose(1, 0, 2, 3).reshape(2, 8, 8))
  assert np.abs(four['prefix_k_0'][0] - four['prefix_k_0'][1]).max() > 1e-3  # streams differ


def test_frozen_stage_with_snippets_logs_stream_statistics(tmp_path, stage1):
  workdir, trained = stage1
  config = smoke_config(**{'parscale.num_streams': 2, 'parscale.init_from': workdir,
                           'parscale.freeze_backbone': True, 'parscale.stream_init': 'snippets',
                           'parscale.zero_aggregator_out': True, 'train.steps': 2})
  result = ex.train_and_evaluate(config, str(tmp_path))
  m = result.eval_metrics
  np.testing.assert_allclose(m['start_max_stream_weight'], 0.5, rtol=1e-6)  # equal weights
  assert m['start_stream_diversity'] > 0 and m['stream_loss_best'] >= m['loss'] - 0.05
  streams = {k: v for k, v in result.state.params['params'].items() if k != 'backbone'}
  assert m['trainable_params'] == sum(x.size for x in jax.tree.leaves(streams))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(
      result.state.params['params']['backbone']), trained)


def test_snippet_settings_are_checked():
  with pytest.raises(Exception, match='needs a trained backbone'):
    ex.validate(smoke_config(**{'parscale.stream_init': 'snippets'}), 1)
  with pytest.raises(Exception, match='must divide'):
    ex.validate(smoke_config(**{'parscale.stream_init': 'snippets', 'parscale.init_from': '/x',
                                'parscale.snippet_len': 3}), 1)
  with pytest.raises(Exception, match='stream_init'):
    ex.validate(smoke_config(**{'parscale.stream_init': 'zeros'}), 1)
