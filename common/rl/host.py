"""The gymnasium (MuJoCo) driver of the PPO loop: host environments, jitted updates, in blocks.

`HostRunner` steps one gymnasium environment per seed on the host; action sampling, running
statistics, PPO and behaviour updates are jitted and vmapped over seeds (`common.rl.loop.Loop`).
Like the gymnax `Runner` it runs in blocks of `eval_every` PPO updates, each followed by an
evaluation of the target policy, and its carry is a plain pytree, so `common.rl.run.run_blocks`
checkpoints it between blocks and a killed run resumes at its newest block boundary.

Continuous actions reach the environment clipped to its action space (gymnasium's
`ClipAction`, which CleanRL and the official PROPS code wrap every environment in: MuJoCo's
control cost sees the clipped action); the buffer keeps the sampled, unclipped action.
With `LoopConfig.reference` a second environment per seed runs the on-policy reference stream
(`common.rl.loop`), checkpointed like the training environments.

What the carry holds, and why a resumed run is bit-identical to an uninterrupted one:
- the agent, optimiser, behaviour and normaliser states and the buffer (device arrays), the PRNG
  key, and per seed the last observation, done flag and running episode return;
- per environment, MuJoCo's whole integration state (`mj_getState(mjSTATE_INTEGRATION)`: time,
  qpos, qvel, actuator activations, the solver's warm start, controls and applied forces), the
  `TimeLimit` step count, and the state of the environment's own generator (`np_random`, which
  draws the initial state of every reset after the first).
Every block starts by writing these into the environments (`set_env_state`), in a fresh run as
in a resumed one, so both step the same simulator states with the same actions. Evaluation
environments are reset with fixed seeds at every evaluation and hold nothing between blocks.
Not restored (none is used here): render state and the statistics of gymnasium wrappers other
than `TimeLimit` (e.g. `RecordEpisodeStatistics`); environments without MuJoCo state are refused.
Float64 host values are stored as their uint32 words: with JAX's 64-bit mode off a float64
checkpoint leaf would come back as float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from common.rl import loop as looplib
from common.rl import networks

MJ_STATE = mujoco.mjtState.mjSTATE_INTEGRATION
EVAL_SEED = 10_000  # evaluation episode j resets with seed EVAL_SEED + j
KEY_OFFSET = 12_345  # the run's PRNG key is key(seeds[0] + KEY_OFFSET)
REF_SEED_OFFSET = 20_000  # seed s's reference-stream environment resets with s + REF_SEED_OFFSET


def env_action(space, action: np.ndarray) -> np.ndarray:
  """What the environment receives: a Box action clipped to the space's bounds (gymnasium's
  ClipAction); other actions unchanged."""
  if hasattr(space, 'n'):
    return action
  return np.clip(action, space.low, space.high)


def _bits(x: Any) -> np.ndarray:
  """float64 values as uint32 words (last axis doubled), bit-exact."""
  return np.ascontiguousarray(x, np.float64).view(np.uint32)


def _float64(bits: Any) -> np.ndarray:
  return np.ascontiguousarray(np.asarray(bits), np.uint32).view(np.float64)


def _words(value: int, n: int) -> list[int]:
  return [(value >> (32 * i)) & 0xFFFFFFFF for i in range(n)]


def _join(words: Sequence[Any]) -> int:
  return sum(int(w) << (32 * i) for i, w in enumerate(words))


def _time_limit(env) -> Any:
  while not hasattr(env, '_elapsed_steps'):
    if not hasattr(env, 'env'):
      return None
    env = env.env
  return env


def _mujoco(env) -> Any:
  u = env.unwrapped
  if not (hasattr(u, 'model') and hasattr(u, 'data')):
    raise TypeError(f'{u} has no MuJoCo state: the gymnasium host loop checkpoints MuJoCo '
                    'environments only')
  return u


def env_state(env) -> dict[str, np.ndarray]:
  """A MuJoCo gymnasium environment's state as arrays: {'mujoco', 'rng', 'elapsed'}."""
  u = _mujoco(env)
  mj = np.empty(mujoco.mj_stateSize(u.model, MJ_STATE))
  mujoco.mj_getState(u.model, u.data, mj, MJ_STATE)
  rng = u.np_random.bit_generator.state
  if rng['bit_generator'] != 'PCG64':
    raise TypeError(f'env generator {rng["bit_generator"]}: only PCG64 is checkpointed')
  words = (_words(rng['state']['state'], 4) + _words(rng['state']['inc'], 4)
           + [rng['has_uint32'], rng['uinteger']])
  limit = _time_limit(env)
  return {'mujoco': _bits(mj), 'rng': np.asarray(words, np.uint32),
          'elapsed': np.asarray(limit._elapsed_steps if limit else 0, np.int32)}


