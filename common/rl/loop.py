"""A PPO loop with a FIFO buffer of b batches and a pluggable behaviour policy.

One stream per seed (one environment), as in the PROPS code. Every m steps the chunk is pushed
into the buffer (raw observations and rewards; normalised later with current statistics) and the
behaviour policy is updated by `hooks.behavior_update`; every n steps, before that, the whole
buffer is re-evaluated under the target policy (log-probs, values, GAE as one stream) and PPO
updates on all valid rows. With b = 1 and the default hooks this is plain PPO (on-policy); with
b = 2 it is PPO with a buffer. Two drivers share every update function:

- `make_runner(env, env_params, ...)`: gymnax, the whole run is one `jit` of nested `lax.scan`s
  with seeds vmapped (PureJaxRL style), or a host loop over jitted blocks that checkpoints
  between them (`common.rl.run.run_blocks`); `make_train` is the single-seed `train(key)`.
- `common.rl.host.HostRunner`: gymnasium (MuJoCo), a host loop over one environment per seed,
  with the action sampling and all updates jitted and vmapped over seeds, in the same blocks.

With `LoopConfig.reference` both drivers also run an on-policy *reference stream* per seed: a
second environment that always acts with the current target policy (never the behaviour policy),
its own FIFO buffer of b * n raw observations and actions pushed at the same steps as the
training buffer, so every chunk of it was sampled from the very target that was in effect when
the training buffer's chunk was collected. It never trains anything nor updates the running
statistics, and draws its randomness from keys folded off the training stream's, so the
training stream is the same with or without it. `hooks.measure` sees it as `ref_obs`,
`ref_actions` (e.g. to compare a buffer's sampling error with on-policy sampling's under the
same target sequence).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from common.rl import networks, normalize
from common.rl import ppo as ppolib


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  total_steps: int = 100_000
  n: int = 1024          # steps per PPO update (target batch)
  b: int = 1             # buffer batches (buffer = b * n rows)
  m: int = 0             # behaviour-update period (0 -> n); n % m == 0
  anneal_steps: int = 0  # with ppo.anneal_lr: annealing horizon in env steps (0 -> total_steps)
  reference: bool = False  # run the on-policy reference stream (module docstring)
  measure_every: int = 1  # hooks.measure before every k-th PPO update (k divides eval_every)
  eval_every: int = 4    # PPO updates between evaluations of the target policy
  eval_episodes: int = 8
  norm_obs: bool = True
  norm_obs_update: bool = True  # False: the observation statistics stay as loaded (a frozen
  # expert's normaliser is part of its policy)
  norm_reward: bool = True
  ppo: ppolib.PPOConfig = ppolib.PPOConfig()

  @property
  def period(self) -> int:
    return self.m or self.n

  @property
  def num_updates(self) -> int:
    """PPO updates of the annealing horizon (CleanRL: total_timesteps // batch size)."""
    return (self.anneal_steps or self.total_steps) // self.n

  def check(self) -> None:
    if (self.n % self.period or self.total_steps % (self.n * self.eval_every)
        or self.eval_every % self.measure_every):
      raise ValueError('need n % m == 0, total_steps % (n * eval_every) == 0 and eval_every % '
                       f'measure_every == 0: {self}')


@dataclasses.dataclass(frozen=True)
class Hooks:
  """behavior_init(actor_params) -> hstate;
  behavior_update(hstate, actor_params, view, key) -> (behaviour_params, hstate, metrics);
  measure(actor_params, view, key) -> metrics (called before every `measure_every`-th PPO
  update, the last of each group in a block; its metrics are NaN at the other updates).
  `view`: obs (buffer obs normalised with current statistics), actions, mask (valid rows),
  count, pre_actor (the target actor when this chunk ended, before the PPO update of this
  chunk end if it has one: the target whose log-probs the official code hands the behaviour
  update), and with `LoopConfig.reference` ref_obs (normalised), ref_actions."""
  behavior_init: Callable = lambda actor_params: ()
  behavior_update: Callable = lambda h, actor_params, view, key: (actor_params, h, {})
  measure: Callable = lambda actor_params, view, key: {}


@dataclasses.dataclass(frozen=True)
class Agent:
  actor: networks.Actor
  critic: networks.Critic
  obs_dim: int
  action_dim: int
  discrete: bool

  def init(self, key: jax.Array) -> dict:
    k1, k2 = jax.random.split(key)
    obs = jnp.zeros((1, self.obs_dim))
    return {'actor': self.actor.init(k1, obs), 'critic': self.critic.init(k2, obs)}


def make_agent(obs_dim: int, action_dim: int, discrete: bool) -> Agent:
  return Agent(networks.Actor(action_dim, discrete), networks.Critic(), obs_dim, action_dim,
               discrete)


def init_seeds(init: Callable, keys: Sequence[jax.Array], *args: Any) -> Any:
  """`init(keys[i], *(a[i] for a in args))` for every seed, stacked on a leading seed axis.

  Seeds are initialised one at a time, never under `vmap`: the orthogonal initialiser's QR,
  batched over seeds, runs LAPACK's `ParallelBatchMap` on XLA:CPU's intra-op thread pool, and
  with two such QRs in flight (actor and critic) that pool deadlocks: every pool thread idle,
  both QRs waiting for their batch tasks, the host blocked forever on the first read of the
  result (jaxlib 0.10.2, 2 cores; within a few thousand calls of a 2-seed vmapped init).
  `init` is jitted here unless it already is."""
  init = init if hasattr(init, 'lower') else jax.jit(init)
  states = jax.device_get([init(k, *(a[i] for a in args)) for i, k in enumerate(keys)])
  # stacked on the host: no program per leaf shape, and no weak types (a jitted block would
  # compile once for the weakly typed initial carry and again for the carry it returns)
  return jax.tree.map(lambda *x: np.stack(x), *states)


class Loop:
  """The per-seed pure functions of the loop (vmap them over seeds)."""

  def __init__(self, agent: Agent, cfg: LoopConfig, hooks: Hooks = Hooks()):
    cfg.check()
    self.agent, self.cfg, self.hooks = agent, cfg, hooks
    self.tx = ppolib.optimizer(cfg.ppo.lr, cfg.ppo.max_grad_norm)
    self.rows = cfg.b * cfg.n

  # -- state ----------------------------------------------------------------------------------
  def init(self, key: jax.Array, obs0: jax.Array) -> dict:
    params = self.agent.init(key)
    act_shape = () if self.agent.discrete else (self.agent.action_dim,)
    obs_rms = normalize.rms_init((self.agent.obs_dim,))
    if self.cfg.norm_obs and self.cfg.norm_obs_update:
      obs_rms = normalize.rms_update(obs_rms, obs0[None])
    actions = jnp.zeros((self.rows,) + act_shape, jnp.int32 if self.agent.discrete else jnp.float32)
    state = {
        'params': params, 'opt': self.tx.init(params), 'behavior': params['actor'],
        'hstate': self.hooks.behavior_init(params['actor']), 'pre_actor': params['actor'],
        'buf': {'obs': jnp.zeros((self.rows, self.agent.obs_dim)), 'actions': actions,
                'rewards': jnp.zeros((self.rows,)), 'dones': jnp.zeros((self.rows,))},
        'count': jnp.asarray(0, jnp.int32), 'updates': jnp.asarray(0, jnp.int32),
        'obs_rms': obs_rms, 'ret_rms': normalize.rms_init(), 'ret_acc': jnp.asarray(0.0),
    }
    if self.cfg.reference:
      state['ref_buf'] = {'obs': jnp.zeros((self.rows, self.agent.obs_dim)), 'actions': actions}
    return state

  def norm_obs(self, state: dict, obs: jax.Array) -> jax.Array:
    return normalize.normalize_obs(state['obs_rms'], obs) if self.cfg.norm_obs else obs

  def act(self, state: dict, obs_raw: jax.Array, key: jax.Array) -> jax.Array:
    """The behaviour policy's action for one raw observation."""
    out = self.agent.actor.apply(state['behavior'], self.norm_obs(state, obs_raw))
    return networks.sample(self.agent.discrete, out, key)

  def act_target(self, state: dict, obs_raw: jax.Array, key: jax.Array) -> jax.Array:
    """The target policy's (sampled) action for one raw observation: the reference stream."""
    out = self.agent.actor.apply(state['params']['actor'], self.norm_obs(state, obs_raw))
    return networks.sample(self.agent.discrete, out, key)

  def observe(self, state: dict, next_obs_raw: jax.Array, reward: jax.Array,
              next_done: jax.Array) -> dict:
    """Running statistics after one env step (gymnasium wrapper order)."""
    state = dict(state)
    if self.cfg.norm_obs and self.cfg.norm_obs_update:
      state['obs_rms'] = normalize.rms_update(state['obs_rms'], next_obs_raw[None])
    if self.cfg.norm_reward:
      state['ret_rms'], state['ret_acc'] = normalize.reward_stats_update(
          state['ret_rms'], state['ret_acc'], reward, next_done, self.cfg.ppo.gamma)
    return state

  # -- updates --------------------------------------------------------------------------------
  def view(self, state: dict) -> dict:
    buf = state['buf']
    view = {'obs': self.norm_obs(state, buf['obs']), 'actions': buf['actions'],
            'mask': (jnp.arange(self.rows) >= self.rows - state['count']).astype(jnp.float32),
            'count': state['count'], 'pre_actor': state['pre_actor']}
    if self.cfg.reference:
      view.update(ref_obs=self.norm_obs(state, state['ref_buf']['obs']),
                  ref_actions=state['ref_buf']['actions'])
    return view

  def push(self, state: dict, chunk: dict) -> dict:
    """FIFO: the chunk (time-major, m rows) enters at the end, the oldest m rows leave; with
    the reference stream its chunk (`ref_obs`, `ref_actions`) enters the reference buffer."""
    m = self.cfg.period

    def fifo(buf, new):
      return jax.tree.map(lambda b, c: jnp.concatenate([b[m:], c.astype(b.dtype)], 0), buf, new)

    state = dict(state, buf=fifo(state['buf'], {k: chunk[k] for k in state['buf']}),
                 count=jnp.minimum(state['count'] + m, self.rows))
    if self.cfg.reference:
      state['ref_buf'] = fifo(state['ref_buf'], {'obs': chunk['ref_obs'],
                                                 'actions': chunk['ref_actions']})
    return state

  def ppo_iteration(self, state: dict, next_obs_raw: jax.Array, next_done: jax.Array,
                    key: jax.Array, measure: bool | jax.Array = True) -> tuple[dict, dict]:
    """Re-evaluate the buffer under the target, GAE over it as one stream, PPO on valid rows.
    `measure` (a Python bool, or an unbatched traced one): run `hooks.measure` first, else
    its metrics are NaN."""
    k_measure, k_update = jax.random.split(key)
    a, cfg = self.agent, self.cfg.ppo
    view = self.view(state)
    params = state['params']
    out = a.actor.apply(params['actor'], view['obs'])
    values = a.critic.apply(params['critic'], view['obs'])
    rewards = state['buf']['rewards']
    if self.cfg.norm_reward:
      rewards = normalize.normalize_reward(state['ret_rms'], rewards)
    last_value = a.critic.apply(params['critic'], self.norm_obs(state, next_obs_raw))
    adv, ret = ppolib.gae(rewards, values, state['buf']['dones'], last_value,
                          next_done.astype(jnp.float32), cfg.gamma, cfg.gae_lambda)
    def run_measure():
      return self.hooks.measure(params['actor'], view, k_measure)

    def skip():
      return jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype),
                          jax.eval_shape(run_measure))

    if isinstance(measure, bool):
      measured = run_measure() if measure else skip()
    else:
      measured = jax.lax.cond(measure, run_measure, skip)
    metrics = {f'se/{k}': v for k, v in measured.items()}
    batch = {'obs': view['obs'], 'actions': view['actions'],
             'logp': networks.log_prob(a.discrete, out, view['actions']), 'values': values,
             'advantages': adv, 'returns': ret}
    lr_scale = (ppolib.anneal_fraction(state['updates'], self.cfg.num_updates)
                if cfg.anneal_lr else None)
    new_params, opt, m = ppolib.ppo_update(params, state['opt'], self.tx, a.actor.apply,
                                           a.critic.apply, a.discrete, batch, view['mask'],
                                           k_update, cfg, lr_scale)
    metrics.update({f'ppo/{k}': v for k, v in m.items()})
    metrics['ppo/lr'] = cfg.lr * (1.0 if lr_scale is None else lr_scale)
    return dict(state, params=new_params, opt=opt, updates=state['updates'] + 1), metrics

  def behavior_step(self, state: dict, key: jax.Array) -> tuple[dict, dict]:
    behavior, hstate, m = self.hooks.behavior_update(
        state['hstate'], state['params']['actor'], self.view(state), key)
    return dict(state, behavior=behavior, hstate=hstate), {f'behavior/{k}': v
                                                          for k, v in m.items()}

  def end_chunk(self, state: dict, chunk: dict, next_obs_raw: jax.Array, next_done: jax.Array,
                key: jax.Array, do_ppo: bool, measure: bool | jax.Array = True
                ) -> tuple[dict, dict]:
    """After m steps: push, (every n steps) PPO iteration, then the behaviour update.

    `pre_actor` is the target as this chunk ended, before this chunk end's PPO update if there
    is one (on the other chunks it is the current target)."""
    k1, k2 = jax.random.split(key)
    state = dict(self.push(state, chunk), pre_actor=state['params']['actor'])
    metrics = {}
    if do_ppo:
      state, metrics = self.ppo_iteration(state, next_obs_raw, next_done, k1, measure)
    state, bm = self.behavior_step(state, k2)
    metrics.update(bm)
    return state, metrics


