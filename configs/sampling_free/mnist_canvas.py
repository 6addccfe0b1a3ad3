"""Sampling-Free vs focal loss vs plain BCE on MNIST digits composed on 64x64 canvases.

    python -m common.main --config=configs/sampling_free/mnist_canvas.py --workdir=/tmp/sf
    python -m common.main --config=configs/sampling_free/mnist_canvas.py:smoke --workdir=/tmp/sf_s
    python -m common.main --config=configs/sampling_free/mnist_canvas.py:focal --workdir=/tmp/sf_f

`arm` is 'sampling_free' | 'focal' | 'bce'; see papers/sampling_free/README.md.
"""

import ml_collections

from configs.atss import mnist_canvas


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(arg.split(',')) - {''}
  c = mnist_canvas.get_config('smoke' if 'smoke' in args else '')
  c.experiment = 'papers.sampling_free.experiment'
  c.arm = 'sampling_free'
  # RetinaNet: 9 anchors per location (3 octave scales x 3 aspect ratios), IoU 0.5 / 0.4.
  c.detector.update(aspect_ratios=(0.5, 1.0, 2.0), scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
                    anchor_sizes=(8.0, 16.0, 32.0))
  c.post.update(nms_threshold=0.55, use_centerness=False)
  for a in ('focal', 'bce'):
    if a in args:
      c.arm = a
  if args - {'smoke', 'focal', 'bce'}:
    raise ValueError(f'unknown config argument {arg!r}: use "", "smoke", "focal", "bce"')
  return c
