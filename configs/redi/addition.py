"""REDI on the addition task in which failures carry information (`papers/redi/addition.py`).

Six-digit additions written column by column; the teacher answers directly (`=`, 90% of its
traces, each carry forgotten with probability 0.4) or column by column (`;`, slips 3% of the
time). Four teacher traces per training problem: the SFT set mixes both strategies among the
correct traces (about a third long), the pairs' incorrect traces are almost all short.
Stage 1 (the default argument) and stage 2 (`:redi`, `:symmetric`, `:dpo`, `:simpo`,
`:continued_sft`) are separate runs; stage 2 starts from the SFT run's newest checkpoint:

    python -m common.main --config=configs/redi/addition.py --workdir=/tmp/add_sft
    python -m common.main --config=configs/redi/addition.py:redi --workdir=/tmp/add_redi \
        --config.init_from=/tmp/add_sft

Model and SFT as `configs/redi/arith.py` (2-layer, d = 64 character transformer; SFT 3000 steps
of 64 traces at lr 3e-3, weight decay 0.1, evaluated every 300 steps; here the cosine decays to
0); stage 2 480 steps of 32
pairs (about 3.7 passes over the pairs), or 64 traces for continued SFT, at the rate
`python -m papers.redi.reproduce` picks on validation, 10% warmup then linear decay to 0,
evaluated every 80 steps; 6000 training, 64 validation and 160 test problems. Evaluators
(`papers/redi/experiment.py`): greedy pass@1, the exact pass@1 at temperature 0.6 (the
probabilities of the two correct completions), pass@1 and pass@4 of 4 samples at 0.6, each
strategy's share and its accuracy when forced.
`:smoke` shrinks data and steps to seconds.
"""

import ml_collections

from configs.redi import arith

# stage 2: about 3.7 passes over the pairs (32 a step); REDI and DPO move pass@1 for longer than
# the control's 120 steps and flatten before the end of this decay
STAGE2_STEPS = 480


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = arith.get_config(arg)
  smoke = 'smoke' in arg.split(',')
  c.data = dict(task='addition', num_train=200 if smoke else 6000,
                num_valid=32 if smoke else 64, num_test=32 if smoke else 160,
                samples_per_problem=4, short_rate=0.9, carry_drop=0.4, long_error_rate=0.03,
                seed=0)
  if c.stage == 'sft':  # the lr decays to 0: the strategy share settles at the end
    c.optim.final_lr_fraction = 0.0
  if not smoke:
    c.eval.batch_size = 224  # the 160 test + 64 validation problems in one batch
    if c.stage == 'preference':  # stage 2 moves pass@1 far: longer, evaluated every 1/6 of it
      c.train.update(steps=STAGE2_STEPS, eval_every=STAGE2_STEPS // 6,
                     checkpoint_every=STAGE2_STEPS // 3)
      c.optim.warmup_steps = STAGE2_STEPS // 10
  return c
