"""RS2 / static-subset / full-data training on MNIST (8k train / 2k test split of the 10k file).

    python -m common.main --config=configs/rs2/mnist.py:rs2 --workdir=/tmp/rs2
    python -m common.main --config=configs/rs2/mnist.py:rs2_replacement --workdir=/tmp/rs2r
    python -m common.main --config=configs/rs2/mnist.py:static --workdir=/tmp/rs2_static
    python -m common.main --config=configs/rs2/mnist.py:full --workdir=/tmp/rs2_full
    python -m common.main --config=configs/rs2/mnist.py:rs2,smoke --workdir=/tmp/rs2_smoke

The argument is a comma-separated list: a sampler mode (`rs2` | `rs2_replacement` | `static` |
`full`), optionally `r2` / `r10` for the per-round budget (default 10%), `smoke` to shrink it.
Steps = steps per round x rounds (the paper's budget-adapted per-step cosine), SGD nesterov 0.9,
weight decay 5e-4, lr 0.1 -> 1e-4. Expected (papers/rs2/README.md): RS2 at r=10% ~95% test
accuracy after 30 rounds (1,500 steps, ~25 s on 2 CPU cores); a static 10% subset ~92%.
"""

import ml_collections

from common.config import config_args

MODES = ('rs2', 'rs2_replacement', 'static', 'full')
TOKENS = MODES + ('r2', 'r10', 'smoke')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  tokens = config_args(arg, TOKENS)
  mode = next((t for t in tokens if t in MODES), 'rs2')
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.rs2.experiment'
  c.seed = 0
  c.num_devices = -1  # all local devices
  c.data = dict(data_dir='', num_train=8000, num_test=2000,
                sampler=dict(mode=mode, fraction=0.02 if 'r2' in tokens else 0.1))
  c.model = dict(features=(8, 16))
  # train.steps is derived: steps per round x rounds (see papers/rs2/experiment.steps_for)
  c.train = dict(rounds=30, batch_size=16, eval_batch_size=400, log_every=50, eval_every=0,
                 checkpoint_every=1000, keep_checkpoints=1)
  if mode == 'full':
    c.train.rounds = 4
  c.optim = dict(name='sgd', lr=0.1, momentum=0.9, nesterov=True, schedule='cosine',
                 warmup_steps=0, weight_decay=5e-4, grad_clip=0.0, final_lr_fraction=1e-3)
  if 'smoke' in tokens:
    c.data.update(num_train=400, num_test=80)
    c.train.update(rounds=2, batch_size=8, eval_batch_size=40, log_every=1,
                   checkpoint_every=3)
  return c