# ---- gymnax driver: everything inside jit ----------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Runner:
  """The gymnax loop in blocks of `eval_every` PPO updates, each followed by an evaluation.

  Per seed and pure: `init(key)` -> carry (agent state, env state, episode stats, PRNG key data);
  `block(carry)` -> (carry, metrics); `evaluate(carry, key)` -> mean return of the target policy.
  The carry is a plain pytree, so a host loop can checkpoint it between blocks and resume
  bit-identically (`common.rl.run.run_blocks`); `train_seeds` runs all blocks in one `jit`.
  """
  init: Callable
  block: Callable
  evaluate: Callable
  blocks: int
  loop: Loop

  def init_seeds(self, keys: Sequence[jax.Array]) -> dict:
    """Stacked initial carries, one seed at a time (`init_seeds`: a vmapped init deadlocks)."""
    return init_seeds(self.init, list(keys))

  def evaluate_initial(self, carry: dict) -> jax.Array:
    """The evaluation before training, with a key of its own (not taken from the run's)."""
    return self.evaluate(carry, jax.random.fold_in(jax.random.wrap_key_data(carry['key']), 1))

  def run(self, carry: dict) -> dict:
    """All blocks of one seed: metrics per PPO update, eval_return per evaluation (incl. 0)."""
    first = self.evaluate_initial(carry)
    _, metrics = jax.lax.scan(lambda c, _: self.block(c), carry, None, length=self.blocks)
    evals = metrics.pop('eval_return')
    metrics = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), metrics)
    metrics['eval_return'] = jnp.concatenate([first[None], evals])
    return metrics

  def train_seeds(self, keys: jax.Array) -> dict:
    """`run` for every seed key, vmapped in one jit (leading seed axis on every metric)."""
    return jax.jit(jax.vmap(self.run))(self.init_seeds(keys))


