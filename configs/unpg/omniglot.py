"""UNPG on Omniglot open-set verification (train: 136 characters, verify: 156 unseen ones): one
arm of `python -m papers.unpg.reproduce` per config argument.

    python -m common.main --config=configs/unpg/omniglot.py:arcface,unpg --workdir=/tmp/unpg
    python -m common.main --config=configs/unpg/omniglot.py:cosface --workdir=/tmp/cosface
    python -m common.main --config=configs/unpg/omniglot.py:arcface,unpg,nofilter,smoke \
        --workdir=/tmp/unpg_smoke

The argument is a comma-separated list: a head (`arcface` | `cosface`), `unpg` to add the
negative pairs, `nofilter` for wisk = inf (keep every negative pair), `smoke` to shrink it to
seconds (3 steps, verification on the first `data.num_test_classes` = 30 unseen characters).
Scale and margins are below the official defaults (s=64, m=0.5 for both heads): with a 3-stage
conv net trained for 150 steps those do not leave the initial plateau. The verification metrics
(`tar@far=0.001`, the primary one, 10-fold `accuracy`, ...) are evaluated every
`train.eval_every` = 30 steps into metrics.jsonl. Expected (papers/unpg/README.md): ~76% 10-fold
accuracy on the unseen characters after 150 steps (~20 s on 2 CPU cores); UNPG's effect on
TAR@FAR is measured by `python -m papers.unpg.reproduce`.
"""

import ml_collections

from common.config import config_args

TOKENS = ('arcface', 'cosface', 'unpg', 'nofilter', 'smoke')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = config_args(arg, TOKENS)
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.unpg.omniglot'
  c.seed = 0
  c.num_devices = -1  # all local devices
  c.data = dict(data_dir='', train_zip='omniglot/images_background_small1.zip',
                test_zip='omniglot/images_background_small2.zip', image_size=20,
                num_pairs=6000, num_test_classes=0)  # 0: all 156 unseen characters
  c.model = dict(features=(16, 32, 64), embedding_dim=64)
  head = 'cosface' if 'cosface' in tokens else 'arcface'
  c.loss = dict(head=head, unpg='unpg' in tokens, scale=16.0,
                margin=0.3 if head == 'arcface' else 0.2,
                wisk=float('inf') if 'nofilter' in tokens else 1.5)
  c.train = dict(steps=150, batch_size=128, classes_per_batch=32, log_every=25, eval_every=30,
                 checkpoint_every=1000, keep_checkpoints=1)
  c.optim = dict(name='adamw', lr=5e-3, schedule='cosine', warmup_steps=10, weight_decay=5e-4,
                 grad_clip=0.0, final_lr_fraction=0.01)
  if 'smoke' in tokens:
    c.data.update(num_pairs=600, num_test_classes=30)
    c.train.update(steps=3, batch_size=64, classes_per_batch=16, log_every=1, eval_every=0,
                   checkpoint_every=3)
  return c
