"""Fixed-target sampling error on a K-armed bandit: on-policy sampling vs PROPS (seeds vmapped).

    python -m common.main --config=configs/props/bandit.py --workdir=/tmp/bandit
    python -m common.main --config=configs/props/bandit.py --config.arm=on_policy --workdir=DIR
    python -m common.main --config=configs/props/bandit.py:smoke --workdir=/tmp/bandit_smoke

K = 10 arms, target logits evenly spaced in [-1, 1], N = 512 samples per trial, 64 trials per
seed. 'on_policy' samples from the target; 'props' resets a logits-vector behaviour policy to the
target every m = 4 samples and takes up to 16 epochs x 4 minibatches of Adam (1e-2; with the
paper's 1e-4 a tabular policy barely moves) on the PROPS loss (clip 0.3, lambda 0.3, target KL
0.05) over all samples so far. Expected: on-policy sampling error near (K-1)/2N, PROPS below it.
`:smoke` shrinks it to seconds.
"""

import ml_collections

from common.config import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('smoke',))
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.props.bandit'
  c.arm = 'props'  # on_policy | props
  c.seed = 0
  c.num_seeds = 5
  c.k = 10
  c.n = 512
  c.m = 4
  c.trials = 64
  c.behavior = dict(lr=1e-2, epochs=16, minibatches=4, clip_eps=0.3, kl_coef=0.3, target_kl=0.05)
  if 'smoke' in args:
    c.num_seeds = 2
    c.k, c.n, c.trials = 4, 32, 8
  return c
