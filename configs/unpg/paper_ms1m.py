"""UNPG at paper scale: ArcFace + UNPG, s = 64, m = 0.5, wisk 1.5, batch 512, SGD 0.1, 20 epochs.

    python -m common.main --config=configs/unpg/paper_ms1m.py \
        --config.data.image_folder=/data/ms1mv2_112x112 --workdir=/ckpt/unpg_arcface
    python -m common.main --config=configs/unpg/paper_ms1m.py:cosface \
        --config.data.image_folder=/data/ms1mv2_112x112 --workdir=/ckpt/unpg_cos
    python -m common.main --config=configs/unpg/paper_ms1m.py:nounpg \
        --config.data.image_folder=/data/ms1mv2_112x112 --workdir=/ckpt/arcface
    python -m common.main --config=configs/unpg/paper_ms1m.py:tiny --workdir=/tmp/unpg_tiny

`data.image_folder` is an aligned-face tree `root/<identity>/<image>` (MS1MV2 is distributed as
an MXNet RecordIO file: unpack it to such a folder first). Verification pairs come from the
last `data.held_out_identities` (100) identity folders, which are left out of training, or
from every identity of `data.eval_image_folder` (e.g. LFW's `lfw/<name>/<image>`) when set.

The paper's setting (Jung et al., BMVC 2022; official Jung-Jun-Uk/UNPG `recognition/train.py`,
`data/hyp.yaml`, `data/head.zoo.yaml`, `data/face.yaml`): iResNet-100 embedder (512-d) on
MS1MV2 (5.8M aligned 112x112 faces of 85,742 identities), ArcFace or CosFace head with s = 64 and
m = 0.5 (both heads, the official zoo), UNPG wisk r = 1.5, batch 512, SGD lr 0.1, momentum 0.9,
weight decay 5e-4, cosine schedule with 3 warmup epochs, 20 epochs (about 227k steps at 11,372
steps per epoch), mixed precision (torch AMP). Evaluation: LFW 10-fold accuracy and IJB-B/C
TAR@FAR. Headline: IJB-C TAR@FAR=1e-5, ArcFace 93.93 -> ArcFace + UNPG 94.47. Hardware: GPUs
(the official script runs DataParallel or DDP over 4 GPUs).

Here: with `data.image_folder` set, the experiment (`papers/unpg/omniglot.py`) reads the face
tree through `common.data.ImageFolder` (images decoded per batch, resized to
`data.image_size`), and reports 10-fold pair accuracy and all-pairs TAR@FAR on the held-out
identities (IJB-B/C templates and their protocol files are not read). Deviations: the embedder
is this repo's conv net (GroupNorm stages, `model.features`, flattened last stage -> linear
512-d), not an iResNet-100; batches are identity-balanced (128 identities x 4), not random.
Without `data.image_folder` it trains on the Omniglot zips of the data directory. The loss,
head, filter, optimiser, schedule and batch size are the paper's. The class-weight matrix and
large conv kernels are sharded over `mesh.fsdp` devices; the loss sees bf16 copies of fp32
master weights (`train.compute_dtype`, AMP's counterpart). `:tiny` keeps every setting but
shrinks sizes to one step on a CPU (`tests/test_paper_configs.py`; on an image folder in
`tests/test_paper_data.py`).
"""

import ml_collections

STEPS_PER_EPOCH = 5_822_653 // 512  # MS1MV2 images / batch
EPOCHS, WARMUP_EPOCHS = 20, 3


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(filter(None, arg.split(',')))
  unknown = args - {'tiny', 'cosface', 'nounpg', 'nofilter'}
  if unknown:
    raise ValueError(f'unknown config argument(s) {sorted(unknown)}: use tiny, cosface, '
                     'nounpg, nofilter')
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.unpg.omniglot'
  c.seed = 1000
  c.num_devices = -1
  c.mesh = dict(fsdp=4, fsdp_min_size=2 ** 16)
  c.data = dict(data_dir='', train_zip='omniglot/images_background_small1.zip',
                test_zip='omniglot/images_background_small2.zip', image_folder='',
                eval_image_folder='', held_out_identities=100, image_size=112, num_pairs=6000)
  c.model = dict(features=(64, 128, 256, 512), embedding_dim=512)
  c.loss = dict(head='cosface' if 'cosface' in args else 'arcface', unpg='nounpg' not in args,
                scale=64.0, margin=0.5, wisk=float('inf') if 'nofilter' in args else 1.5)
  c.train = dict(steps=EPOCHS * STEPS_PER_EPOCH, batch_size=512, classes_per_batch=128,
                 log_every=50, eval_every=0, checkpoint_every=STEPS_PER_EPOCH,
                 keep_checkpoints=2, compute_dtype='bfloat16', grad_accum_steps=1)
  c.optim = dict(name='sgd', lr=0.1, momentum=0.9, nesterov=False, schedule='cosine',
                 warmup_steps=WARMUP_EPOCHS * STEPS_PER_EPOCH, weight_decay=5e-4, grad_clip=0.0,
                 final_lr_fraction=0.0)
  if 'tiny' in args:
    c.num_devices = 1
    c.mesh.update(fsdp=1, fsdp_min_size=0)
    c.data.update(image_size=16, num_pairs=100, held_out_identities=4)
    c.model.update(features=(8, 16), embedding_dim=16)
    c.train.update(steps=1, batch_size=32, classes_per_batch=8, log_every=1,
                   checkpoint_every=1)
    c.optim.warmup_steps = 0
  return c
