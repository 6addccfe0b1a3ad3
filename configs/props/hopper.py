"""PROPS / PPO / PPO-buffer on gymnasium Hopper-v5 (MuJoCo), CPU-sized: the reproduction's
Hopper arms.

    python -m common.main --config=configs/props/hopper.py --workdir=/tmp/hopper
    python -m common.main --config=configs/props/hopper.py --config.arm=ppo --workdir=/tmp/hp
    python -m common.main --config=configs/props/hopper.py:smoke --workdir=/tmp/hopper_smoke

The official Hopper PROPS settings (`configs/props/paper_mujoco.py`: PPO Adam 1e-3, 10 epochs x
32 minibatches, target KL 0.03; PROPS Adam 1e-3, 16 x 16, clip 0.3, lambda 0.3, target KL 0.05,
m = 256, b = 2) for all three arms, at n = 1024 instead of 2048 and 24,576 env steps per seed
instead of 1M (the paper's budget is far beyond 2 CPU cores). Sampling error is measured before
every PPO update; the deterministic target policy is evaluated on 2 episodes every 4 PPO updates.
One environment per seed on the host (`common.rl.host.HostRunner`), checkpointed after every
block of 4 updates; a killed run resumes bit-identically. Expected: every arm above the
untrained policy's return; PROPS with lower sampling error than PPO-buffer; return curves
still rising at this budget (so `common.stats` leaves the return claims 'not tested').
`:smoke` shrinks it to seconds (tests).
"""

import ml_collections

from common.config import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('smoke',))
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.props.experiment'
  c.backend = 'gymnasium'
  c.env = 'Hopper-v5'
  c.arm = 'props'  # ppo | ppo_buffer | props
  c.seed = 0
  c.num_seeds = 5
  c.b = 2
  c.checkpoint_every = 1  # blocks of loop.eval_every PPO updates
  c.keep_checkpoints = 2
  c.loop = dict(total_steps=24576, n=1024, m=256, eval_every=4, eval_episodes=2, norm_obs=True,
                norm_reward=True)
  c.ppo = dict(lr=1e-3, epochs=10, minibatches=32, target_kl=0.03, ent_coef=0.0)
  c.props = dict(lr=1e-3, epochs=16, minibatches=16, clip_eps=0.3, kl_coef=0.3, target_kl=0.05,
                 official=False, se_steps=100)
  if 'smoke' in args:
    c.num_seeds = 2
    c.loop.update(total_steps=512, n=128, m=64, eval_every=1, eval_episodes=1)
    c.ppo.update(epochs=2, minibatches=4)
    c.props.update(epochs=2, minibatches=4, se_steps=5)
  return c
