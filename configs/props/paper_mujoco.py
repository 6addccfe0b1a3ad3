"""PROPS at paper scale: the six MuJoCo tasks with the settings of the runs the paper plots.

    python -m common.main --config=configs/props/paper_mujoco.py:hopper,props --workdir=DIR
    python -m common.main --config=configs/props/paper_mujoco.py:walker2d,ppo --workdir=DIR
    python -m common.main --config=configs/props/paper_mujoco.py:hopper,ppo,short --workdir=DIR
    python -m common.main --config=configs/props/paper_mujoco.py:tiny --workdir=/tmp/props_tiny

The paper (Corrado & Hanna, "On-Policy Policy Gradient Reinforcement Learning Without On-Policy
Sampling"): PPO (b = 1) vs PPO-buffer (b = 2, on-policy sampling) vs PROPS (b = 2) on Swimmer,
Hopper, HalfCheetah, Walker2d, Ant, Humanoid (v4), 50 seeds; headline: a larger area under the
return curve than PPO on 5 of 6 tasks and lower sampling error than on-policy sampling.

Settings per task and arm are those of the run files the paper's return figure reads
(NicholasCorrado/PPOROS, `PROPS/plotting/neurips/return.py` and the `config.yml` of each run under
`PROPS/plotting/neurips/data/rl/`): PPO = `ppo_buffer/b_1/s_<n>/lr_<lr>`, PPO-buffer =
`ppo_buffer/b_2/s_<n>/lr_<lr>`, PROPS = `ppo_ros/b_2/s_<n>/s_<m>/lr_<PPO lr>/lr_<PROPS lr>/
kl_0.03/kl_<PROPS KL>/l_<lambda>/e_<epochs>/mb_<minibatches>/c_<clip>`:

| task | T | PPO n, lr | PPO-buffer n, lr | PROPS n, m, PPO lr, PROPS lr, KL, lambda, e x mb |
| --- | --- | --- | --- | --- |
| Swimmer | 1M | 4096, 1e-3 | 2048, 1e-3 | 2048, 1024, 1e-3, 1e-5, 0.03, 0.1, 16 x 16 |
| Hopper | 1M | 2048, 1e-3 | 1024, 1e-4 | 2048, 256, 1e-3, 1e-3, 0.05, 0.3, 16 x 16 |
| HalfCheetah | 2M | 1024, 1e-4 | 4096, 1e-3 | 1024, 512, 1e-4, 1e-3, 0.05, 0.3, 16 x 16 |
| Walker2d | 2M | 4096, 1e-3 | 4096, 1e-3 | 2048, 256, 1e-3, 1e-3, 0.1, 0.3, 16 x 32 |
| Ant | 4M | 1024, 1e-4 | 1024, 1e-4 | 1024, 256, 1e-4, 1e-3, 0.03, 0.3, 16 x 16 |
| Humanoid | 6M | 8192, 1e-4 | 8192, 1e-4 | 8192, 256, 1e-4, 1e-4, 0.1, 0.1, 16 x 32 |

Ant's plotted PROPS runs are not in the repository (`return.py` reads a local `iclr/a_b2`
folder named `s_1024/s_256/lr_0.0001/lr_0.001/kl_0.03/kl_{0.03,0.05}/l_0.3/c_0.3`, the two KL
values pooled): this config takes KL 0.03 and the code's defaults of 16 epochs x 16 minibatches.
`return.py` also pools any runs of a grid found in a local `props_b1_50` folder (not in the
repository either). Every run file shares: PPO 10 epochs x 32 minibatches, clip 0.2, value
clipping, entropy coefficient 0.01, value coefficient 0.5, gradient norm 0.5, target KL 0.03,
gamma 0.99, GAE lambda 0.95, the learning rate annealed linearly over T // n updates
(`anneal_lr: true`); PROPS clip 0.3, gradient norm 0.5, constant learning rate; ClipAction and
running observation / reward normalisation (clip 10); 20 deterministic evaluation episodes every
10 PPO updates.

Here: gymnasium's v4 tasks (the `mujoco` bindings), `loop.total_steps` = the last evaluated
step (10 n * floor(T / 10 n), as in the run files) with the annealing horizon T
(`loop.anneal_steps`), sampling error and its on-policy reference measured before the last PPO
update of every evaluation period (`props.se_steps`, `loop.reference`, `loop.measure_every`;
`papers/props/sampling_error.py`; the run files measure about 30 times per run). Runs through the
gymnasium host loop (`common.rl.host.HostRunner`: one env per seed, jitted updates, seeds
vmapped), checkpointed every `checkpoint_every` blocks of `loop.eval_every` PPO updates; a
killed run resumes bit-identically.
`:short` is the fidelity run of the reproduction: the same settings (annealing horizon T
included, so the learning rate follows the run files' schedule) for 5 evaluation periods of
20,480 env steps (the smallest multiple of n at least that), 5 evaluation episodes,
sampling error measured twice per period:
every arm is evaluated at the steps at which the run files of n = 2048 are (for Hopper,
`papers/props/reproduce.py` plots the paper's mean curves there). `:tiny` keeps the settings
tree and runs a few hundred Hopper steps (tests/test_paper_configs.py); `:smoke` is the same
with 2 seeds and a few more steps (tests).
"""

