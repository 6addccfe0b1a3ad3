"""Sequence log-likelihoods and the stage-2 objectives: REDI, DPO, SimPO (per-example losses)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sequence_logprob(logits: jax.Array, labels: jax.Array, mask: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
  """S(y) = sum_t log pi(y_t | x, y_<t) over completion tokens, and |y| (TRL's get_batch_logps).

  logits [B, T, V] from the model on tokens [B, T]; labels [B, T] are those tokens; mask [B, T]
  is 1 on the completion tokens (including the appended EOS), 0 on prompt and padding. Labels
  are shifted by one inside: logits[:, t] scores labels[:, t + 1].
  """
  logits, labels, mask = logits[:, :-1], labels[:, 1:], mask[:, 1:].astype(jnp.float32)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
  token_logp = jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), -1)[..., 0]
  return (token_logp * mask).sum(-1), mask.sum(-1)


def redi_loss(s_pos: jax.Array, len_pos: jax.Array, s_neg: jax.Array, len_neg: jax.Array,
              alpha: float = 0.8, gamma: float = 0.0) -> jax.Array:
  """Eq. (REDI): -S(y+)/|y+| + alpha * w * S(y-)/|y-| per example; no reference, no sigmoid.

  alpha = 0 is SFT on the positives, alpha = 1 the symmetric objective. gamma > 0 weights each
  negative by w = exp(gamma * S(y-)/|y-|) (stop-gradient), so already-unlikely negatives fade.
  """
  mean_neg = s_neg / len_neg
  weight = jax.lax.stop_gradient(jnp.exp(gamma * mean_neg)) if gamma else 1.0
  return -s_pos / len_pos + alpha * weight * mean_neg


def dpo_loss(s_pos: jax.Array, s_neg: jax.Array, ref_s_pos: jax.Array, ref_s_neg: jax.Array,
             beta: float) -> jax.Array:
  """DPO: -log sigmoid(beta * ((S+ - S+_ref) - (S- - S-_ref))), reference = the SFT model."""
  return -jax.nn.log_sigmoid(beta * ((s_pos - ref_s_pos) - (s_neg - ref_s_neg)))


def simpo_loss(s_pos: jax.Array, len_pos: jax.Array, s_neg: jax.Array, len_neg: jax.Array,
               beta: float, gamma: float) -> jax.Array:
  """SimPO: -log sigmoid(beta * (S+/|y+| - S-/|y-|) - gamma); no reference, no NLL term."""
  return -jax.nn.log_sigmoid(beta * (s_pos / len_pos - s_neg / len_neg) - gamma)
