"""REDI on the chained-arithmetic task (a*b+c): SFT on correct teacher traces, then stage 2.

    python -m common.main --config=configs/redi/arith.py --workdir=/tmp/redi
    python -m common.main --config=configs/redi/arith.py:smoke --workdir=/tmp/redi_smoke

Expected: SFT test pass@1 (greedy) well below 1; the stage-2 method (REDI alpha 0.8) moves it by
a few points. The full comparison of arms and seeds is `python -m papers.redi.reproduce`.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.redi.experiment'
  c.seed = 0
  c.num_devices = 1
  c.data = dict(num_train=6000, num_valid=256, num_test=512, samples_per_problem=4,
                error_rate=0.4, seed=0)
  c.model = dict(num_layers=2, d_model=64, num_heads=4, num_kv_heads=4, mlp_dim=256)
  c.sft = dict(steps=1500, batch_size=64,
               optim=dict(name='adamw', lr=3e-3, schedule='cosine', warmup_steps=100,
                          weight_decay=0.01, grad_clip=1.0, final_lr_fraction=0.1))
  # Stage 2: a fresh optimizer, warmup + linear decay to 0, one pass over <= steps * batch pairs.
  c.stage2 = dict(method='redi', alpha=0.8, neg_gamma=0.0, dpo_beta=0.1, simpo_beta=2.0,
                  simpo_gamma=1.0, steps=150, batch_size=32,
                  optim=dict(name='adamw', lr=3e-4, schedule='linear', warmup_steps=15,
                             weight_decay=0.0, grad_clip=1.0, final_lr_fraction=0.0))
  c.eval = dict(every=50, temperature=0.6, num_samples=2)
  if arg == 'smoke':
    c.data.update(num_train=200, num_valid=32, num_test=32)
    c.sft.update(steps=4, batch_size=8)
    c.stage2.update(steps=2, batch_size=8)
    c.eval.update(every=1)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}: use "" or "smoke"')
  return c
