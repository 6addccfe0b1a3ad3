"""ParScale character LM: P parallel streams of one shared backbone (Tiny Shakespeare).

    python -m common.main --config=configs/parscale/char_lm.py --workdir=/tmp/ps_p4
    python -m common.main --config=configs/parscale/char_lm.py:smoke --workdir=/tmp/ps_smoke
    python -m common.main --config=configs/parscale/char_lm.py --workdir=/tmp/ps_p1 \
        --config.parscale.num_streams=1
    python -m common.main --config=configs/parscale/char_lm.py --workdir=/tmp/ps_recycled \
        --config.parscale.init_from=/tmp/ps_p1 --config.data.first_batch=400 \
        --config.train.steps=100 --config.optim.lr=0.003 --config.optim.warmup_steps=20

The last command is the recycling stage: the backbone of the P = 1 run's newest checkpoint,
fresh prefixes and aggregator, the data stream continued past the P = 1 run's 400 batches
(add --config.parscale.freeze_backbone=True for the PEFT variant).

Expected (P=4, d=16, 400 steps): validation loss (eval/loss, nats/char) about 2.2, below the
bigram floor of the validation text; the sweep over widths and P, with the recycling stage,
is `python -m papers.parscale.reproduce`.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.parscale.experiment'
  c.seed = 0
  c.num_devices = -1  # all local devices
  # first_batch: index of this run's first batch in the seed's shuffled window order
  c.data = dict(data_dir='', seq_len=32, first_batch=0)
  c.model = dict(num_layers=2, d_model=16, num_heads=2, num_kv_heads=2, mlp_dim=64)
  # eps: weight smoothing (0.1 for the paper's training runs); num_prefix: the paper's m = 48,
  # cut to 4 for these tiny widths (the prefix would otherwise dominate a 32-token window).
  # init_from: workdir of a run whose newest checkpoint gives the backbone (recycling stage).
  c.parscale = dict(num_streams=4, num_prefix=4, eps=0.1, prefix_init=0.02, init_from='',
                    freeze_backbone=False)
  # eval: the first eval_batches x batch_size validation windows (1024 x 32 characters)
  c.train = dict(steps=400, batch_size=32, log_every=50, eval_every=100, eval_batches=32,
                 checkpoint_every=400, keep_checkpoints=1, steps_per_dispatch=1)
  c.optim = dict(name='adamw', lr=1e-2, schedule='cosine', warmup_steps=50, weight_decay=0.0,
                 grad_clip=1.0, final_lr_fraction=0.1)
  if arg == 'smoke':
    c.data.seq_len = 16
    c.model.update(d_model=8, mlp_dim=32)
    c.parscale.num_prefix = 2
    c.train.update(steps=4, batch_size=8, log_every=2, eval_every=2, eval_batches=2,
                   checkpoint_every=4)
    c.optim.warmup_steps = 1
    c.parscale.num_streams = 2
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}: use "" or "smoke"')
  return c
