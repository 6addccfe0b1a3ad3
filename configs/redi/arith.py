"""REDI on the chained-arithmetic task (a*b+c): SFT on correct teacher traces, then stage 2.

Stage 1 (SFT, the default argument) and stage 2 (`:redi`, `:symmetric`, `:dpo`, `:simpo`,
`:continued_sft`) are separate runs; stage 2 starts from the SFT run's newest checkpoint:

    python -m common.main --config=configs/redi/arith.py --workdir=/tmp/redi_sft
    python -m common.main --config=configs/redi/arith.py:redi --workdir=/tmp/redi \
        --config.init_from=/tmp/redi_sft
    python -m common.main --config=configs/redi/arith.py:smoke --workdir=/tmp/redi_sft_smoke

The sizes are those of `python -m papers.redi.reproduce` (which runs every arm over seeds): a
2-layer, d = 64 character transformer, 6000 training problems with 4 teacher traces each (40%
erring), SFT 2000 steps of 64 traces, stage 2 60 steps of 32 pairs (about 0.4 of a pass over
the pairs), greedy pass@1 on 64 validation and 160 test problems. Expected: SFT test pass@1
around 0.8 (its floors, the untrained model and the majority answer, are 0); stage 2 moves it
by a few points at lr 3e-5 and lowers it by up to a few tens of points at 1e-4 with negatives.
`:smoke` shrinks data and steps to seconds.
"""

import ml_collections

from common.config import config_args

# stage-2 arguments -> (preference.method, preference.alpha)
PREFERENCE = {'redi': ('redi', 0.8), 'symmetric': ('redi', 1.0), 'dpo': ('dpo', 0.8),
              'simpo': ('simpo', 0.8), 'continued_sft': ('sft', 0.8)}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('sft', *PREFERENCE, 'smoke'))
  stage2 = [a for a in args if a in PREFERENCE]
  if len(stage2) + ('sft' in args) > 1:
    raise ValueError(f'config argument {arg!r} names more than one stage: pick one of sft, '
                     f'{", ".join(PREFERENCE)}')
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.redi.experiment'
  c.seed = 0
  c.num_devices = 1
  c.stage = 'preference' if stage2 else 'sft'
  c.init_from = ''  # stage 2: the SFT run's workdir
  c.data = dict(num_train=6000, num_valid=64, num_test=160, samples_per_problem=4,
                error_rate=0.4, seed=0)
  c.model = dict(num_layers=2, d_model=64, num_heads=4, num_kv_heads=4, mlp_dim=256)
  method, alpha = PREFERENCE[stage2[0]] if stage2 else ('redi', 0.8)
  c.preference = dict(method=method, alpha=alpha, neg_gamma=0.0, dpo_beta=0.1, simpo_beta=2.0,
                      simpo_gamma=1.0)
  if stage2:  # a fresh optimizer, warmup then linear decay to 0
    c.train = dict(steps=60, batch_size=32, eval_every=30, log_every=5, checkpoint_every=30,
                   keep_checkpoints=2, steps_per_dispatch=1)
    c.optim = dict(name='adamw', lr=1e-4, schedule='linear', warmup_steps=6, weight_decay=0.0,
                   grad_clip=1.0, final_lr_fraction=0.0)
  else:
    c.train = dict(steps=2000, batch_size=64, eval_every=250, log_every=50,
                   checkpoint_every=500, keep_checkpoints=2, steps_per_dispatch=1)
    c.optim = dict(name='adamw', lr=3e-3, schedule='cosine', warmup_steps=100,
                   weight_decay=0.01, grad_clip=1.0, final_lr_fraction=0.1)
  # one batch of the 160 test + 64 validation problems; num_samples > 0 adds pass@1 sampled at
  # the temperature (k samples per test problem), off here: each costs a greedy pass's time
  c.eval = dict(batch_size=224, temperature=0.6, num_samples=0)
  if 'smoke' in args:
    c.data.update(num_train=200, num_valid=32, num_test=32)
    c.train.update(steps=4, batch_size=8, eval_every=2, log_every=1,
                   checkpoint_every=2)
    c.optim.warmup_steps = 1
    c.eval.batch_size = 64
  return c
