"""PROPS (Algorithm 1 + 2) as hooks of the shared FIFO-buffer PPO loop (common.rl.loop).

Every m steps the behaviour policy is reset to the target (its Adam state persists) and takes
up to epochs x minibatches steps on the PROPS loss over the buffer (minus its oldest m rows once
full), stopping before the first minibatch whose approximate KL(pi_t, pi_b) exceeds target_kl.
Arms: 'ppo' (b = 1, on-policy), 'ppo_buffer' (b = 2, on-policy sampling), 'props' (b = 2).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from common.rl import host
from common.rl import loop as looplib
from common.rl import ppo as ppolib
from papers.props import losses
from papers.props import sampling_error as selib


@dataclasses.dataclass(frozen=True)
class PROPSConfig:
  lr: float = 1e-4
  epochs: int = 16
  minibatches: int = 16
  clip_eps: float = 0.3
  kl_coef: float = 0.3
  target_kl: float = 0.05
  max_grad_norm: float = 0.5
  official: bool = False  # pre-PPO target statistics + the official discrete-KL broadcast
  se_steps: int = 0        # > 0: measure sampling error (L-BFGS iterations of the fit)


def behavior_update_fn(agent: looplib.Agent, m: int, rows: int, cfg: PROPSConfig):
  tx = ppolib.optimizer(cfg.lr, cfg.max_grad_norm)

  def update(opt_state, actor_params, view, key):
    # with official=True the ratio denominators are the target's BEFORE the latest PPO update
    target_params = view['pre_actor'] if cfg.official else actor_params
    out_t = jax.lax.stop_gradient(agent.actor.apply(target_params, view['obs']))
    full = view['count'] >= rows
    mask = view['mask'] * jnp.where(full & (jnp.arange(rows) < m), 0.0, 1.0)
    batch = {'obs': view['obs'], 'actions': view['actions'], 'out_t': out_t}

    def loss_fn(p, mb, w):
      out_b = agent.actor.apply(p, mb['obs'])
      if agent.discrete:
        return losses.behavior_loss_categorical(out_b, mb['out_t'], mb['actions'], cfg.clip_eps,
                                                cfg.kl_coef, w, official_kl=cfg.official)
      (mu_b, ls_b), (mu_t, ls_t) = out_b, mb['out_t']
      return losses.behavior_loss_gaussian(mu_b, ls_b, mu_t, ls_t, mb['actions'], cfg.clip_eps,
                                           cfg.kl_coef, w)

    def loss_metrics(p, mb, w):
      loss, m_ = loss_fn(p, mb, w)
      return loss, {k: v for k, v in m_.items() if k != 'ratio'}

    params, opt_state, metrics = ppolib.minibatch_epochs(
        loss_metrics, actor_params, opt_state, tx, batch, mask, key, cfg.epochs,
        cfg.minibatches, cfg.target_kl)
    return params, opt_state, metrics

  return tx, update


def make_hooks(agent: looplib.Agent, loop_cfg: looplib.LoopConfig, cfg: PROPSConfig,
               props: bool) -> looplib.Hooks:
  """PROPS behaviour updates when `props`, else on-policy sampling (behaviour = target).

  With `cfg.se_steps` the sampling error of the buffer (`sampling_error`, and `..._half` after
  half the fit) is measured before PPO updates (`LoopConfig.measure_every`), and with the
  loop's reference stream also that of the on-policy buffer sampled from the same target
  sequence (`reference_...`)."""
  measure = looplib.Hooks().measure
  if cfg.se_steps:
    def measure(actor_params, view, key):
      del key

      def se(prefix, obs, actions):
        out = selib.network_sampling_error(agent.discrete, actor_params, obs, actions,
                                           view['mask'], cfg.se_steps)
        return {f'{prefix}sampling_error': out['sampling_error'],
                f'{prefix}sampling_error_half': out['half'],
                f'{prefix}fit_grad_norm': out['grad_norm']}
      metrics = se('', view['obs'], view['actions'])
      if 'ref_obs' in view:
        metrics.update(se('reference_', view['ref_obs'], view['ref_actions']))
      return metrics
  if not props:
    return looplib.Hooks(measure=measure)
  tx, update = behavior_update_fn(agent, loop_cfg.period, loop_cfg.b * loop_cfg.n, cfg)
  return looplib.Hooks(behavior_init=tx.init, behavior_update=update, measure=measure)


ARMS = ('ppo', 'ppo_buffer', 'props')


def arm_config(arm: str, base: looplib.LoopConfig, b: int = 2, measure: bool = True
               ) -> looplib.LoopConfig:
  """The loop of an arm; the on-policy reference stream runs only where it is `measure`d."""
  base = dataclasses.replace(base, reference=base.reference and measure)
  if arm == 'ppo':
    return dataclasses.replace(base, b=1, m=0)
  if arm == 'ppo_buffer':
    return dataclasses.replace(base, b=b, m=0)
  if arm == 'props':
    return dataclasses.replace(base, b=b)
  raise ValueError(f'unknown arm {arm!r}: one of {ARMS}')


def make_runner(env, env_params, arm: str, base: looplib.LoopConfig, cfg: PROPSConfig,
                b: int = 2) -> looplib.Runner:
  """gymnax: the blocked, checkpointable loop of one arm (`common.rl.loop.Runner`)."""
  loop_cfg = arm_config(arm, base, b, cfg.se_steps > 0)
  obs_dim = int(jnp.prod(jnp.asarray(env.observation_space(env_params).shape)))
  space = env.action_space(env_params)
  discrete = hasattr(space, 'n')
  agent = looplib.make_agent(obs_dim, int(space.n) if discrete else int(space.shape[0]),
                             discrete)
  return looplib.make_runner(env, env_params, loop_cfg,
                             make_hooks(agent, loop_cfg, cfg, arm == 'props'))


def make_train(env, env_params, arm: str, base: looplib.LoopConfig, cfg: PROPSConfig,
               b: int = 2):
  """gymnax: (train(key) -> metrics, loop) for one arm and one seed; for vmapped seeds use
  `make_runner(...).train_seeds(keys)`."""
  runner = make_runner(env, env_params, arm, base, cfg, b)
  return (lambda key: runner.run(runner.init(key))), runner.loop


def make_host_runner(make_env, num_seeds: int, arm: str, base: looplib.LoopConfig,
                     cfg: PROPSConfig, b: int = 2) -> host.HostRunner:
  """gymnasium (MuJoCo): the blocked, checkpointable host loop of one arm, `num_seeds` envs."""
  loop_cfg = arm_config(arm, base, b, cfg.se_steps > 0)
  env = make_env()
  discrete = hasattr(env.action_space, 'n')
  agent = looplib.make_agent(int(env.observation_space.shape[0]),
                             int(env.action_space.n) if discrete
                             else int(env.action_space.shape[0]), discrete)
  env.close()
  return host.HostRunner(make_env, num_seeds, loop_cfg,
                         make_hooks(agent, loop_cfg, cfg, arm == 'props'))
