"""ParScale character LM: P parallel streams of one shared backbone (Tiny Shakespeare).

    python -m common.main --config=configs/parscale/char_lm.py --workdir=/tmp/parscale
    python -m common.main --config=configs/parscale/char_lm.py:smoke --workdir=/tmp/ps_smoke
    python -m common.main --config=configs/parscale/char_lm.py --workdir=/tmp/ps_p1 \
        --config.parscale.num_streams=1

Expected (full, P=4, d=16): validation loss about 2.2 nats/char after 400 steps; the sweep
over widths and P is `python -m papers.parscale.reproduce`.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.parscale.experiment'
  c.seed = 0
  c.num_devices = -1  # all local devices
  c.data = dict(data_dir='', seq_len=32)
  c.model = dict(num_layers=2, d_model=16, num_heads=2, num_kv_heads=2, mlp_dim=64)
  # eps: weight smoothing (0.1 for the paper's training runs); num_prefix: the paper's m = 48,
  # cut to 4 for these tiny widths (the prefix would otherwise dominate a 32-token window).
  c.parscale = dict(num_streams=4, num_prefix=4, eps=0.1, prefix_init=0.02)
  c.train = dict(steps=400, batch_size=32, log_every=50, eval_every=200, eval_batches=8,
                 checkpoint_every=200, keep_checkpoints=2)
  c.optim = dict(name='adamw', lr=1e-2, schedule='cosine', warmup_steps=50, weight_decay=0.0,
                 grad_clip=1.0, final_lr_fraction=0.1)
  if arg == 'smoke':
    c.train.update(steps=4, batch_size=8, log_every=2, eval_every=0, eval_batches=2,
                   checkpoint_every=2)
    c.parscale.num_streams = 2
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}: use "" or "smoke"')
  return c
