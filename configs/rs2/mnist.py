"""RS2, static-subset, data-pruning and full-data training on MNIST (8k train / 2k test split of
the 10k file): one arm of `python -m papers.rs2.reproduce` per config argument.

    python -m common.main --config=configs/rs2/mnist.py:pilot --workdir=/tmp/rs2_pilot
    python -m common.main --config=configs/rs2/mnist.py:rs2 --config.optim.lr=0.025 \
        --config.num_seeds=5 --workdir=/tmp/rs2
    python -m common.main --config=configs/rs2/mnist.py:rs2_replacement,r2 --workdir=/tmp/rs2r
    python -m common.main --config=configs/rs2/mnist.py:static --workdir=/tmp/rs2_static
    python -m common.main --config=configs/rs2/mnist.py:full --workdir=/tmp/rs2_full
    python -m common.main --config=configs/rs2/mnist.py:full_long --workdir=/tmp/rs2_long
    python -m common.main --config=configs/rs2/mnist.py:pretrain --workdir=/tmp/rs2_pre
    python -m common.main --config=configs/rs2/mnist.py:el2n \
        --config.selection.pretrained_workdir=/tmp/rs2_pre --workdir=/tmp/rs2_el2n
    python -m common.main --config=configs/rs2/mnist.py:rs2,smoke --workdir=/tmp/rs2_smoke

The argument is a comma-separated list: the arm, optionally `r2` / `r10` for the per-round
budget r (default 10%), `smoke` to shrink it to seconds. Add `--config.num_seeds=5` to train
seeds seed..seed+4 in one run (`common.sweep`'s `vmap_seeds`).

- `rs2`, `rs2_replacement`, `static`: the sampler `data.sampler.mode` at budget r, ROUNDS rounds
  (the per-step cosine over steps per round x rounds).
- `el2n`, `forgetting`, `kcenter`: a static subset of r*N examples chosen by the pruning method
  (`selection.method`) from the run in `selection.pretrained_workdir` (the `pretrain` arm,
  charged to the arm).
- `full`: full data for the budget of r (as many steps as the r arms: r x ROUNDS epochs).
- `full_long`: full data for ROUNDS epochs (the paper trains full data for as many epochs as RS2
  has rounds), evaluated every LONG_EVAL_ROUNDS rounds of r = 10%, i.e. at RS2's budget too.
- `pretrain`: DeepCore's selection training: PRETRAIN_EPOCHS full-data epochs at a constant lr
  (DeepCore's own `selection_lr`, the official step LR, not the pilot's), recording after each
  epoch which training examples it classifies correctly (forgetting).
- `pilot`: full data for the budget of r on the first 7k training examples, validated on the
  held-out last 1k (`data.num_val`); `papers/rs2/reproduce.py` runs it at every lr of LR_GRID
  and passes the best to the arms of that budget as `optim.lr`.

SGD nesterov 0.9, weight decay 5e-4, cosine to lr / 1000, batch BATCH; lr 0.1 x BATCH / 128 (the
official recipe's per-example step) unless given (the reproduction: the pilot's). The untrained
network's and the majority class's accuracy are returned as floors (`untrained_accuracy`,
`chance_accuracy`). Expected: papers/rs2/README.md.
"""

import ml_collections

from common.config import config_args

ARMS = ('rs2', 'rs2_replacement', 'static', 'full', 'full_long', 'el2n', 'forgetting', 'kcenter',
        'pretrain', 'pilot')
PRUNING = ('el2n', 'forgetting', 'kcenter')
SAMPLERS = {'rs2': 'without_replacement', 'rs2_replacement': 'with_replacement',
            'el2n': 'static', 'forgetting': 'static', 'kcenter': 'static', 'pretrain': 'full',
            'full_long': 'full', 'pilot': 'full'}
TOKENS = ARMS + ('r2', 'r10', 'smoke')
BATCH = 16
ROUNDS = 100
PRETRAIN_EPOCHS = 10  # DeepCore's selection_epochs
EVAL_ROUNDS = 5  # an evaluation every 5 rounds: 20 per budget arm
LONG_EVAL_ROUNDS = 5  # full_long: every 5 rounds of r = 10% (250 steps, half an epoch)
NUM_VAL = 1000
LR = 0.1 * BATCH / 128  # the official per-example step (lr 0.1 at batch 128)
LR_GRID = tuple(LR * f for f in (0.5, 1.0, 2.0, 4.0))


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = config_args(arg, TOKENS)
  arm = next((t for t in tokens if t in ARMS), 'rs2')
  smoke = 'smoke' in tokens
  r2 = 'r2' in tokens
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.rs2.experiment'
  c.seed = 0
  c.num_seeds = 1
  c.num_devices = -1  # all local devices
  c.data = dict(data_dir='', num_train=8000, num_test=2000, num_val=0,
                sampler=dict(mode=SAMPLERS.get(arm, arm), fraction=0.02 if r2 else 0.1))
  c.selection = dict(method=arm if arm in PRUNING else 'none', pretrained_workdir='',
                     score_batch_size=250, record_train_correct=arm == 'pretrain')
  c.model = dict(features=(8, 16))
  # steps = 0: steps per round x rounds, or epochs x steps per epoch (experiment.steps_for)
  c.train = dict(steps=0, rounds=ROUNDS, epochs=0, batch_size=BATCH, eval_batch_size=250,
                 log_every=100, eval_every=0, eval_every_rounds=EVAL_ROUNDS, eval_every_epochs=0,
                 checkpoint_every=5000, keep_checkpoints=1)
  c.optim = dict(name='sgd', lr=LR, momentum=0.9, nesterov=True,
                 schedule='cosine', warmup_steps=0, weight_decay=5e-4, grad_clip=0.0,
                 final_lr_fraction=1e-3)
  if arm == 'full_long':
    c.data.sampler.fraction = 0.1
    c.train.update(epochs=ROUNDS, eval_every_rounds=LONG_EVAL_ROUNDS)
  if arm == 'pretrain':  # DeepCore: selection_epochs at a constant selection_lr
    c.optim.schedule = 'constant'
    c.train.update(epochs=PRETRAIN_EPOCHS, eval_every_rounds=0, eval_every_epochs=1)
  if arm == 'pilot':
    c.data.num_val = NUM_VAL
  if smoke:
    c.data.update(num_train=400, num_test=80, num_val=80 if arm == 'pilot' else 0)
    c.selection.score_batch_size = 100
    c.train.update(rounds=2, batch_size=8, eval_batch_size=40, log_every=1, eval_every_rounds=1)
    if arm == 'full_long':  # an evaluation at both budgets' step counts (2 and 10)
      c.train.update(epochs=1, eval_every_rounds=0, eval_every=2)
    if arm == 'pretrain':
      c.train.update(epochs=2, eval_every_rounds=0, eval_every_epochs=1)
  return c
