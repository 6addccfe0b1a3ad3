"""Sampling-Free vs focal loss vs plain BCE on MNIST digits composed on 64x64 canvases.

    python -m common.main --config=configs/sampling_free/mnist_canvas.py --workdir=/tmp/sf
    python -m common.main --config=configs/sampling_free/mnist_canvas.py:smoke --workdir=/tmp/sf_s
    python -m common.main --config=configs/sampling_free/mnist_canvas.py:focal --workdir=/tmp/sf_f

`arm` is 'sampling_free' (BCE + optimal bias + guided loss scaling + adaptive threshold),
'focal' (focal loss, prior 0.01, threshold 0.05) or 'bce' (plain BCE, zero bias, threshold
0.05). COCO AP of the validation set is logged every `train.eval_every` steps; see
papers/sampling_free/README.md.
"""

import ml_collections

ARMS = ('sampling_free', 'focal', 'bce')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(arg.split(',')) - {''}
  if args - {'smoke', *ARMS}:
    raise ValueError(f'unknown config argument {arg!r}: use "", "smoke", "focal", "bce" or a '
                     'comma-separated mix')
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.sampling_free.experiment'
  c.arm = next((a for a in ARMS if a in args), 'sampling_free')
  c.seed = 0
  c.num_devices = 1
  c.prior_images = 0  # images the foreground prior is counted on (0 = all training images)
  c.data = dict(data_dir='', canvas=64, num_train=2000, num_val=200, min_size=8.0,
                max_size=40.0, max_objects=4, seed=0, coco_train='', coco_val='', channels=1)
  # RetinaNet: 9 anchors per location (3 octave scales x 3 aspect ratios) of 2 x the stride at
  # strides 4, 8, 16, scaled to the 64 px canvas (the paper: P3-P7, 4 x the stride).
  c.detector = dict(strides=(4, 8, 16), anchor_sizes=(8.0, 16.0, 32.0),
                    aspect_ratios=(0.5, 1.0, 2.0), scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
                    convention='official', backbone_features=(32, 64, 96), fpn_features=64,
                    num_convs=2)
  c.matcher = dict(fg_iou=0.5, bg_iou=0.4)  # RetinaNet's IoU matcher, low-quality matches on
  c.post = dict(score_threshold=0.05, pre_nms_top_n=200, nms_threshold=0.55, max_detections=100,
                use_centerness=False)
  c.eval_batch_size = 50
  c.eval_area_ranges = (16.0, 32.0)  # COCO's (32, 96) scaled to the canvas
  # COCO AP of the validation set every eval_every steps (the curve stats.convergence judges)
  c.train = dict(steps=400, batch_size=16, log_every=50, eval_every=50, eval_batches=1,
                 checkpoint_every=1000, keep_checkpoints=1)
  c.optim = dict(name='sgd', lr=0.01, momentum=0.9, schedule='cosine', warmup_steps=20,
                 weight_decay=1e-4, grad_clip=0.0, final_lr_fraction=0.0)
  if 'smoke' in args:
    c.data.update(num_train=64, num_val=20)
    c.train.update(steps=4, batch_size=8, log_every=2, eval_every=2, checkpoint_every=2)
    c.eval_batch_size = 10
  return c
