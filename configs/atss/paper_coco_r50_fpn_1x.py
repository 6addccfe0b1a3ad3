"""ATSS at the paper's scale: COCO, 800/1333 images, batch 16, 90k SGD steps at lr 0.01.

    python -m common.main --config=configs/atss/paper_coco_r50_fpn_1x.py \
        --config.data.coco_train=/coco/annotations/instances_train2017.json:/coco/train2017 \
        --config.data.coco_val=/coco/annotations/instances_val2017.json:/coco/val2017 \
        --workdir=/ckpt/atss_coco
    python -m common.main --config=configs/atss/paper_coco_r50_fpn_1x.py:tiny --workdir=/tmp/t

The paper's setting (Zhang et al., CVPR 2020, "Bridging the Gap Between Anchor-based and
Anchor-free Detection via Adaptive Training Sample Selection"; official sfzhang15/ATSS on
maskrcnn-benchmark, `atss_R_50_FPN_1x.yaml`): ResNet-50-FPN (ImageNet-pretrained), P3-P7
(strides 8..128), one square anchor of 8 x stride per location, topk 9, 4-conv 256-channel
GroupNorm towers, images 800 (short side) / 1333 (long side), batch 16 on 8 GPUs, SGD momentum
0.9, weight decay 1e-4, lr 0.01 for 90k steps, x0.1 at 60k and 80k, 500 warmup steps.
Headline: COCO minival AP 39.3 (ATSS) vs 37.0 (RetinaNet IoU assignment, same network).

Here: `data.coco_train` / `data.coco_val` ('annotations.json:image_dir') are read by
`common.detection.pipeline.load_data` (`common.data.CocoDetection`; images decoded per batch, so
COCO never sits in memory as an array); without them the experiment trains on MNIST canvases.
Deviations: the backbone is this repo's GroupNorm convnet widened to ResNet-50's stage widths
(no ImageNet-pretrained ResNet-50 here); images are resized to a square `data.canvas` (800)
instead of keeping the aspect ratio; at most `data.max_objects` (100) non-crowd boxes per image
are kept for training; COCO AP is computed on that resized ground truth with the crowd regions
kept as `iscrowd` (COCOeval ignores detections on them) and the small/medium/large bins taken in
canvas pixels; warmup starts at 0, not lr / 3.
`:tiny` keeps every setting but shrinks sizes to one step on a CPU (`tests/test_paper_configs.py`,
and on a COCO json + JPEG folder in `tests/test_paper_data.py`).
"""

import ml_collections

from common.config import config_args
from configs.atss import mnist_canvas


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('tiny',))
  c = mnist_canvas.get_config()
  c.num_devices = -1
  c.data.update(canvas=800, max_objects=100, channels=3)
  c.detector.update(strides=(8, 16, 32, 64, 128), anchor_sizes=(64., 128., 256., 512., 1024.),
                    backbone_features=(256, 512, 1024, 2048), fpn_features=256, num_convs=4)
  c.train.update(steps=90_000, batch_size=16, log_every=100, eval_every=10_000,
                 checkpoint_every=5000, keep_checkpoints=2)
  c.optim.update(name='sgd', lr=0.01, momentum=0.9, schedule='step', warmup_steps=500,
                 weight_decay=1e-4, decay_steps=(60_000, 80_000), decay_factor=0.1)
  c.post.update(pre_nms_top_n=1000)
  c.eval_area_ranges = (32.0, 96.0)
  c.eval_batch_size = 8
  if 'tiny' in args:  # the harness / test size: one step on a small COCO-format folder
    c.num_devices = 1
    c.data.update(canvas=64, max_objects=4, num_train=8, num_val=4)  # MNIST-canvas fallback
    c.detector.update(strides=(8, 16, 32, 64, 128), anchor_sizes=(8., 16., 32., 64., 128.),
                      backbone_features=(8, 8, 8, 8), fpn_features=8, num_convs=1)
    c.train.update(steps=1, batch_size=2, log_every=1, checkpoint_every=1)
    c.post.update(pre_nms_top_n=50)
    c.eval_batch_size = 2
  return c
