"""PROPS / PPO / PPO-buffer on gymnax Acrobot-v1, 20 seeds vmapped: the powered return test; and
the fixed-target experiment with trained experts as targets.

    python -m common.main --config=configs/props/acrobot.py --workdir=/tmp/acrobot
    python -m common.main --config=configs/props/acrobot.py --config.arm=ppo --workdir=/tmp/ppo
    python -m common.main --config=configs/props/acrobot.py:fixed --config.expert=/tmp/ppo \
        --config.num_seeds=10 --workdir=/tmp/acrobot_fixed
    python -m common.main --config=configs/props/acrobot.py:smoke --workdir=/tmp/acrobot_smoke

Every arm uses the official discrete PROPS code's defaults (NicholasCorrado/PPOROS,
`PROPS/ppo_props_discrete.py`): a PPO update every n = 1024 steps (10 epochs x 32 minibatches,
Adam 1e-3 annealed linearly to 0 over the run, entropy coefficient 0.01, target KL 0.03), a
buffer of b = 2 batches, a PROPS behaviour update every m = 128 steps (Adam 1e-3, 16 epochs x 8
minibatches, clip 0.3, lambda 0.1, target KL 0.03); running observation and reward
normalisation. The arm ('ppo': b = 1; 'ppo_buffer': b = 2 on-policy; 'props') is `config.arm`.
49,152 env steps per seed (PPO solves the task within about half of them, so the return-curve
area measures how fast each arm learns), 20 seeds vmapped in one program (seed s of every arm
shares its initialisation), the deterministic target policy evaluated on 8 episodes every 4
PPO updates. Expected: every arm well above the untrained policy's return (about -500, the episode
cap); the paper's claim is a larger area under the return curve for PROPS than for PPO.

`:fixed` is the paper's fixed-target experiment with expert targets: seed i's target is the
final target policy of seed i of a finished PPO run (`config.expert`, its workdir), frozen
(PPO learning rate 0) together with its observation normaliser (`loop.norm_obs_update=False`).
A buffer of b = 8 batches of n = 256 (2,048 samples, nothing evicted), PROPS with the official
fixed-target settings (a behaviour update every m = 256 samples, Adam 1e-3, lambda 0.1, target
KL 0.05); the sampling error of all samples and of as many on-policy reference samples of the
same target (`loop.reference`) is measured once, at the end (400 L-BFGS iterations), sampled
on-policy ('ppo_buffer') or with PROPS behaviour updates ('props'). The step-0 evaluation is the
expert's return. Expected: PROPS ends with lower sampling error than its reference (the paper:
0.51-0.84x on MuJoCo experts).
`:smoke` shrinks either to seconds.
"""

import ml_collections

from common.config import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('fixed', 'smoke'))
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.props.experiment'
  c.backend = 'gymnax'
  c.env = 'Acrobot-v1'
  c.arm = 'props'  # ppo | ppo_buffer | props
  c.seed = 0
  c.num_seeds = 20
  c.b = 2
  c.checkpoint_every = 2  # blocks of loop.eval_every PPO updates
  c.keep_checkpoints = 2
  c.loop = dict(total_steps=49152, n=1024, m=128, eval_every=4, eval_episodes=8, norm_obs=True,
                norm_reward=True, anneal_steps=0, reference=False, measure_every=1)
  c.ppo = dict(lr=1e-3, epochs=10, minibatches=32, target_kl=0.03, ent_coef=0.01, anneal_lr=True)
  c.props = dict(lr=1e-3, epochs=16, minibatches=8, clip_eps=0.3, kl_coef=0.1, target_kl=0.03,
                 official=False, se_steps=0)
  c.expert = ''  # workdir of a finished run whose final targets are frozen (`:fixed`)
  if 'fixed' in args:
    c.num_seeds = 10
    c.b = 8
    c.checkpoint_every = 1
    c.loop.update(total_steps=2048, n=256, m=256, eval_every=8, eval_episodes=8, norm_obs=True,
                  norm_obs_update=False, norm_reward=False, reference=True, measure_every=8)
    c.ppo.update(lr=0.0, anneal_lr=False)
    c.props.update(lr=1e-3, kl_coef=0.1, target_kl=0.05, se_steps=400)  # one fit: run it out
  if 'smoke' in args:
    c.num_seeds = 2
    c.ppo.update(epochs=2, minibatches=4)
    c.props.update(epochs=2, minibatches=4)
    if 'fixed' in args:
      c.b = 4
      c.loop.update(total_steps=256, n=64, m=32, eval_every=4, eval_episodes=2, measure_every=4)
      c.props.se_steps = 6
    else:
      c.loop.update(total_steps=512, n=128, m=64, eval_every=2, eval_episodes=2)
  return c