def make_runner(env, env_params, cfg: LoopConfig, hooks: Hooks = Hooks()) -> Runner:
  """The per-seed functions of a gymnax run (see `Runner`)."""
  obs_dim = int(np.prod(env.observation_space(env_params).shape))
  space = env.action_space(env_params)
  discrete = hasattr(space, 'n')
  action_dim = int(space.n) if discrete else int(np.prod(space.shape))
  loop = Loop(make_agent(obs_dim, action_dim, discrete), cfg, hooks)
  m, k_chunks = cfg.period, cfg.n // cfg.period
  max_steps = int(env_params.max_steps_in_episode)

  def env_action(action):
    """What the environment receives: continuous actions clipped to the action space
    (gymnasium's ClipAction, as CleanRL); the buffer keeps the sampled action."""
    return action if discrete else jnp.clip(action, space.low, space.high)

  def env_step(carry, key):
    state, env_state, obs, done, ep, ref = carry
    k_act, k_env = jax.random.split(key)
    action = loop.act(state, obs, k_act)
    next_obs, env_state, reward, term, trunc, _ = env.step(k_env, env_state, env_action(action),
                                                           env_params)
    out = {'obs': obs, 'actions': action, 'rewards': reward, 'dones': done}
    if cfg.reference:  # the on-policy reference stream, keys folded off this step's key
      k_ref_act, k_ref_env = jax.random.split(jax.random.fold_in(key, 1))
      ref_action = loop.act_target(state, ref['obs'], k_ref_act)
      ref_next, ref_env, *_ = env.step(k_ref_env, ref['env_state'], env_action(ref_action),
                                       env_params)
      out.update(ref_obs=ref['obs'], ref_actions=ref_action)
      ref = {'env_state': ref_env, 'obs': ref_next}
    next_done = (term | trunc).astype(jnp.float32)  # CleanRL: truncation ends the stream too
    state = loop.observe(state, next_obs, reward, next_done)
    ret = ep['ret'] + reward
    ep = {'ret': ret * (1 - next_done), 'sum': ep['sum'] + ret * next_done,
          'episodes': ep['episodes'] + next_done}
    return (state, env_state, next_obs, next_done, ep, ref), out

  def chunk(carry, key, do_ppo, measure=True):
    k_steps, k_end = jax.random.split(key)
    carry, traj = jax.lax.scan(env_step, carry, jax.random.split(k_steps, m))
    state, env_state, obs, done, ep, ref = carry
    state, metrics = loop.end_chunk(state, traj, obs, done, k_end, do_ppo, measure)
    return (state, env_state, obs, done, ep, ref), metrics

  def ppo_iter(carry, xs):
    key, index = xs  # index: the update's place in the block (unbatched under vmap)
    measure = True if cfg.measure_every == 1 else (index + 1) % cfg.measure_every == 0
    keys = jax.random.split(key, k_chunks)
    ep0 = {'ret': carry[4]['ret'], 'sum': jnp.asarray(0.0), 'episodes': jnp.asarray(0.0)}
    carry = carry[:4] + (ep0, carry[5])
    if k_chunks > 1:
      carry, mid = jax.lax.scan(lambda c, k: chunk(c, k, False), carry, keys[:-1])
    carry, metrics = chunk(carry, keys[-1], True, measure)
    if k_chunks > 1:
      for name, v in mid.items():  # behaviour metrics: mean over the n/m updates
        metrics[name] = (v.sum(0) + metrics[name]) / k_chunks
    ep = carry[4]
    metrics['train_return'] = ep['sum'] / jnp.maximum(ep['episodes'], 1.0)
    return carry, metrics

  def evaluate(carry, key):
    state = carry['state']
    keys = jax.random.split(key, cfg.eval_episodes)
    obs, env_state = jax.vmap(env.reset, (0, None))(keys, env_params)

    def body(c, k):
      obs, env_state, ret, alive = c
      out = loop.agent.actor.apply(state['params']['actor'], loop.norm_obs(state, obs))
      action = networks.mode(loop.agent.discrete, out)
      obs, env_state, r, term, trunc, _ = jax.vmap(env.step, (0, 0, 0, None))(
          jax.random.split(k, cfg.eval_episodes), env_state, action, env_params)
      return (obs, env_state, ret + r * alive,
              alive * (1 - (term | trunc).astype(jnp.float32))), None

    init = (obs, env_state, jnp.zeros(cfg.eval_episodes), jnp.ones(cfg.eval_episodes))
    (_, _, ret, _), _ = jax.lax.scan(body, init, jax.random.split(key, max_steps))
    return ret.mean()

  names = ('state', 'env_state', 'obs', 'done', 'ep', 'ref')

  def block(carry):
    key, k_iter, k_eval = jax.random.split(jax.random.wrap_key_data(carry['key']), 3)
    inner = tuple(carry.get(k) for k in names)  # no 'ref' without the reference stream
    inner, metrics = jax.lax.scan(ppo_iter, inner, (jax.random.split(k_iter, cfg.eval_every),
                                                    jnp.arange(cfg.eval_every)))
    carry = {k: v for k, v in zip(names, inner, strict=True) if v is not None}
    carry['key'] = jax.random.key_data(key)
    metrics['eval_return'] = evaluate(carry, k_eval)
    return carry, metrics

  def init(key):
    k_init, k_env, k_run = jax.random.split(key, 3)
    obs, env_state = env.reset(k_env, env_params)
    zero = jnp.asarray(0.0)
    carry = {'state': loop.init(k_init, obs), 'env_state': env_state, 'obs': obs,
             'done': jnp.asarray(1.0), 'ep': {'ret': zero, 'sum': zero, 'episodes': zero},
             'key': jax.random.key_data(k_run)}
    if cfg.reference:
      ref_obs, ref_env = env.reset(jax.random.fold_in(k_env, 1), env_params)
      carry['ref'] = {'env_state': ref_env, 'obs': ref_obs}
    return carry

  return Runner(init, block, evaluate, cfg.total_steps // (cfg.n * cfg.eval_every), loop)


def make_train(env, env_params, cfg: LoopConfig, hooks: Hooks = Hooks()) -> tuple[Callable, Loop]:
  """Returns (train, loop): `train(key)` -> metrics for one seed (pure; jit it).
  metrics['eval_return'][i] is the target policy's mean (deterministic) return after
  i * eval_every PPO updates; the per-update metrics have one entry per PPO update.
  For several seeds use `make_runner(...).train_seeds(keys)` (vmapped)."""
  runner = make_runner(env, env_params, cfg, hooks)
  return (lambda key: runner.run(runner.init(key))), runner.loop
