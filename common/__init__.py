"""Shared code for the paper reproductions: data, models, training, evaluation."""

import os as _os

# XLA:CPU default (read only by the CPU backend, when it starts): Eigen matmuls and convolutions
# instead of YNNPACK fusions, faster on this code base's steps (measured before/after in
# WORKSPACE.md, Speed). Set the flag in XLA_FLAGS yourself to choose otherwise.
CPU_XLA_FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=',)
_flags = _os.environ.get('XLA_FLAGS', '')
_os.environ['XLA_FLAGS'] = ' '.join(
    [_flags] + [f for f in CPU_XLA_FLAGS if f.split('=')[0] not in _flags]).strip()
