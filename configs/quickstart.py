"""Quickstart: a tiny causal character LM on Tiny Shakespeare (~2 minutes on 2 CPU cores).

    python -m common.main --config=configs/quickstart.py --workdir=/tmp/quickstart
    python -m common.main --config=configs/quickstart.py:smoke --workdir=/tmp/qs_smoke

Expected: validation bits/char falls from ~6 (uniform over 65 chars) to about 2.6 in 600 steps.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = 'common.lm'
  c.seed = 0
  c.num_devices = -1  # all local devices
  c.data = dict(data_dir='', seq_len=64)
  c.model = dict(num_layers=2, d_model=64, num_heads=4, num_kv_heads=4, mlp_dim=256)
  c.train = dict(steps=600, batch_size=32, log_every=50, eval_every=200, eval_batches=8,
                 checkpoint_every=200, keep_checkpoints=2, steps_per_dispatch=1)
  c.optim = dict(name='adamw', lr=3e-3, schedule='cosine', warmup_steps=50, weight_decay=0.01,
                 grad_clip=1.0, final_lr_fraction=0.1)
  if arg == 'smoke':
    c.train.update(steps=6, batch_size=8, log_every=2, eval_every=0, eval_batches=2,
                   checkpoint_every=3)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}: use "" or "smoke"')
  return c
