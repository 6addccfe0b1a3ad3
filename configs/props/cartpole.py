"""PROPS / PPO / PPO-buffer on gymnax CartPole-v1 (seeds vmapped): sampling error in training.

    python -m common.main --config=configs/props/cartpole.py --workdir=/tmp/props
    python -m common.main --config=configs/props/cartpole.py --config.arm=ppo --workdir=/tmp/ppo
    python -m common.main --config=configs/props/cartpole.py:smoke --workdir=/tmp/props_smoke

Default (`papers/props/reproduce.py`'s sampling-error arms): 24,576 env steps per seed, a PPO
update every n = 256 steps (10 epochs x 8 minibatches, Adam 3e-4, target KL 0.03), buffer of
b = 2 batches, a PROPS behaviour update every m = 64 steps (Adam 1e-4, 16 epochs x 16
minibatches, clip 0.3, lambda 0.3, target KL 0.05), an evaluation of the deterministic target
policy (8 episodes) every 4 PPO updates. Before every 4th PPO update the sampling error of the
buffer and that of the on-policy reference buffer (`loop.reference`: a second CartPole acting
with the current target, sampled at the same steps, so from the same target sequence) are
measured with the same estimator (`props.se_steps` L-BFGS iterations,
`papers/props/sampling_error.py`). The arm ('ppo': b = 1; 'ppo_buffer': b = 2 on-policy;
'props') is `config.arm`. Expected: PROPS's buffer with lower sampling error than its
reference; PPO-buffer's equal to its reference.

`:smoke` shrinks it to seconds.
"""

import ml_collections

from common.config import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('smoke',))
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
                norm_reward=True, anneal_steps=0, reference=True, measure_every=4)
  c.ppo = dict(lr=3e-4, epochs=10, minibatches=8, target_kl=0.03, ent_coef=0.0, anneal_lr=False)
  c.props = dict(lr=1e-4, epochs=16, minibatches=16, clip_eps=0.3, kl_coef=0.3, target_kl=0.05,
                 official=False, se_steps=100)
  if 'smoke' in args:
    c.num_seeds = 2
    c.props.update(epochs=2, minibatches=4, se_steps=6)
    c.loop.update(total_steps=512, eval_every=1, eval_episodes=2, measure_every=1)
  return c
