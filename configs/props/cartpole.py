"""PROPS / PPO / PPO-buffer on gymnax CartPole-v1 (seeds vmapped), and the fixed-target run.

    python -m common.main --config=configs/props/cartpole.py --workdir=/tmp/props
    python -m common.main --config=configs/props/cartpole.py --config.arm=ppo --workdir=/tmp/ppo
    python -m common.main --config=configs/props/cartpole.py:fixed --workdir=/tmp/props_fixed
    python -m common.main --config=configs/props/cartpole.py:smoke --workdir=/tmp/props_smoke

Default (`papers/props/reproduce.py`'s CartPole arms): 24,576 env steps per seed, a PPO update
every n = 256 steps (10 epochs x 8 minibatches, Adam 3e-4, target KL 0.03), buffer of b = 2
batches, a PROPS behaviour update every m = 64 steps (Adam 1e-4, 16 epochs x 16 minibatches,
clip 0.3, lambda 0.3, target KL 0.05), sampling error measured before every PPO update (100
full-batch Adam steps of the empirical policy's output layer), an evaluation of the
deterministic target policy (8 episodes) every 4 PPO updates. The arm ('ppo': b = 1; 'ppo_buffer':
b = 2 on-policy; 'props') is `config.arm`. Expected: every arm well above the untrained policy's
return; PROPS with lower sampling error than PPO-buffer (papers/props/README.md).

`:fixed` is the fixed-target experiment: PPO learning rate 0 (the randomly initialised target
never changes), no observation or reward normalisation, a buffer of b = 8 batches of n = 256
(2,048 samples, nothing evicted); the sampling error of all samples so far is measured every 256
samples, on-policy ('ppo_buffer') or with PROPS behaviour updates every 64 ('props').
Expected: PROPS ends with lower sampling error. `:smoke` shrinks either to seconds.
"""

import ml_collections

from common.config import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('fixed', 'smoke'))
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.props.experiment'
  c.backend = 'gymnax'
  c.env = 'CartPole-v1'
  c.arm = 'props'  # ppo | ppo_buffer | props
  c.seed = 0
  c.num_seeds = 5
  c.b = 2
  c.checkpoint_every = 4  # blocks of loop.eval_every PPO updates
  c.keep_checkpoints = 2
  c.loop = dict(total_steps=24576, n=256, m=64, eval_every=4, eval_episodes=8, norm_obs=True,
                norm_reward=True)
  c.ppo = dict(lr=3e-4, epochs=10, minibatches=8, target_kl=0.03, ent_coef=0.0)
  c.props = dict(lr=1e-4, epochs=16, minibatches=16, clip_eps=0.3, kl_coef=0.3, target_kl=0.05,
                 official=False, se_steps=100)
  if 'fixed' in args:
    c.b = 8
    c.checkpoint_every = 8
    c.loop.update(total_steps=2048, eval_every=1, eval_episodes=1, norm_obs=False,
                  norm_reward=False)
    c.ppo.lr = 0.0
  if 'smoke' in args:
    c.num_seeds = 2
    c.props.update(epochs=2, minibatches=4, se_steps=5)
    if 'fixed' in args:
      c.b = 4
      c.loop.update(total_steps=256, n=64, m=32)
    else:
      c.loop.update(total_steps=512, eval_every=1, eval_episodes=2)
  return c