def set_env_state(env, state: dict[str, Any]) -> None:
  """Writes `env_state(...)` into an environment that has been reset once."""
  u = _mujoco(env)
  mujoco.mj_setState(u.model, u.data, _float64(state['mujoco']), MJ_STATE)
  mujoco.mj_forward(u.model, u.data)  # derived quantities (positions, contacts) of this state
  words = [int(w) for w in np.asarray(state['rng'])]
  u.np_random.bit_generator.state = {
      'bit_generator': 'PCG64', 'state': {'state': _join(words[:4]), 'inc': _join(words[4:8])},
      'has_uint32': words[8], 'uinteger': words[9]}
  limit = _time_limit(env)
  if limit is not None:
    limit._elapsed_steps = int(np.asarray(state['elapsed']))


class HostRunner:
  """The gymnasium loop of `len(seeds)` seeds in blocks (the interface of the gymnax `Runner`
  vmapped over seeds): `init(seeds)` -> carry; `block(carry)` -> (carry, metrics with a leading
  seed axis, per PPO update, and `eval_return` per seed); `evaluate(carry)` -> mean return of
  the deterministic target policy per seed over `cfg.eval_episodes` episodes."""

  def __init__(self, make_env: Callable[[], Any], num_seeds: int, cfg: looplib.LoopConfig,
               hooks: looplib.Hooks | None = None):
    cfg.check()
    self.cfg, self.num_seeds = cfg, num_seeds
    self.envs = [make_env() for _ in range(num_seeds)]
    self.eval_envs = [make_env() for _ in range(num_seeds)]
    self.ref_envs = [make_env() for _ in range(num_seeds)] if cfg.reference else []
    self.space = space = self.envs[0].action_space
    self.discrete = hasattr(space, 'n')
    self.obs_dim = int(np.prod(self.envs[0].observation_space.shape))
    self.action_dim = int(space.n) if self.discrete else int(np.prod(space.shape))
    self.loop = loop = looplib.Loop(
        looplib.make_agent(self.obs_dim, self.action_dim, self.discrete), cfg,
        hooks or looplib.Hooks())
    self.blocks = cfg.total_steps // (cfg.n * cfg.eval_every)
    self.steps_per_block = cfg.n * cfg.eval_every
    s, discrete = num_seeds, self.discrete

    def act(state, obs, ref_obs, key):
      """Behaviour actions (and the reference stream's target actions, keys folded off)."""
      key, k = jax.random.split(key)
      action = jax.vmap(loop.act)(state, obs, jax.random.split(k, s))
      ref = (jax.vmap(loop.act_target)(state, ref_obs, jax.random.split(jax.random.fold_in(k, 1),
                                                                         s))
             if cfg.reference else None)
      return action, ref, key

    def observe_act(state, obs, reward, done, ref_obs, key):
      """One dispatch per env step: the statistics after the step, then the next actions."""
      state = jax.vmap(loop.observe)(state, obs, reward, done)
      action, ref, key = act(state, obs, ref_obs, key)
      return state, action, ref, key

    def greedy(state, obs):
      out = jax.vmap(lambda st, o: loop.agent.actor.apply(st['params']['actor'],
                                                          loop.norm_obs(st, o)))(state, obs)
      return networks.mode(discrete, out)

    self._act, self._observe_act, self._greedy = (jax.jit(act), jax.jit(observe_act),
                                                  jax.jit(greedy))
    self._end = {(p, me): jax.jit(jax.vmap(
        lambda st, c, o, d, k, p=p, me=me: loop.end_chunk(st, c, o, d, k, p, me)))
        for p, me in ((False, True), (True, True), (True, False))}

  # -- state ----------------------------------------------------------------------------------
  def init(self, seeds: Sequence[int]) -> dict:
    """Environments reset with their seeds, agents initialised one seed at a time."""
    if len(seeds) != self.num_seeds:
      raise ValueError(f'{len(seeds)} seeds for a runner of {self.num_seeds}')
    obs = np.stack([e.reset(seed=int(sd))[0]
                    for e, sd in zip(self.envs, seeds, strict=True)]).astype(np.float32)
    for e, sd in zip(self.eval_envs, seeds, strict=True):
      e.reset(seed=int(sd))  # order enforcing: every evaluation resets again with its own seed
    keys = [jax.random.fold_in(jax.random.key(int(sd)), 0) for sd in seeds]
    state = looplib.init_seeds(self.loop.init, keys, jnp.asarray(obs))
    carry = {'state': state, 'key': jax.random.key_data(jax.random.key(seeds[0] + KEY_OFFSET)),
             'obs': obs, 'done': np.ones(self.num_seeds, np.float32),
             'ep_ret': _bits(np.zeros(self.num_seeds)), 'env': self._env_states(self.envs)}
    if self.cfg.reference:
      carry['ref_obs'] = np.stack([e.reset(seed=int(sd) + REF_SEED_OFFSET)[0] for e, sd in
                                   zip(self.ref_envs, seeds, strict=True)]).astype(np.float32)
      carry['ref_env'] = self._env_states(self.ref_envs)
    return carry

  @staticmethod
  def _env_states(envs: Sequence[Any]) -> dict[str, np.ndarray]:
    states = [env_state(e) for e in envs]
    return {k: np.stack([st[k] for st in states]) for k in states[0]}

  @staticmethod
  def _set_env_states(envs: Sequence[Any], states: dict) -> None:
    states = jax.device_get(states)
    for i, e in enumerate(envs):
      set_env_state(e, {k: v[i] for k, v in states.items()})

  # -- evaluation -----------------------------------------------------------------------------
  def evaluate(self, carry: dict) -> np.ndarray:
    s, state = self.num_seeds, carry['state']
    rets = np.zeros(s)
    for ep in range(self.cfg.eval_episodes):
      o = np.stack([e.reset(seed=EVAL_SEED + ep)[0] for e in self.eval_envs]).astype(np.float32)
      alive = np.ones(s, bool)
      while alive.any():
        a = np.asarray(self._greedy(state, jnp.array(o)))
        for i, e in enumerate(self.eval_envs):
          if alive[i]:
            o[i], r, term, trunc, _ = e.step(a[i])
            rets[i] += r
            alive[i] = not (term or trunc)
    return rets / self.cfg.eval_episodes

  # -- training -------------------------------------------------------------------------------
  def block(self, carry: dict) -> tuple[dict, dict]:
    """`eval_every` PPO updates from `carry`, then an evaluation."""
    cfg, s, ref = self.cfg, self.num_seeds, self.cfg.reference
    m, k_chunks = cfg.period, cfg.n // cfg.period
    act_shape = () if self.discrete else (self.action_dim,)
    act_dtype = np.int32 if self.discrete else np.float32
    self._set_env_states(self.envs, carry['env'])
    state = carry['state']
    key = jax.random.wrap_key_data(carry['key'])
    obs = np.array(carry['obs'], np.float32)
    done = np.array(carry['done'], np.float32)
    ep_ret = _float64(carry['ep_ret']).copy()
    ref_obs = np.zeros_like(obs)
    if ref:
      self._set_env_states(self.ref_envs, carry['ref_env'])
      ref_obs = np.array(carry['ref_obs'], np.float32)
    action, ref_action, key = self._act(state, jnp.array(obs), jnp.array(ref_obs), key)
    history = []
    for update in range(cfg.eval_every):
      measure = (update + 1) % cfg.measure_every == 0  # the last update of each group
      ep_sum, ep_count, behavior = np.zeros(s), np.zeros(s), []
      for c in range(k_chunks):
        traj = {'obs': np.zeros((m, s, self.obs_dim), np.float32), 'rewards': np.zeros((m, s)),
                'dones': np.zeros((m, s)), 'actions': np.zeros((m, s) + act_shape, act_dtype)}
        if ref:
          traj.update(ref_obs=np.zeros((m, s, self.obs_dim), np.float32),
                      ref_actions=np.zeros((m, s) + act_shape, act_dtype))
        for t in range(m):
          a = np.asarray(action)
          traj['obs'][t], traj['actions'][t], traj['dones'][t] = obs, a, done
          for i, e in enumerate(self.envs):
            o, r, term, trunc, _ = e.step(env_action(self.space, a[i]))
            d = term or trunc
            if d:
              o, _ = e.reset()
            obs[i], traj['rewards'][t, i], done[i] = o, r, float(d)
            ep_ret[i] += r
            if d:
              ep_sum[i] += ep_ret[i]
              ep_count[i] += 1
              ep_ret[i] = 0.0
          if ref:
            ra = np.asarray(ref_action)
            traj['ref_obs'][t], traj['ref_actions'][t] = ref_obs, ra
            for i, e in enumerate(self.ref_envs):
              o, _, term, trunc, _ = e.step(env_action(self.space, ra[i]))
              ref_obs[i] = e.reset()[0] if term or trunc else o
          # copies: the dispatched step may read its inputs after `obs` changes
          state, action, ref_action, key = self._observe_act(
              state, jnp.array(obs), jnp.array(traj['rewards'][t], jnp.float32),
              jnp.array(done), jnp.array(ref_obs), key)
        key, k = jax.random.split(key)
        chunk = jax.tree.map(lambda x: jnp.array(np.swapaxes(x, 0, 1)), traj)
        state, metrics = self._end[c == k_chunks - 1, measure or c < k_chunks - 1](
            state, chunk, jnp.array(obs), jnp.array(done), jax.random.split(k, s))
        metrics = jax.device_get(metrics)
        behavior.append({k_: v for k_, v in metrics.items() if k_.startswith('behavior/')})
        if c < k_chunks - 1:  # the updated behaviour acts next
          action, ref_action, key = self._act(state, jnp.array(obs), jnp.array(ref_obs), key)
      for name in behavior[0]:  # behaviour metrics: mean over the n/m updates
        metrics[name] = np.mean([b[name] for b in behavior], 0)
      metrics['train_return'] = ep_sum / np.maximum(ep_count, 1)
      history.append(metrics)
      if len(history) < cfg.eval_every:
        action, ref_action, key = self._act(state, jnp.array(obs), jnp.array(ref_obs), key)
    out = {k: np.stack([h[k] for h in history], 1) for k in history[0]}
    carry = {'state': state, 'key': jax.random.key_data(key), 'obs': obs, 'done': done,
             'ep_ret': _bits(ep_ret), 'env': self._env_states(self.envs)}
    if ref:
      carry.update(ref_obs=ref_obs, ref_env=self._env_states(self.ref_envs))
    out['eval_return'] = self.evaluate(carry)
    return carry, out
