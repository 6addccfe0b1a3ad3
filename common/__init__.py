"""Shared code for the paper reproductions: data, models, training, evaluation."""

import os as _os


def add_xla_flags(*flags: str) -> None:
  """Appends `flags` ('--name=value') to $XLA_FLAGS, each unless its name is already there.
  XLA reads them when the backend starts (the first computation), so call this before it."""
  given = _os.environ.get('XLA_FLAGS', '')
  _os.environ['XLA_FLAGS'] = ' '.join(
      [given] + [f for f in flags if f.split('=')[0] not in given]).strip()


# XLA:CPU default (read only by the CPU backend): Eigen matmuls and convolutions instead of
# YNNPACK fusions, faster on this code base's steps (measured before/after in WORKSPACE.md,
# Speed). The entry points (`common.main`, `common.sweep`, `benchmarks.run`) add it; importing
# `common` changes nothing. Set the flag in XLA_FLAGS yourself to choose otherwise.
CPU_XLA_FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=',)

# Smoke runs (the tests, `benchmarks.run --quick`): every program, eager ops and inits included,
# compiled without LLVM's optimisation, XLA:CPU's fusion emitters or parallel codegen (on a few
# cores one compile thread is faster). Short runs are compile-bound and much faster with these;
# steps run slower, so never for measurements or reproductions. `add_xla_flags(*these)`.
FAST_COMPILE_XLA_FLAGS = ('--xla_backend_optimization_level=0',
                          '--xla_cpu_use_fusion_emitters=false',
                          '--xla_llvm_disable_expensive_passes=true',
                          '--xla_cpu_parallel_codegen_split_count=1')
