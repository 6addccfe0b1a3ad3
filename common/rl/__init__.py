"""Shared on-policy RL: CleanRL-style PPO in JAX.

- `networks`: separate 64-64 tanh actor and critic with orthogonal init; policy distributions.
- `ppo`: GAE with the CleanRL dones convention, the clipped PPO loss (entropy bonus), the
  minibatch update, linear learning-rate annealing.
- `normalize`: running observation / reward normalisation (gymnasium's wrappers, as pure state).
- `loop`: a FIFO-buffer PPO loop, jitted end to end for gymnax (`make_runner`, seeds vmapped),
  with an optional on-policy reference stream (an environment acting with the current target).
- `host`: the same loop for gymnasium MuJoCo (`HostRunner`: host environments, jitted updates,
  ClipAction), with exact environment checkpoints.
- `run`: the checkpointed block loop both drivers run through (`run_blocks`: resume, metrics,
  SIGTERM, progress bar, watchdog).
"""
