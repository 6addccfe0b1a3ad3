"""ATSS at the paper's scale: COCO, 800/1333 images, batch 16, 90k SGD steps at lr 0.01.

    python -m common.main --config=configs/atss/coco_r50_fpn_1x.py \
        --config.data.coco_train=/coco/annotations/instances_train2017.json:/coco/train2017 \
        --config.data.coco_val=/coco/annotations/instances_val2017.json:/coco/val2017 \
        --workdir=/tmp/atss_coco

Expected (paper, R-50 1x): 39.3 AP. Deviations: the backbone is this repo's GroupNorm convnet
widened to ResNet-50's stage widths (no ImageNet-pretrained ResNet-50 here), images are resized
to a square `data.canvas` (800) instead of keeping the aspect ratio, and the head towers have 4
convs with 256 channels as in the paper.
"""

import ml_collections

from configs.atss import mnist_canvas


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = mnist_canvas.get_config()
  c.num_devices = -1
  c.data.update(canvas=800, max_objects=100, channels=3)
  c.detector.update(strides=(8, 16, 32, 64, 128), anchor_sizes=(64., 128., 256., 512., 1024.),
                    backbone_features=(256, 512, 1024, 2048), fpn_features=256, num_convs=4)
  c.train.update(steps=90_000, batch_size=16, log_every=100, checkpoint_every=5000,
                 keep_checkpoints=2)
  c.optim.update(name='sgd', lr=0.01, momentum=0.9, schedule='constant', warmup_steps=500,
                 weight_decay=1e-4)
  c.post.update(pre_nms_top_n=1000)
  c.eval_area_ranges = (32.0, 96.0)
  c.eval_batch_size = 8
  if arg == 'tiny':  # the harness / test size: one step on a small COCO-format folder
    c.data.update(canvas=64, max_objects=4)
    c.detector.update(strides=(8, 16, 32, 64, 128), anchor_sizes=(8., 16., 32., 64., 128.),
                      backbone_features=(8, 8, 8, 8), fpn_features=8, num_convs=1)
    c.train.update(steps=1, batch_size=2, log_every=1, checkpoint_every=1)
    c.post.update(pre_nms_top_n=50)
    c.eval_batch_size = 2
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}: use "" or "tiny"')
  return c
