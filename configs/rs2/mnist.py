"""RS2, static-subset, data-pruning and full-data training on MNIST (8k train / 2k test split of
the 10k file): one arm of `python -m papers.rs2.reproduce` per config argument.

    python -m common.main --config=configs/rs2/mnist.py:rs2 --workdir=/tmp/rs2
    python -m common.main --config=configs/rs2/mnist.py:rs2_replacement,r2 --workdir=/tmp/rs2r
    python -m common.main --config=configs/rs2/mnist.py:static --workdir=/tmp/rs2_static
    python -m common.main --config=configs/rs2/mnist.py:full --workdir=/tmp/rs2_full
    python -m common.main --config=configs/rs2/mnist.py:pretrain --workdir=/tmp/rs2_pre
    python -m common.main --config=configs/rs2/mnist.py:el2n \
        --config.selection.pretrained_workdir=/tmp/rs2_pre --workdir=/tmp/rs2_el2n
    python -m common.main --config=configs/rs2/mnist.py:rs2,smoke --workdir=/tmp/rs2_smoke

The argument is a comma-separated list: the arm (`rs2` | `rs2_replacement` | `static` | `full` |
`el2n` | `kcenter` | `pretrain`), optionally `r2` / `r10` for the per-round budget r (default
10%), `smoke` to shrink it to seconds.

- `rs2`, `rs2_replacement`, `static`: the sampler `data.sampler.mode` at budget r.
- `el2n`, `kcenter`: a static subset of r*N examples chosen by the pruning method
  (`selection.method`) from the parameters of the run in `selection.pretrained_workdir` (the
  `pretrain` arm: 500 full-data steps, one epoch, charged to the arm).
- `full`: every example each round, as many epochs as the budget arms have rounds (the paper
  trains full data for as many epochs as RS2 has rounds; a round of full data is an epoch).

Steps = steps per round x rounds (`train.steps = 0`; the paper's budget-adapted per-step
cosine), evaluation every round (`train.eval_every_rounds = 1`, as the paper evaluates every
epoch; every 3 rounds at r = 2%, whose 10-step rounds cost less than an evaluation). SGD
nesterov 0.9, weight decay 5e-4, cosine to lr / 1000. lr = 0.0125 at batch 16: the official
recipe's per-example step (lr 0.1 at batch 128) under linear scaling; lr 0.1 at batch 16 sent
some r = 2% runs to chance.
The untrained network's and the majority class's test accuracy are returned as the floors
(`untrained_accuracy`, `chance_accuracy`). Expected: papers/rs2/README.md.
"""

import ml_collections

from common.config import config_args

ARMS = ('rs2', 'rs2_replacement', 'static', 'full', 'el2n', 'kcenter', 'pretrain')
SAMPLERS = {'el2n': 'static', 'kcenter': 'static', 'pretrain': 'full'}
TOKENS = ARMS + ('r2', 'r10', 'smoke')
PRETRAIN_STEPS = 500  # one epoch of the 8k training examples at batch 16


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = config_args(arg, TOKENS)
  arm = next((t for t in tokens if t in ARMS), 'rs2')
  smoke = 'smoke' in tokens
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.rs2.experiment'
  c.seed = 0
  c.num_devices = -1  # all local devices
  c.data = dict(data_dir='', num_train=8000, num_test=2000,
                sampler=dict(mode=SAMPLERS.get(arm, arm),
                             fraction=0.02 if 'r2' in tokens else 0.1))
  c.selection = dict(method=arm if arm in ('el2n', 'kcenter') else 'none',
                     pretrained_workdir='', score_batch_size=1000)
  c.model = dict(features=(8, 16))
  # steps = 0: steps per round x rounds (papers/rs2/experiment.steps_for)
  c.train = dict(steps=0, rounds=30, batch_size=16, eval_batch_size=1000, log_every=50,
                 eval_every=0, eval_every_rounds=1, checkpoint_every=5000, keep_checkpoints=1)
  c.optim = dict(name='sgd', lr=0.0125, momentum=0.9, nesterov=True, schedule='cosine',
                 warmup_steps=0, weight_decay=5e-4, grad_clip=0.0, final_lr_fraction=1e-3)
  if 'r2' in tokens:  # 10 steps a round: evaluate every 3 rounds (the eval costs more)
    c.train.eval_every_rounds = 3
  if arm == 'pretrain':
    c.train.update(steps=PRETRAIN_STEPS, eval_every=0, eval_every_rounds=0)
  if smoke:
    c.data.update(num_train=400, num_test=80)
    c.selection.score_batch_size = 100
    c.train.update(rounds=2, batch_size=8, eval_batch_size=40, log_every=1)
    if arm == 'pretrain':
      c.train.steps = 5
    else:
      c.train.eval_every_rounds = 1
  return c
