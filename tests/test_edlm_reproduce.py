"""EDLM reproduction: the stages as config overrides wired by `sweep.After`, one quick arm
through the sweep == the same command through `python -m common.main` (bit-identical), and
the whole quick pipeline for one seed through the sweep."""

import dataclasses

import numpy as np
import pytest

from common import sweep
from papers.edlm import reproduce
from tests.testutil import assert_sweep_run_equals_its_command


def test_arms_are_the_pipeline_stages():
  arms = {a.name: a for a in reproduce.arms(quick=False)}
  assert list(arms) == ['denoiser', 'ar_energy', 'nce_energy', 'judge', 'eval']
  assert arms['nce_energy'].overrides == {'runs.denoiser': sweep.After('denoiser')}
  assert arms['eval'].overrides == {f'runs.{s}': sweep.After(s) for s in reproduce.STAGES}
  kinds = {name: sweep.load_config(a.config).model_kind for name, a in arms.items()}
  assert kinds == {'denoiser': 'mdlm', 'ar_energy': 'ar', 'nce_energy': 'nce', 'judge': 'ar',
                   'eval': 'sample'}


def _one_device(arm: sweep.Arm) -> sweep.Arm:
  return dataclasses.replace(arm, overrides={**arm.overrides, 'num_devices': 1})


@pytest.mark.slow
def test_quick_arm_sweep_equals_common_main(tmp_path):
  run = assert_sweep_run_equals_its_command(_one_device(reproduce.arms(quick=True)[0]), 2,
                                            tmp_path)
  assert np.isfinite(run.metrics['nelbo_bits_per_char'])


@pytest.mark.slow
def test_quick_pipeline_one_seed(tmp_path):
  arms = [_one_device(a) for a in reproduce.arms(quick=True)]
  arms[-1] = dataclasses.replace(arms[-1], overrides={**arms[-1].overrides,
                                                      'sample.steps': (2,)})
  runs = sweep.run_sweep(arms, [0], str(tmp_path))
  metrics = runs['eval'][0].metrics
  for name in ('mdlm', 'ar_k4', 'nce_k4', 'ar_k2_speed'):
    assert metrics[f'gen_ppl/{name}/S2'] == pytest.approx(
        np.exp(metrics[f'judge_nll/{name}/S2']))
    assert metrics[f'perf/sample_seconds/{name}/S2'] > 0
    assert 0 < metrics[f'distinct4/{name}/S2'] <= 1
  # S = 2: two steps, denoiser at the start, after the first step and at the end
  assert metrics['forward_passes/mdlm/S2'] == 3
  assert metrics['forward_passes/ar_k4/S2'] == 3 + 4 * 2  # both steps in the window [0, 1]
  for name in ('ar_k1', 'ar_k2', 'ar_k8', 'ar_k4_nocarry', 'ar_k4_plusE', 'nce_k4_plusE'):
    assert np.isfinite(metrics[f'ngram_nll/{name}/S4'])
  for key in ('judge_nll/uniform_text', 'ngram_nll/unigram_text', 'likelihood_bits/mdlm',
              'likelihood_bits/edlm_ar', 'likelihood_bits/ar_exact',
              'likelihood_bits/edlm_nce_low', 'likelihood_bits/edlm_nce_high'):
    assert np.isfinite(metrics[key]) and metrics[key] > 0
  assert metrics['likelihood_bits/edlm_nce_low'] <= metrics['likelihood_bits/edlm_nce_high']
