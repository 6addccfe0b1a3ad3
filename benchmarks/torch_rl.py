"""PPO and PROPS on gymnasium CartPole-v1 in the official PyTorch style: the speed baseline.

The official PROPS code (CleanRL-based, one process per seed) steps one gymnasium environment on
the host, samples each action with a torch forward pass, and runs the PPO and behaviour updates
as Python loops over minibatches. This module is that loop, written for the same settings as the
jitted gymnax loop (`papers.props.props.make_train`), so `benchmarks.run --paper=props` can
compare environment steps per second end to end.

Same as the JAX loop (same work per environment step):
- separate 64-64 tanh actor and critic, orthogonal init; one Adam (eps 1e-5) over both with
  global grad-norm clip 0.5; running observation and reward normalisation (clip 10) updated
  every step, the buffer holding raw observations/rewards re-normalised with current statistics;
- the FIFO buffer of b * n rows (b = 1 for 'ppo'); every n steps the buffer is re-evaluated under
  the target (log-probs, values), GAE over it as one stream (CleanRL dones convention), then PPO
  for `epochs` x `minibatches` steps (clipped surrogate and value loss, per-minibatch advantage
  normalisation, approx-KL stop checked before each step);
- for 'props', every m steps: behaviour reset to the target (its Adam state persists), up to
  16 x 16 Adam steps (lr 1e-4, clip 0.3, KL(pi_t || pi_b) coefficient 0.3, stop at approx KL
  0.05) on the buffer minus its oldest m rows once full;
- evaluation of the greedy target policy on `eval_episodes` episodes before training and after
  every `eval_every` PPO updates (the JAX loop also spends that time).

Differs (as the official code does it, or as torch code naturally does it):
- an early-stopped update breaks out of its loop (fewer gradient steps); the jitted loop computes
  every step and masks the ones after the stop. `early_stop=False` takes every step, so both
  sides compute the same number of gradients (`grad_steps` counts what was taken).
- minibatches are cut from the valid rows only (size valid // minibatches), while the jitted loop
  draws fixed-size minibatches over the whole buffer and masks empty rows (first n steps only).
- episodes are evaluated until they end (the jitted loop always scans the 500-step limit), and
  the sampling-error diagnostic is off on both sides.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

EPS, CLIP = 1e-8, 10.0


class RunningMeanStd:
  """Running mean/variance (gymnasium's NormalizeObservation/NormalizeReward statistics)."""

  def __init__(self, shape: tuple[int, ...] = ()):
    self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

  def update(self, x: np.ndarray) -> None:
    b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
    delta, tot = b_mean - self.mean, self.count + b_count
    m2 = self.var * self.count + b_var * b_count + delta ** 2 * self.count * b_count / tot
    self.mean, self.var, self.count = self.mean + delta * b_count / tot, m2 / tot, tot


def layer_init(layer: nn.Linear, std: float = np.sqrt(2)) -> nn.Linear:
  nn.init.orthogonal_(layer.weight, std)
  nn.init.constant_(layer.bias, 0.0)
  return layer


def mlp(in_dim: int, out_dim: int, out_std: float) -> nn.Sequential:
  return nn.Sequential(layer_init(nn.Linear(in_dim, 64)), nn.Tanh(),
                       layer_init(nn.Linear(64, 64)), nn.Tanh(),
                       layer_init(nn.Linear(64, out_dim), std=out_std))


class Agent(nn.Module):
  def __init__(self, obs_dim: int, n_actions: int):
    super().__init__()
    self.actor = mlp(obs_dim, n_actions, 0.01)
    self.critic = mlp(obs_dim, 1, 1.0)

  def get_value(self, x: torch.Tensor) -> torch.Tensor:
    return self.critic(x).view(-1)

  def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
    probs = Categorical(logits=self.actor(x))
    if action is None:
      action = probs.sample()
    return action, probs.log_prob(action), probs.entropy(), self.get_value(x)


def train(arm: str, loop_cfg: Any, props_cfg: Any, seed: int = 0, early_stop: bool = True,
          env_id: str = 'CartPole-v1') -> dict[str, Any]:
  """One seed. `loop_cfg` is the arm's `common.rl.loop.LoopConfig` (`props.arm_config`),
  `props_cfg` a `papers.props.props.PROPSConfig`. Returns eval returns, gradient steps taken
  and env steps per second (wall time of the whole run, evaluations included)."""
  start = time.perf_counter()
  cfg, n, m = loop_cfg.ppo, loop_cfg.n, loop_cfg.period
  rows, k_chunks, props = loop_cfg.b * n, n // m, arm == 'props'
  rng = np.random.default_rng(seed)
  torch.manual_seed(seed)
  env = gym.make(env_id)
  eval_envs = [gym.make(env_id) for _ in range(loop_cfg.eval_episodes)]
  obs_dim, n_actions = int(env.observation_space.shape[0]), int(env.action_space.n)
  agent = Agent(obs_dim, n_actions)
  optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
  behavior = copy.deepcopy(agent.actor)
  b_optimizer = torch.optim.Adam(behavior.parameters(), lr=props_cfg.lr, eps=1e-5)
  obs_rms, ret_rms, ret_acc = RunningMeanStd((obs_dim,)), RunningMeanStd(), 0.0

  def norm_obs(x: np.ndarray) -> torch.Tensor:
    if not loop_cfg.norm_obs:
      return torch.as_tensor(x, dtype=torch.float32)
    return torch.as_tensor(np.clip((x - obs_rms.mean) / np.sqrt(obs_rms.var + EPS), -CLIP, CLIP),
                           dtype=torch.float32)

  buf_obs = np.zeros((rows, obs_dim), np.float32)
  buf_actions = np.zeros(rows, np.int64)
  buf_rewards, buf_dones = np.zeros(rows, np.float32), np.zeros(rows, np.float32)
  count, grad_steps = 0, {'ppo': 0, 'behavior': 0}

  def evaluate() -> float:
    total = 0.0
    obs = np.stack([e.reset(seed=10_000 + i)[0] for i, e in enumerate(eval_envs)])
    alive = np.ones(len(eval_envs), bool)
    while alive.any():
      with torch.no_grad():
        actions = agent.actor(norm_obs(obs)).argmax(-1).numpy()
      for i, e in enumerate(eval_envs):
        if alive[i]:
          obs[i], r, term, trunc, _ = e.step(int(actions[i]))
          total += r
          alive[i] = not (term or trunc)
    return total / len(eval_envs)

  def ppo_update(next_obs: np.ndarray, next_done: float) -> None:
    b_obs = norm_obs(buf_obs[rows - count:])
    b_actions = torch.as_tensor(buf_actions[rows - count:])
    rewards = buf_rewards[rows - count:]
    if loop_cfg.norm_reward:
      rewards = np.clip(rewards / np.sqrt(ret_rms.var + EPS), -CLIP, CLIP)
    rewards, dones = torch.as_tensor(rewards, dtype=torch.float32), buf_dones[rows - count:]
    with torch.no_grad():
      _, b_logprobs, _, b_values = agent.get_action_and_value(b_obs, b_actions)
      next_value = agent.get_value(norm_obs(next_obs[None]))[0]
      advantages = torch.zeros(count)
      lastgaelam = 0.0
      for t in reversed(range(count)):
        if t == count - 1:
          nextnonterminal, nextvalues = 1.0 - next_done, next_value
        else:
          nextnonterminal, nextvalues = 1.0 - dones[t + 1], b_values[t + 1]
        delta = rewards[t] + cfg.gamma * nextvalues * nextnonterminal - b_values[t]
        advantages[t] = lastgaelam = (delta + cfg.gamma * cfg.gae_lambda * nextnonterminal
                                      * lastgaelam)
      b_returns = advantages + b_values
    size = count // cfg.minibatches
    for _ in range(cfg.epochs):
      b_inds = rng.permutation(count)
      for j in range(cfg.minibatches):
        mb = b_inds[j * size:(j + 1) * size]
        _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
        logratio = newlogprob - b_logprobs[mb]
        ratio = logratio.exp()
        with torch.no_grad():
          approx_kl = ((ratio - 1) - logratio).mean()
        if early_stop and approx_kl > cfg.target_kl:
          return
        mb_adv = advantages[mb]
        if cfg.norm_adv:
          mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
        pg_loss = torch.max(-mb_adv * ratio,
                            -mb_adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef))
        v_unclipped = (newvalue - b_returns[mb]) ** 2
        if cfg.clip_vloss:
          v_clipped = b_values[mb] + torch.clamp(newvalue - b_values[mb], -cfg.clip_coef,
                                                 cfg.clip_coef)
          v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - b_returns[mb]) ** 2).mean()
        else:
          v_loss = 0.5 * v_unclipped.mean()
        loss = pg_loss.mean() - cfg.ent_coef * entropy.mean() + cfg.vf_coef * v_loss
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
        optimizer.step()
        grad_steps['ppo'] += 1

  def behavior_update() -> None:
    behavior.load_state_dict(agent.actor.state_dict())  # reset to the target; Adam state kept
    lo = m if count >= rows else rows - count  # the oldest m rows leave before the next update
    b_obs, b_actions = norm_obs(buf_obs[lo:]), torch.as_tensor(buf_actions[lo:])
    with torch.no_grad():
      logp_t_all = torch.log_softmax(agent.actor(b_obs), -1)
    size = len(b_obs) // props_cfg.minibatches
    for _ in range(props_cfg.epochs):
      b_inds = rng.permutation(len(b_obs))
      for j in range(props_cfg.minibatches):
        mb = b_inds[j * size:(j + 1) * size]
        logp_b_all = torch.log_softmax(behavior(b_obs[mb]), -1)
        a = b_actions[mb][:, None]
        logratio = (logp_b_all.gather(1, a) - logp_t_all[mb].gather(1, a))[:, 0]
        ratio = logratio.exp()
        with torch.no_grad():
          approx_kl = ((ratio - 1) - logratio).mean()
        if early_stop and approx_kl > props_cfg.target_kl:
          return
        pg_loss = torch.max(ratio, torch.clamp(ratio, 1 - props_cfg.clip_eps,
                                               1 + props_cfg.clip_eps)).mean()
        kl = (logp_t_all[mb].exp() * (logp_t_all[mb] - logp_b_all)).sum(-1).mean()
        loss = pg_loss + props_cfg.kl_coef * kl
        b_optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(behavior.parameters(), props_cfg.max_grad_norm)
        b_optimizer.step()
        grad_steps['behavior'] += 1

  obs, _ = env.reset(seed=seed)
  obs_rms.update(obs[None])
  done = 1.0
  evals = [evaluate()]
  policy = behavior if props else agent.actor
  chunk = {'obs': np.zeros((m, obs_dim), np.float32), 'actions': np.zeros(m, np.int64),
           'rewards': np.zeros(m, np.float32), 'dones': np.zeros(m, np.float32)}
  for u in range(loop_cfg.total_steps // n):
    for c in range(k_chunks):
      for t in range(m):
        with torch.no_grad():
          action = Categorical(logits=policy(norm_obs(obs))).sample().item()
        chunk['obs'][t], chunk['actions'][t], chunk['dones'][t] = obs, action, done
        obs, reward, term, trunc, _ = env.step(action)
        done = float(term or trunc)
        if done:
          obs, _ = env.reset()
        chunk['rewards'][t] = reward
        if loop_cfg.norm_obs:
          obs_rms.update(obs[None])
        if loop_cfg.norm_reward:
          ret_acc = ret_acc * cfg.gamma + reward
          ret_rms.update(np.asarray([ret_acc]))
          ret_acc *= 1.0 - done
      for buf, key in ((buf_obs, 'obs'), (buf_actions, 'actions'), (buf_rewards, 'rewards'),
                       (buf_dones, 'dones')):  # FIFO: oldest m rows out, the chunk in
        buf[:-m] = buf[m:].copy()
        buf[-m:] = chunk[key]
      count = min(count + m, rows)
      if c == k_chunks - 1:
        ppo_update(obs, done)
      if props:
        behavior_update()
    if (u + 1) % loop_cfg.eval_every == 0:
      evals.append(evaluate())
  seconds = time.perf_counter() - start
  return {'eval_return': evals, 'grad_steps': grad_steps, 'seconds': seconds,
          'env_steps_per_s': loop_cfg.total_steps / seconds}


def set_threads(n: int | None = None) -> None:
  torch.set_num_threads(n or os.cpu_count() or 1)
