"""PROPS at paper scale: MuJoCo, ~1M env steps per run, the tuned settings of the official code.

    python -m common.main --config=configs/props/paper_mujoco.py:hopper,props --workdir=DIR
    python -m common.main --config=configs/props/paper_mujoco.py:walker2d,ppo --workdir=DIR
    python -m common.main --config=configs/props/paper_mujoco.py:tiny --workdir=/tmp/props_tiny

The paper (Corrado & Hanna, "On-Policy Policy Gradient Reinforcement Learning Without On-Policy
Sampling"): Swimmer, Hopper, HalfCheetah, Walker2d, Ant, Humanoid (v4), 1M steps, 50 seeds,
PPO vs PPO-buffer (b = 2) vs PROPS (b = 2); headline: PROPS has a larger area under the return
curve than PPO on 5 of 6 tasks and lower sampling error than PPO-buffer on all. Hardware: CPU
jobs (the official PyTorch code, one environment per run, ~210 env steps per CPU-second).

Settings per task and arm are the tuned values the paper-era official code
(NicholasCorrado/PPOROS, `PROPS/hyperparams/`) names: PPO `PPO_PARAMS` (n, lr), PPO-buffer
`ppo_buffer.py` b = 2 (n, lr) and PROPS the selected run paths of `ppo_ros.py`
(`b_2/s_<n>/s_<m>/lr_<PPO lr>/lr_<PROPS lr>/kl_<PPO KL>/kl_<PROPS KL>/l_<lambda>/e_<epochs>/
mb_<minibatches>/c_<clip>`). Shared: PPO 10 epochs x 32 minibatches, clip 0.2, gamma 0.99, GAE
0.95, grad clip 0.5, constant learning rates; PROPS grad clip 0.5.

Here: gymnasium's v5 tasks (the `mujoco` wheel; v4 needs the same simulator),
`loop.total_steps` = 2^20 (1,048,576, so that every n divides it), evaluation every 16,384
steps with 10 deterministic episodes, target KL 0.03 for the PPO arms, sampling error measured
before every PPO update (`props.se_steps`). Runs through the gymnasium host loop
(`common.rl.host.HostRunner`: one env per seed, jitted updates, seeds vmapped), checkpointed
every `checkpoint_every` blocks of `loop.eval_every` PPO updates; a killed run resumes
bit-identically.
`:tiny` keeps the settings tree and runs a few hundred Hopper steps (tests/test_paper_configs.py).
"""

import ml_collections

from common.config import config_args

TASKS = {'swimmer': 'Swimmer', 'hopper': 'Hopper', 'halfcheetah': 'HalfCheetah',
         'walker2d': 'Walker2d', 'ant': 'Ant', 'humanoid': 'Humanoid'}
ARMS = ('ppo', 'ppo_buffer', 'props')
PPO = {'swimmer': (2048, 1e-3), 'halfcheetah': (1024, 1e-4), 'hopper': (1024, 1e-4),
       'walker2d': (8192, 1e-3), 'ant': (1024, 1e-4), 'humanoid': (8192, 1e-4)}
PPO_BUFFER = {'swimmer': (2048, 1e-3), 'halfcheetah': (4096, 1e-3), 'hopper': (1024, 1e-4),
              'walker2d': (4096, 1e-3), 'ant': (1024, 1e-4), 'humanoid': (8192, 1e-4)}
# n, m, PPO lr, PROPS lr, PPO target KL, PROPS target KL, lambda, epochs, minibatches, clip
PROPS = {'swimmer': (4096, 2048, 1e-3, 1e-4, 0.03, 0.03, 0.01, 16, 16, 0.3),
         'halfcheetah': (1024, 512, 1e-4, 1e-3, 0.03, 0.05, 0.3, 16, 16, 0.3),
         'hopper': (2048, 256, 1e-3, 1e-3, 0.03, 0.05, 0.3, 16, 16, 0.3),
         'walker2d': (2048, 256, 1e-3, 1e-3, 0.03, 0.1, 0.3, 16, 32, 0.3),
         'ant': (1024, 1024, 1e-4, 1e-4, 0.03, 0.1, 0.1, 16, 16, 0.3),
         'humanoid': (8192, 256, 1e-4, 1e-4, 0.03, 0.1, 0.1, 16, 32, 0.3)}
TOTAL_STEPS, EVAL_PERIOD = 2 ** 20, 2 ** 14


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, (*TASKS, *ARMS, 'tiny'))
  task = next((a for a in args if a in TASKS), 'hopper')
  arm = next((a for a in args if a in ARMS), 'props')
  n, m, ppo_lr, props_lr, ppo_kl, props_kl, lam, epochs, minibatches, clip = PROPS[task]
  if arm != 'props':
    n, ppo_lr = (PPO if arm == 'ppo' else PPO_BUFFER)[task]
    m = 0
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.props.experiment'
  c.backend = 'gymnasium'
  c.env = f'{TASKS[task]}-v5'
  c.arm = arm
  c.seed = 0
  c.num_seeds = 10
  c.b = 2
  c.checkpoint_every = 4  # blocks of loop.eval_every PPO updates
  c.keep_checkpoints = 2
  c.loop = dict(total_steps=TOTAL_STEPS, n=n, m=m, eval_every=max(1, EVAL_PERIOD // n),
                eval_episodes=10)
  c.ppo = dict(lr=ppo_lr, epochs=10, minibatches=32, target_kl=ppo_kl, ent_coef=0.0)
  c.props = dict(lr=props_lr, epochs=epochs, minibatches=minibatches, clip_eps=clip,
                 kl_coef=lam, target_kl=props_kl, official=False, se_steps=100)
  if 'tiny' in args:
    c.num_seeds = 1
    c.loop.update(total_steps=256, n=128, m=64 if arm == 'props' else 0, eval_every=1,
                  eval_episodes=1)
    c.ppo.update(epochs=1, minibatches=2)
    c.props.update(epochs=1, minibatches=2, se_steps=2)
  return c