import ml_collections

from common.config import config_args

TASKS = {'swimmer': 'Swimmer', 'hopper': 'Hopper', 'halfcheetah': 'HalfCheetah',
         'walker2d': 'Walker2d', 'ant': 'Ant', 'humanoid': 'Humanoid'}
ARMS = ('ppo', 'ppo_buffer', 'props')
TOTAL = {'swimmer': 1_000_000, 'hopper': 1_000_000, 'halfcheetah': 2_000_000,
         'walker2d': 2_000_000, 'ant': 4_000_000, 'humanoid': 6_000_000}
# n, PPO lr of the plotted PPO (b = 1) and PPO-buffer (b = 2) runs
PPO = {'swimmer': (4096, 1e-3), 'halfcheetah': (1024, 1e-4), 'hopper': (2048, 1e-3),
       'walker2d': (4096, 1e-3), 'ant': (1024, 1e-4), 'humanoid': (8192, 1e-4)}
PPO_BUFFER = {'swimmer': (2048, 1e-3), 'halfcheetah': (4096, 1e-3), 'hopper': (1024, 1e-4),
              'walker2d': (4096, 1e-3), 'ant': (1024, 1e-4), 'humanoid': (8192, 1e-4)}
# n, m, PPO lr, PROPS lr, PROPS target KL, lambda, epochs, minibatches of the plotted PROPS runs
PROPS = {'swimmer': (2048, 1024, 1e-3, 1e-5, 0.03, 0.1, 16, 16),
         'halfcheetah': (1024, 512, 1e-4, 1e-3, 0.05, 0.3, 16, 16),
         'hopper': (2048, 256, 1e-3, 1e-3, 0.05, 0.3, 16, 16),
         'walker2d': (2048, 256, 1e-3, 1e-3, 0.1, 0.3, 16, 32),
         'ant': (1024, 256, 1e-4, 1e-3, 0.03, 0.3, 16, 16),
         'humanoid': (8192, 256, 1e-4, 1e-4, 0.1, 0.1, 16, 32)}
EVAL_UPDATES = 10  # PPO updates between evaluations (`eval_freq`)
SHORT_EVAL, SHORT_EVALS = 20_480, 5  # `:short`: evaluation period (env steps), evaluations


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, (*TASKS, *ARMS, 'short', 'tiny', 'smoke'))
  task = next((a for a in args if a in TASKS), 'hopper')
  arm = next((a for a in args if a in ARMS), 'props')
  n, m, ppo_lr, props_lr, props_kl, lam, epochs, minibatches = PROPS[task]
  if arm != 'props':
    n, ppo_lr = (PPO if arm == 'ppo' else PPO_BUFFER)[task]
    m = 0
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.props.experiment'
  c.backend = 'gymnasium'
  c.env = f'{TASKS[task]}-v4'
  c.arm = arm
  c.seed = 0
  c.num_seeds = 10
  c.b = 2
  c.checkpoint_every = 1  # blocks of loop.eval_every PPO updates
  c.keep_checkpoints = 2
  period = EVAL_UPDATES * n
  c.loop = dict(total_steps=TOTAL[task] // period * period, n=n, m=m, eval_every=EVAL_UPDATES,
                eval_episodes=20, norm_obs=True, norm_reward=True, anneal_steps=TOTAL[task],
                reference=True, measure_every=EVAL_UPDATES)
  c.ppo = dict(lr=ppo_lr, epochs=10, minibatches=32, target_kl=0.03, ent_coef=0.01,
               anneal_lr=True)
  c.props = dict(lr=props_lr, epochs=epochs, minibatches=minibatches, clip_eps=0.3,
                 kl_coef=lam, target_kl=props_kl, official=False, se_steps=100)
  if 'short' in args:
    every = -(-SHORT_EVAL // n)  # PPO updates per evaluation: 20,480 steps when n divides it
    c.loop.update(total_steps=SHORT_EVALS * every * n, eval_every=every, eval_episodes=5,
                  measure_every=max(1, every // 2))
  if 'tiny' in args or 'smoke' in args:
    c.num_seeds = 1 if 'tiny' in args else 2
    c.loop.update(total_steps=256 if 'tiny' in args else 512, n=128,
                  m=64 if arm == 'props' else 0, eval_every=1, eval_episodes=1, anneal_steps=1024,
                  measure_every=1)
    c.ppo.update(epochs=1 if 'tiny' in args else 2, minibatches=2 if 'tiny' in args else 4)
    c.props.update(epochs=1 if 'tiny' in args else 2, minibatches=2 if 'tiny' in args else 4,
                   se_steps=2 if 'tiny' in args else 6)
  return c
