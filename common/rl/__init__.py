"""Shared on-policy RL: CleanRL-style PPO in JAX.

- `networks`: separate 64-64 tanh actor and critic with orthogonal init; policy distributions.
- `ppo`: GAE with the CleanRL dones convention, the clipped PPO loss, the minibatch update.
- `normalize`: running observation / reward normalisation (gymnasium's wrappers, as pure state).
- `loop`: a FIFO-buffer PPO loop, jitted end to end for gymnax (`make_train`, vmap over seeds),
  and the same loop as a host loop with jitted updates for gymnasium MuJoCo (`train_host`).
"""
