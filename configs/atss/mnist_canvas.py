"""ATSS vs RetinaNet-IoU vs FCOS assignment on MNIST digits composed on 64x64 canvases.

    python -m common.main --config=configs/atss/mnist_backbone.py --workdir=/tmp/backbone
    python -m common.main --config=configs/atss/mnist_canvas.py \
        --config.detector.backbone_init=/tmp/backbone --workdir=/tmp/atss
    python -m common.main --config=configs/atss/mnist_canvas.py:smoke --workdir=/tmp/atss_smoke
    python -m common.main --config=configs/atss/mnist_canvas.py:iou --workdir=/tmp/atss_iou

Arguments (comma-separated): `iou` (RetinaNet's IoU matcher with the ATSS code's in-gt step),
`fcos` (FCOS spatial + scale assignment), `anchors9` (9 anchors per location, RetinaNet's 3
scales x 3 ratios), `pilot` (constant lr for PILOT_STEPS, evaluated PILOT_EVALS times on the
pilot's own validation canvases), `smoke` (seconds). 20k training / 1k validation canvases are
generated once and cached (`common.detection.pipeline.cached_canvases`). The main runs train
STEPS steps with the COCO 1x schedule's shape (`common.detection.schedule.one_x`); the
reproduction replaces STEPS by the pilot's plateau step. COCO AP of the validation set is logged
every `train.eval_every` steps. See papers/atss/README.md and papers/atss/reproduce.py.
"""

import ml_collections

from common.config import config_args
from common.detection import schedule

STEPS = 3000  # main-run length without a pilot (papers/atss/reproduce.py sets the pilot's)
PILOT_STEPS, PILOT_EVALS = 24000, 40
PILOT_VAL_SEED = 2_000_003  # the pilot's validation canvases: other canvases than the test's
# RetinaNet's 9 anchors per location: 3 octave scales x ratios 0.5 / 1 / 2
ANCHORS9 = dict(aspect_ratios=(0.5, 1.0, 2.0), scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)))


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('smoke', 'iou', 'fcos', 'anchors9', 'pilot'))
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.atss.experiment'
  c.seed = 0
  c.num_devices = 1
  c.data = dict(data_dir='', canvas=64, num_train=20_000, num_val=1000, min_size=8.0,
                max_size=40.0, max_objects=4, seed=0, val_seed=1_000_003, cache_dir='',
                coco_train='', coco_val='', channels=1)
  # Anchors scaled to the 64 px canvas: strides 4, 8, 16 (P2-P4), one square anchor of 4x the
  # stride per location (the paper: P3-P7, octave base scale 8). The backbone starts from
  # a digit classifier (`backbone_init`, configs/atss/mnist_backbone.py), as the paper's from
  # an ImageNet ResNet-50.
  c.detector = dict(strides=(4, 8, 16), anchor_sizes=(16.0, 32.0, 64.0), aspect_ratios=(1.0,),
                    scales=(1.0,), convention='official', backbone_features=(32, 64, 96),
                    fpn_features=32, num_convs=2, backbone_init='')
  c.assigner = dict(name='atss', topk=9, convention='official', fg_iou=0.5, bg_iou=0.4,
                    in_gt=True, size_ranges=((0, 16), (16, 32), (32, 1e8)))
  c.loss = dict(reg_weight=2.0)
  c.post = dict(score_threshold=0.05, pre_nms_top_n=200, nms_threshold=0.6, max_detections=100,
                use_centerness=True)
  c.eval_batch_size = 100
  c.eval_area_ranges = (16.0, 32.0)  # COCO's (32, 96) scaled to the canvas
  c.train = dict(batch_size=16, log_every=100, eval_batches=1, keep_checkpoints=1,
                 steps_per_dispatch=1)
  c.optim = dict(name='sgd', lr=0.01, momentum=0.9, warmup_steps=100, weight_decay=1e-4,
                 grad_clip=0.0, decay_factor=0.1)
  c.update_from_flattened_dict(schedule.one_x(STEPS))
  if 'iou' in args:
    c.assigner.name = 'iou'
  if 'fcos' in args:
    c.assigner.name = 'fcos'
  if 'anchors9' in args:
    c.detector.update(ANCHORS9)
  if 'pilot' in args:
    c.data.val_seed = PILOT_VAL_SEED
    c.update_from_flattened_dict(schedule.constant(PILOT_STEPS, PILOT_EVALS))
  if 'smoke' in args:
    c.data.update(num_train=64, num_val=20)
    c.train.update(steps=4, batch_size=8, log_every=2, eval_every=2, checkpoint_every=2)
    c.optim.warmup_steps = 1
    c.eval_batch_size = 10
  return c
