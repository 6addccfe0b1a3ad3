"""Sampling-Free RetinaNet at the paper's scale: COCO, R-50-FPN, batch 16, 90k SGD steps, lr 0.01.

    python -m common.main --config=configs/sampling_free/paper_coco_r50_fpn_1x.py \
        --config.data.coco_train=/coco/annotations/instances_train2017.json:/coco/train2017 \
        --config.data.coco_val=/coco/annotations/instances_val2017.json:/coco/val2017 \
        --workdir=/ckpt/sf_coco
    python -m common.main --config=configs/sampling_free/paper_coco_r50_fpn_1x.py:focal ...
    python -m common.main --config=configs/sampling_free/paper_coco_r50_fpn_1x.py:tiny \
        --workdir=/tmp/sf_tiny

The paper's setting (Chen et al., IEEE TIP 2021, "Is Heuristic Sampling Necessary in Training
Deep Object Detectors?"; official ChenJoya/sampling-free on maskrcnn-benchmark, RetinaNet
R-50-FPN 1x): ResNet-50-FPN (ImageNet-pretrained), P3-P7 (strides 8..128), 9 anchors per
location (sizes 4 x stride, 3 octave scales x ratios 0.5/1/2), IoU matcher 0.5 / 0.4, BCE over
all anchors with the optimal bias (the foreground prior counted on the training set), guided
loss scaling and the adaptive test threshold prior x (C + 1); images 800 / 1333, batch 16 on 8
GPUs, SGD momentum 0.9, weight decay 1e-4, lr 0.01 for 90k steps, x0.1 at 60k and 80k, 500
warmup steps. Headline: COCO AP, RetinaNet R-50 focal loss 36.4 -> Sampling-Free 36.8.
`:focal` is the focal-loss baseline (prior 0.01, threshold 0.05), `:bce` plain BCE (zero bias).

Here: `data.coco_train` / `data.coco_val` ('annotations.json:image_dir') are read through the
same `common.detection.pipeline.load_data` as ATSS (`common.data.CocoDetection`, images decoded
per batch); without them the experiment trains on MNIST canvases. The prior is counted on
`prior_images` (10k) training images drawn with a fixed seed, not the whole set (0 = all; the
matcher runs image by image on the host). Deviations as in
`configs/atss/paper_coco_r50_fpn_1x.py`: GroupNorm convnet at ResNet-50's stage widths (not an
ImageNet-pretrained ResNet-50), square `data.canvas` (800) resize, at most `data.max_objects`
(100) non-crowd boxes per image, COCO AP on that resized ground truth, warmup from 0; NMS 0.55
as in `configs/sampling_free/mnist_canvas.py`. `:tiny` keeps every setting but shrinks sizes to
one step on a CPU (`tests/test_paper_configs.py`, and on a COCO folder in
`tests/test_paper_data.py`).
"""

import ml_collections

from common.config import config_args
from configs.atss import paper_coco_r50_fpn_1x as atss_paper
from configs.sampling_free import mnist_canvas


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('tiny', 'focal', 'bce'))
  c = atss_paper.get_config('tiny' if 'tiny' in args else '')
  retina = mnist_canvas.get_config()
  c.experiment = retina.experiment
  c.arm = next((a for a in ('focal', 'bce') if a in args), 'sampling_free')
  c.prior_images = 10_000
  del c['assigner'], c['loss']  # ATSS-only settings
  c.detector.update(aspect_ratios=retina.detector.aspect_ratios, scales=retina.detector.scales,
                    anchor_sizes=(32., 64., 128., 256., 512.))
  c.post.update(nms_threshold=retina.post.nms_threshold, use_centerness=False)
  if 'tiny' in args:
    c.prior_images = 0
    c.detector.anchor_sizes = (8., 16., 32., 64., 128.)
  return c
