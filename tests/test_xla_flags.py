"""`common.add_xla_flags` and the tests' subprocess flags (`testutil.xla_flags`)."""

import os

import common
from tests.testutil import xla_flags


def test_add_xla_flags_keeps_what_is_set_and_appends_the_rest(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_backend_optimization_level=2')
  common.add_xla_flags('--xla_backend_optimization_level=0', '--xla_cpu_use_fusion_emitters=false')
  assert os.environ['XLA_FLAGS'].split() == ['--xla_backend_optimization_level=2',
                                                    '--xla_cpu_use_fusion_emitters=false']
  monkeypatch.delenv('XLA_FLAGS')
  common.add_xla_flags('--a=1')
  assert os.environ['XLA_FLAGS'] == '--a=1'


def test_subprocess_flags_set_the_device_count_and_drop_fast_compiles_on_request(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', ' '.join(['--xla_force_host_platform_device_count=8', '--x=1',
                                            *common.FAST_COMPILE_XLA_FLAGS]))
  assert xla_flags(2).split() == ['--xla_force_host_platform_device_count=2', '--x=1',
                                  *common.FAST_COMPILE_XLA_FLAGS]
  assert xla_flags(4, fast_compile=False).split() == [
      '--xla_force_host_platform_device_count=4', '--x=1']
