"""PROPS / PPO / PPO-buffer on gymnax CartPole-v1, 5 seeds vmapped.

    python -m common.main --config=configs/props/cartpole.py --workdir=/tmp/props
    python -m common.main --config=configs/props/cartpole.py:smoke --workdir=/tmp/props_smoke
    python -m common.main --config=configs/props/cartpole.py --config.arm=ppo --workdir=/tmp/ppo

Expected (props): eval return near 500 within ~10k steps; metrics.json in the workdir.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.props.experiment'
  c.env = 'CartPole-v1'
  c.arm = 'props'  # ppo | ppo_buffer | props
  c.seed = 0
  c.num_seeds = 5
  c.b = 2
  c.checkpoint_every = 4  # blocks of loop.eval_every PPO updates
  c.keep_checkpoints = 2
  c.loop = dict(total_steps=24576, n=256, m=64, eval_every=4, eval_episodes=8)
  c.ppo = dict(lr=3e-4, epochs=10, minibatches=8, target_kl=0.03, ent_coef=0.0)
  c.props = dict(lr=1e-4, epochs=16, minibatches=16, clip_eps=0.3, kl_coef=0.3, target_kl=0.05,
                 official=False, se_steps=100)
  if arg == 'smoke':
    c.num_seeds = 2
    c.loop.update(total_steps=512, eval_every=1, eval_episodes=2)
    c.props.update(epochs=2, minibatches=4, se_steps=5)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}: use "" or "smoke"')
  return c
