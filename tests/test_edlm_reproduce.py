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
  for method in ('mdlm', 'edlm_ar', 'edlm_nce'):
    assert metrics[f'gen_ppl/{method}/S2'] == pytest.approx(
        np.exp(metrics[f'judge_nll/{method}/S2']))
    assert metrics[f'perf/sample_seconds/{method}/S2'] > 0
  for key in ('gen_ppl/uniform_text', 'gen_ppl/unigram_text', 'likelihood_bits/mdlm',
              'likelihood_bits/edlm_ar', 'likelihood_bits/ar_exact'):
    assert np.isfinite(metrics[key]) and metrics[key] > 0
