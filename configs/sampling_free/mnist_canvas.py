"""Sampling-Free vs focal loss vs plain BCE on MNIST digits composed on 64x64 canvases.

    python -m common.main --config=configs/sampling_free/mnist_backbone.py --workdir=/tmp/bb
    python -m common.main --config=configs/sampling_free/mnist_canvas.py \
        --config.detector.backbone_init=/tmp/bb --workdir=/tmp/sf
    python -m common.main --config=configs/sampling_free/mnist_canvas.py:focal --workdir=/tmp/f
    python -m common.main --config=configs/sampling_free/mnist_canvas.py:smoke --workdir=/tmp/s

The method is `config.method` (loss, bias, guided_scaling, threshold); the arguments set it:
`sampling_free` (the default: BCE over all anchors, optimal bias, guided loss scaling, adaptive
threshold prior x (C + 1), NMS 0.55, as the official code), `focal` (RetinaNet's official
settings: focal loss, prior 0.01, threshold 0.05, NMS 0.4), `bce` (plain BCE, zero bias,
threshold 0.05), `bce_bias` (BCE with the optimal bias only, threshold 0.05); `pilot` (constant
lr for PILOT_STEPS, PILOT_EVALS evaluations on the pilot's own validation canvases), `smoke`.
20k training / 1k validation canvases are generated once and cached; the backbone starts from
a digit classifier (`backbone_init`, configs/sampling_free/mnist_backbone.py). Main runs train
STEPS steps with the COCO 1x schedule's shape (`common.detection.schedule.one_x`); the
reproduction replaces STEPS by the pilot's plateau step. See papers/sampling_free/README.md.
"""

import ml_collections

from common.config import config_args
from common.detection import schedule

STEPS = 3000  # main-run length without a pilot (papers/sampling_free/reproduce.py sets it)
PILOT_STEPS, PILOT_EVALS = 24000, 40
PILOT_VAL_SEED = 2_000_003  # the pilot's validation canvases: other canvases than the test's
# loss, bias ('optimal': the counted prior; 'prior': prior_prob; 'zero'), guided loss scaling,
# test threshold ('adaptive': prior x (C + 1); 'fixed': fixed_threshold), NMS threshold
METHODS = {
    'sampling_free': dict(loss='bce', bias='optimal', guided_scaling=True, threshold='adaptive',
                          nms=0.55),
    'focal': dict(loss='focal', bias='prior', guided_scaling=False, threshold='fixed', nms=0.4),
    'bce': dict(loss='bce', bias='zero', guided_scaling=False, threshold='fixed', nms=0.55),
    'bce_bias': dict(loss='bce', bias='optimal', guided_scaling=False, threshold='fixed',
                     nms=0.55),
}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('smoke', 'pilot', *METHODS))
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.sampling_free.experiment'
  c.seed = 0
  c.num_devices = 1
  c.prior_images = 0  # images the foreground prior is counted on (0 = all training images)
  method = dict(METHODS[next((a for a in METHODS if a in args), 'sampling_free')])
  nms = method.pop('nms')
  c.method = dict(method, prior_prob=0.01, fixed_threshold=0.05)
  c.data = dict(data_dir='', canvas=64, num_train=20_000, num_val=1000, min_size=8.0,
                max_size=40.0, max_objects=4, seed=0, val_seed=1_000_003, cache_dir='',
                coco_train='', coco_val='', channels=1)
  # RetinaNet: 9 anchors per location (3 octave scales x 3 aspect ratios) of 2 x the stride at
  # strides 4, 8, 16, scaled to the 64 px canvas (the paper: P3-P7, 4 x the stride).
  c.detector = dict(strides=(4, 8, 16), anchor_sizes=(8.0, 16.0, 32.0),
                    aspect_ratios=(0.5, 1.0, 2.0), scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
                    convention='official', backbone_features=(32, 64, 96), fpn_features=32,
                    num_convs=2, backbone_init='')
  c.matcher = dict(fg_iou=0.5, bg_iou=0.4)  # RetinaNet's IoU matcher, low-quality matches on
  c.loss = dict(beta=0.11, reg_norm=4.0)  # smooth-L1 beta; L_reg / (reg_norm x num_pos)
  c.post = dict(pre_nms_top_n=200, nms_threshold=nms, max_detections=100, use_centerness=False)
  c.eval_batch_size = 100
  c.eval_area_ranges = (16.0, 32.0)  # COCO's (32, 96) scaled to the canvas
  c.train = dict(batch_size=16, log_every=100, eval_batches=1, keep_checkpoints=1,
                 steps_per_dispatch=1)
  c.optim = dict(name='sgd', lr=0.01, momentum=0.9, warmup_steps=100, weight_decay=1e-4,
                 grad_clip=0.0, decay_factor=0.1)
  c.update_from_flattened_dict(schedule.one_x(STEPS))
  if 'pilot' in args:
    c.data.val_seed = PILOT_VAL_SEED
    c.update_from_flattened_dict(schedule.constant(PILOT_STEPS, PILOT_EVALS))
  if 'smoke' in args:
    c.data.update(num_train=64, num_val=20)
    c.train.update(steps=4, batch_size=8, log_every=2, eval_every=2, checkpoint_every=2)
    c.optim.warmup_steps = 1
    c.eval_batch_size = 10
  return c
