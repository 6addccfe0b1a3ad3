"""UNPG on Omniglot open-set verification: train on the 136 characters of
`images_background_small1` (5 alphabets), verify on the 106 characters of the 3 alphabets of
`images_background_small2` that training never sees. One arm of `python -m
papers.unpg.reproduce` per config argument.

    python -m common.main --config=configs/unpg/omniglot.py:arcface,unpg --workdir=/tmp/unpg
    python -m common.main --config=configs/unpg/omniglot.py:cosface --workdir=/tmp/cosface
    python -m common.main --config=configs/unpg/omniglot.py:arcface,validation --workdir=/tmp/v
    python -m common.main --config=configs/unpg/omniglot.py:arcface,unpg,nofilter,smoke \
        --workdir=/tmp/unpg_smoke

The argument is a comma-separated list: a head (`arcface` | `cosface`), `unpg` to add the
negative pairs, `nofilter` for wisk = inf (keep every negative pair), `validation` to train
without the `data.val_alphabet` alphabet and verify on it (the split the reproduction's pilot
chooses scale, margin and learning rate on), `smoke` to shrink it to seconds (3 steps,
verification on the first `data.num_test_classes` = 30 characters).

Batches are drawn as the official code draws them (`train.sampler = 'shuffled'`: one random
permutation of the training images per epoch, cut into batches of 128). Scale, margin and
learning rate below are the defaults; `python -m papers.unpg.reproduce` overrides them with
its pilot's choice on the validation split (every run's command in results.json shows them).
The verification metrics (`tar@far=0.001`, the primary one, `pauc@far=0.01`, 10-fold
`accuracy`) are evaluated every `train.eval_every` steps into metrics.jsonl; the final metrics
add the ROC and the TAR on bootstrap resamples of the verified characters. Expected: the
numbers in papers/unpg/README.md, measured by `python -m papers.unpg.reproduce`.
"""

import ml_collections

from common.config import config_args

TOKENS = ('arcface', 'cosface', 'unpg', 'nofilter', 'validation', 'smoke')
VAL_ALPHABET = 'Balinese'  # 24 of the 136 training characters


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = config_args(arg, TOKENS)
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.unpg.omniglot'
  c.seed = 0
  c.num_devices = -1  # all local devices
  c.data = dict(data_dir='', train_zip='omniglot/images_background_small1.zip',
                test_zip='omniglot/images_background_small2.zip', image_size=20,
                split='validation' if 'validation' in tokens else 'test',
                val_alphabet=VAL_ALPHABET, num_train_classes=0,  # 0: all training characters
                num_pairs=6000, num_test_classes=0,  # 0: every evaluation character
                augment=dict(shift=2.0, rotate=10.0, scale=0.1))
  c.model = dict(features=(16, 32, 64), embedding_dim=64)
  head = 'cosface' if 'cosface' in tokens else 'arcface'
  c.loss = dict(head=head, unpg='unpg' in tokens, scale=16.0, margin=0.3 if head == 'arcface'
                else 0.2, wisk=float('inf') if 'nofilter' in tokens else 1.5)
  c.train = dict(steps=500, batch_size=128, sampler='shuffled', classes_per_batch=32,
                 log_every=50, eval_every=50, checkpoint_every=1000, keep_checkpoints=1)
  c.optim = dict(name='adamw', lr=2e-3, schedule='cosine', warmup_steps=25, weight_decay=5e-4,
                 grad_clip=0.0, final_lr_fraction=0.01)
  if 'smoke' in tokens:
    c.data.update(num_pairs=600, num_test_classes=30)
    c.model.update(features=(8, 16), embedding_dim=16)
    c.train.update(steps=3, batch_size=64, log_every=1, eval_every=0, checkpoint_every=3)
    c.optim.warmup_steps = 1
  return c
