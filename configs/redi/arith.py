"""REDI on the chained-arithmetic task (a*b+c): SFT on correct teacher traces, then stage 2.

Stage 1 (SFT, the default argument) and stage 2 (`:redi`, `:symmetric`, `:dpo`, `:simpo`,
`:continued_sft`) are separate runs; stage 2 starts from the SFT run's newest checkpoint:

    python -m common.main --config=configs/redi/arith.py --workdir=/tmp/redi_sft
    python -m common.main --config=configs/redi/arith.py:redi --workdir=/tmp/redi \
        --config.init_from=/tmp/redi_sft
    python -m common.main --config=configs/redi/arith.py:smoke --workdir=/tmp/redi_sft_smoke

The control task of `python -m papers.redi.reproduce` (which runs every arm over seeds, each
stage-2 objective at its rate picked on validation): a 2-layer, d = 64 character transformer,
6000 training problems with 4 teacher traces each (40% erring), SFT 3000 steps of 64 traces
(lr 3e-3, 100 warmup steps, cosine to 0.1x, weight decay 0.1, evaluated every 300 steps),
stage 2 120 steps of 32 pairs (about 0.8 of a pass over the pairs; continued SFT 120 steps of
64 correct traces, as many sequences; 10% warmup, linear decay to 0, evaluated every 40 steps),
greedy pass@1 on 64 validation and 160 test problems, pass@1 and pass@4 of 4 samples at
temperature 0.6. The SFT's weight decay and length: the model reaches a plateau where only the
final sum's digits are wrong and leaves it abruptly after a seed-dependent time; with less weight
decay or fewer steps some seeds stay on it. DPO and SimPO use the paper's tuned beta
(0.001) and (beta, gamma) = (2, 1) (its Appendix C.4). An incorrect trace here is one random
slip in the one deterministic solution, so it says little the correct trace does not.
`:smoke` shrinks data and steps to seconds.
"""

import ml_collections

from common.config import config_args

PAIR_BATCH, STAGE2_STEPS, SFT_STEPS = 32, 120, 3000
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
  c.data = dict(task='arith', num_train=6000, num_valid=64, num_test=160,
                samples_per_problem=4, error_rate=0.4, seed=0)
  c.model = dict(num_layers=2, d_model=64, num_heads=4, num_kv_heads=4, mlp_dim=256)
  method, alpha = PREFERENCE[stage2[0]] if stage2 else ('redi', 0.8)
  # the paper's tuned beta of DPO and (beta, gamma) of SimPO (Appendix C.4, Table 2)
  c.preference = dict(method=method, alpha=alpha, neg_gamma=0.0, dpo_beta=0.001,
                      simpo_beta=2.0, simpo_gamma=1.0)
  if stage2:  # a fresh optimizer, 10% warmup then linear decay to 0
    # continued SFT takes twice the pair batch in traces: as many sequences per step
    batch = 2 * PAIR_BATCH if method == 'sft' else PAIR_BATCH
    c.train = dict(steps=STAGE2_STEPS, batch_size=batch, eval_every=STAGE2_STEPS // 3,
                   log_every=10, checkpoint_every=STAGE2_STEPS // 3, keep_checkpoints=2,
                   steps_per_dispatch=1)
    c.optim = dict(name='adamw', lr=1e-4, schedule='linear', warmup_steps=STAGE2_STEPS // 10,
                   weight_decay=0.0, grad_clip=1.0, final_lr_fraction=0.0)
  else:
    # weight decay 0.1 and 3000 steps: the plateau is left on every seed (module doc)
    c.train = dict(steps=SFT_STEPS, batch_size=64, eval_every=SFT_STEPS // 10, log_every=50,
                   checkpoint_every=SFT_STEPS // 5, keep_checkpoints=2, steps_per_dispatch=1)
    c.optim = dict(name='adamw', lr=3e-3, schedule='cosine', warmup_steps=100,
                   weight_decay=0.1, grad_clip=1.0, final_lr_fraction=0.1)
  # one batch of the 160 test + 64 validation problems; num_samples: samples per test problem
  # at the temperature (pass@1 sampled and pass@k, k = num_samples), each a greedy pass's time
  c.eval = dict(batch_size=224, temperature=0.6, num_samples=4)
  if 'smoke' in args:
    c.data.update(num_train=200, num_valid=32, num_test=32)
    c.train.update(steps=4, batch_size=16 if method == 'sft' else 8, eval_every=2,
                   log_every=1, checkpoint_every=2)
    c.eval.num_samples = 2
    c.optim.warmup_steps = 1
    c.eval.batch_size = 64
  return c
