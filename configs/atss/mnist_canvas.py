"""ATSS vs RetinaNet-IoU assignment on MNIST digits composed on 64x64 canvases.

    python -m common.main --config=configs/atss/mnist_canvas.py --workdir=/tmp/atss
    python -m common.main --config=configs/atss/mnist_canvas.py:smoke --workdir=/tmp/atss_smoke
    python -m common.main --config=configs/atss/mnist_canvas.py:iou --workdir=/tmp/atss_iou

The reproduction's arms differ only in `assigner.name` ('atss' | 'iou' | 'fcos') and
`assigner.topk`; COCO AP of the validation set is logged every `train.eval_every` steps. See
papers/atss/README.md and papers/atss/reproduce.py.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.atss.experiment'
  c.seed = 0
  c.num_devices = 1
  c.data = dict(data_dir='', canvas=64, num_train=2000, num_val=200, min_size=8.0,
                max_size=40.0, max_objects=4, seed=0, coco_train='', coco_val='', channels=1)
  # Anchors scaled to the 64 px canvas: strides 4, 8, 16 (P2-P4), one square anchor of 4x the
  # stride per location (the paper: P3-P7, octave base scale 8).
  c.detector = dict(strides=(4, 8, 16), anchor_sizes=(16.0, 32.0, 64.0), aspect_ratios=(1.0,),
                    scales=(1.0,), convention='official', backbone_features=(32, 64, 96),
                    fpn_features=64, num_convs=2)
  c.assigner = dict(name='atss', topk=9, convention='official', fg_iou=0.5, bg_iou=0.4,
                    size_ranges=((0, 16), (16, 32), (32, 1e8)))
  c.loss = dict(reg_weight=2.0)
  c.post = dict(score_threshold=0.05, pre_nms_top_n=200, nms_threshold=0.6, max_detections=100,
                use_centerness=True)
  c.eval_batch_size = 50
  c.eval_area_ranges = (16.0, 32.0)  # COCO's (32, 96) scaled to the canvas
  # COCO AP of the validation set every eval_every steps (the curve stats.convergence judges)
  c.train = dict(steps=300, batch_size=16, log_every=50, eval_every=50, eval_batches=1,
                 checkpoint_every=1000, keep_checkpoints=1)
  c.optim = dict(name='sgd', lr=0.01, momentum=0.9, schedule='cosine', warmup_steps=20,
                 weight_decay=1e-4, grad_clip=0.0, final_lr_fraction=0.0)
  args = set(arg.split(',')) - {''}
  if 'iou' in args:
    c.assigner.name = 'iou'
  if 'fcos' in args:
    c.assigner.name = 'fcos'
  if 'smoke' in args:
    c.data.update(num_train=64, num_val=20)
    c.train.update(steps=4, batch_size=8, log_every=2, eval_every=2, checkpoint_every=2)
    c.eval_batch_size = 10
  if args - {'iou', 'fcos', 'smoke'}:
    raise ValueError(f'unknown config argument {arg!r}: use "", "smoke", "iou", "fcos" or a '
                     'comma-separated mix')
  return c
