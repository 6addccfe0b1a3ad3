"""The ATSS detector's backbone pretrained as a digit classifier (the ImageNet-init analogue).

    python -m common.main --config=configs/atss/mnist_backbone.py --workdir=/tmp/backbone
    python -m common.main --config=configs/atss/mnist_backbone.py:smoke --workdir=/tmp/bb_smoke

`common.detection.pretrain`: `configs/atss/mnist_canvas.py`'s backbone + a linear layer, trained
on the 5000 digits of the training canvases (validation accuracy on the 5000 digits of the
validation canvases). A detector run loads it with `--config.detector.backbone_init=<workdir>`.
"""

import ml_collections

from common.config import config_args
from configs.atss import mnist_canvas


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('smoke',))
  c = ml_collections.ConfigDict()
  c.experiment = 'common.detection.pretrain'
  c.seed = 0
  c.num_devices = 1
  c.data = dict(data_dir='', num_shapes=5000)  # num_shapes: without data, procedural shapes
  c.detector = dict(backbone_features=mnist_canvas.get_config().detector.backbone_features)
  c.train = dict(steps=1000, batch_size=64, log_every=100, eval_every=500, eval_batches=1,
                 checkpoint_every=1000, keep_checkpoints=1, steps_per_dispatch=1)
  c.optim = dict(name='adam', lr=2e-3, schedule='cosine', warmup_steps=50, weight_decay=0.0,
                 grad_clip=0.0, final_lr_fraction=0.0)
  if 'smoke' in args:
    c.data.num_shapes = 100
    c.train.update(steps=4, batch_size=16, log_every=2, eval_every=2, checkpoint_every=2)
    c.optim.warmup_steps = 1
  return c
