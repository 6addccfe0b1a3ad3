"""EDLM energies: the AR energy and carry-over, NCE, importance weights and their sign."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from papers.edlm import diffusion, energy

MASK = 2  # vocab {0, 1} + [MASK]


def test_ar_energy_hand_checked():
  x0 = jnp.array([[0, 1, 1]])
  xt = jnp.array([[0, MASK, 1]])  # position 1 masked, 0 and 2 carried over
  log_ar = jnp.log(jnp.array([[0.5, 0.25]]))  # log p_AR(x0_1 | x0_0), log p_AR(x0_2 | x0_<2)
  log_mu = jnp.log(jnp.array([[1.0, 0.2, 1.0]]))
  e = energy.ar_energy(log_ar, log_mu, x0, xt, MASK, carry_over=True)
  np.testing.assert_allclose(e, [-np.log(0.5) + np.log(0.2)], rtol=1e-6)
  e_all = energy.ar_energy(log_ar, log_mu, x0, xt, MASK, carry_over=False)
  np.testing.assert_allclose(e_all, [-np.log(0.5) - np.log(0.25) + np.log(0.2)], rtol=1e-6)


def test_ar_energy_full_vocab_equals_gathered():
  key_a, key_b, key_x = jax.random.split(jax.random.key(0), 3)
  ar_full = jax.nn.log_softmax(jax.random.normal(key_a, (2, 4, 3)), -1)
  mu_full = jax.nn.log_softmax(jax.random.normal(key_b, (2, 5, 3)), -1)
  x0 = jax.random.randint(key_x, (2, 5), 0, 2)
  xt = jnp.where(jnp.arange(5) % 2 == 0, MASK, x0)
  gather = lambda lp, x: jnp.take_along_axis(lp, x[..., None], -1)[..., 0]  # noqa: E731
  np.testing.assert_allclose(
      energy.ar_energy(ar_full, mu_full, x0, xt, MASK),
      energy.ar_energy(gather(ar_full, x0[:, 1:]), gather(mu_full, x0), x0, xt, MASK), rtol=1e-6)


def test_ar_energy_turns_mu_into_the_ar_joint():
  """Fully masked xt: mu(x0) exp(-E) = prod_{i>=1} p_AR(x0_i | x0_<i) for every x0."""
  length = 3
  mu = jax.nn.log_softmax(jax.random.normal(jax.random.key(1), (length, 2)), -1)
  table = jax.nn.log_softmax(jax.random.normal(jax.random.key(2), (length, 2, 2)), -1)
  xt = jnp.full((1, length), MASK)
  for seq in itertools.product(range(2), repeat=length):
    x0 = jnp.array([seq])
    log_ar = jnp.array([[table[i, seq[i - 1], seq[i]] for i in range(1, length)]])
    log_mu = jnp.array([[mu[i, seq[i]] for i in range(length)]])
    e = energy.ar_energy(log_ar, log_mu, x0, xt, MASK)
    np.testing.assert_allclose(log_mu.sum() - e, log_ar.sum(), rtol=1e-5, atol=1e-6)


def test_nce_loss_values_and_gradient_signs():
  np.testing.assert_allclose(energy.nce_loss(jnp.zeros(3), jnp.zeros(3)), 2 * np.log(2), rtol=1e-6)
  e_pos, e_neg = jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])
  expect = -np.mean(np.log(1 / (1 + np.exp([1.0, -2.0]))) + np.log(1 / (1 + np.exp([-0.5, -3.0]))))
  np.testing.assert_allclose(energy.nce_loss(e_pos, e_neg), expect, rtol=1e-6)
  g_pos, g_neg = jax.grad(energy.nce_loss, (0, 1))(e_pos, e_neg)
  assert (g_pos > 0).all() and (g_neg < 0).all()  # data pushed down, samples pushed up


def test_importance_weights_sign_and_temperature():
  w = energy.importance_weights(jnp.array([[0.0, np.log(3.0)]]), 1.0)
  np.testing.assert_allclose(w, [[0.75, 0.25]], rtol=1e-6)  # lower energy, higher weight
  w2 = energy.importance_weights(jnp.array([[0.0, np.log(3.0)]]), 2.0)
  np.testing.assert_allclose(w2, [[np.sqrt(3) / (1 + np.sqrt(3)), 1 / (1 + np.sqrt(3))]],
                             rtol=1e-6)
  assert energy.importance_weights(jnp.zeros((4, 16))).dtype == jnp.float32


def test_choose_candidate_sign_switch():
  candidates = jnp.array([[[0, 0, 0], [1, 1, 1]]])
  energies = jnp.array([[0.0, 50.0]])
  for seed in range(4):
    key = jax.random.key(seed)
    np.testing.assert_array_equal(energy.choose_candidate(key, candidates, energies), [[0, 0, 0]])
    np.testing.assert_array_equal(energy.choose_candidate(key, candidates, energies, sign=-1.0),
                                  [[1, 1, 1]])


def test_proposal_returns_one_hot_of_the_low_energy_candidate():
  vocab = 3  # {0, 1} + [MASK]
  log_mu = jnp.log(jnp.full((2, 6, vocab), 0.5).at[..., MASK].set(1e-30))
  xt = jnp.full((2, 6), MASK)

  def energy_fn(x0, xt, log_mu):  # only the all-ones sequence has low energy
    return jnp.where((x0 == 1).all(-1), -100.0, 0.0) + 0.0 * log_mu.sum((1, 2))

  propose = energy.make_proposal(energy_fn, 256, vocab)  # 256 candidates: 1 - (63/64)^256
  p = np.asarray(propose(jax.random.key(0), xt, log_mu))
  assert p.shape == (2, 6, vocab)
  np.testing.assert_array_equal(p.sum(-1), 1.0)
  np.testing.assert_array_equal(p.argmax(-1), 1)


@pytest.fixture(scope='module')
def energy_net():
  net = energy.EnergyNetwork(vocab_size=5, num_layers=1, d_model=16, num_heads=2, mlp_dim=32)
  x = jnp.zeros((2, 6), jnp.int32)
  return net, net.init(jax.random.key(0), x, x)


def test_energy_network_shape_and_dependence(energy_net):
  net, params = energy_net
  params = jax.tree.map(lambda a: a + 0.1, params)  # move the zero-initialised head
  x0 = jax.random.randint(jax.random.key(1), (3, 6), 0, 4)
  xt = diffusion.forward_mask(jax.random.key(2), x0, jnp.full((3,), 0.5), 4)
  e = net.apply(params, x0, xt)
  assert e.shape == (3,) and e.dtype == jnp.float32
  assert not np.allclose(e, net.apply(params, (x0 + 1) % 4, xt))


@pytest.mark.parametrize('pattern', [(1, 0, 1), (0, 1, 1), (1, 1, 1), (0, 0, 0), (1, 0, 0)])
def test_ar_log_partition_is_exact_by_enumeration(pattern):
  """V = 4 toy: Z(xt) = sum over every x0 of mu(x0 | xt) exp(-E(x0, xt)), by brute force,
  is V when position 0 is masked and 1 otherwise (`pattern`: 1 = masked)."""
  vocab, mask, length = 4, 4, 3
  k_mu, k_ar, k_x = jax.random.split(jax.random.key(sum(p << i for i, p in enumerate(pattern))),
                                     3)
  x_true = np.asarray(jax.random.randint(k_x, (length,), 0, vocab))
  xt = jnp.where(jnp.array(pattern) == 1, mask, jnp.asarray(x_true))[None]
  logits = jax.random.normal(k_mu, (1, length, vocab + 1))
  log_mu = diffusion.subs_log_probs(logits, xt, mask)[0]  # carry-over: mass 1 on unmasked
  ar_table = jax.nn.log_softmax(jax.random.normal(k_ar, (length, vocab ** length, vocab)), -1)

  def log_ar(seq):  # log p_AR(x0_i | x0_<i), i = 1..L-1 (the prefix indexes a random table)
    return [ar_table[i, int(np.ravel_multi_index(seq[:i], (vocab,) * i)), seq[i]]
            for i in range(1, length)]

  z = 0.0
  for seq in itertools.product(range(vocab), repeat=length):
    x0 = jnp.array([seq])
    lmu = jnp.array([[log_mu[i, s] for i, s in enumerate(seq)]])
    e = energy.ar_energy(jnp.array([log_ar(seq)]), lmu, x0, xt, mask)
    z += float(jnp.exp(lmu.sum() - e[0]))
  expected = vocab if pattern[0] else 1
  np.testing.assert_allclose(z, expected, rtol=1e-4)
  np.testing.assert_allclose(energy.ar_log_partition(xt, mask, vocab), [np.log(expected)],
                             rtol=1e-6)


def test_edlm_ar_estimator_term_is_the_ar_nll_of_the_masked_symbols():
  """-log mu(x0|xt) + E(x0, xt) + log Z(xt) = -sum_{i>=1 masked} log p_AR + [x_t^0 masked] log V:
  with the exact log Z, the paper's EDLM-AR likelihood term is the AR model's."""
  vocab, mask = 4, 4
  x0 = jnp.array([[2, 0, 3, 1], [1, 1, 0, 2]])
  xt = jnp.array([[mask, 0, mask, mask], [1, mask, 0, mask]])
  log_ar = jnp.log(jnp.array([[0.5, 0.25, 0.125], [0.3, 0.6, 0.2]]))
  log_mu = jnp.log(jnp.array([[0.2, 1.0, 0.4, 0.7], [1.0, 0.1, 1.0, 0.9]]))
  nll_mu = -jnp.where(xt == mask, log_mu, 0.0).sum(-1)
  term = (nll_mu + energy.ar_energy(log_ar, log_mu, x0, xt, mask)
          + energy.ar_log_partition(xt, mask, vocab))
  # row 0: positions 0, 2, 3 masked (AR terms 2 and 3, and log V for position 0);
  # row 1: positions 1 and 3 masked, position 0 is not (no log V)
  expected = [-np.log(0.25) - np.log(0.125) + np.log(4), -np.log(0.3) - np.log(0.2)]
  np.testing.assert_allclose(term, expected, rtol=1e-5)


def test_log_partition_bracket_hand_checked():
  """T_n = log mean exp(-E); T_{n-1} = mean of the leave-one-out T's; high end
  (2n - 1) T_n - 2(n - 1) T_{n-1} (n = 3: 5 T_3 - 4 T_2)."""
  neg_e = np.array([[0.0, np.log(2.0), np.log(4.0)], [1.0, 1.0, 1.0]])
  low, high = energy.log_partition_bracket(jnp.asarray(neg_e))
  w = np.exp(neg_e[0])
  t_n = np.log(w.mean())
  t_loo = np.mean([np.log(np.delete(w, j).mean()) for j in range(3)])
  np.testing.assert_allclose(low, [t_n, 1.0], rtol=1e-6)
  np.testing.assert_allclose(high, [5 * t_n - 4 * t_loo, 1.0], rtol=1e-6)
  assert high[0] > low[0]  # Jensen: T_{n-1} is lower than T_n


def test_log_partition_bracket_brackets_log_z():
  """Draws from mu = uniform over 4 symbols, -E = log-weights, log Z = log mean(w) exactly:
  E[T_n] <= log Z <= E[high end], both about a/n away (Theorem 1, n = 16)."""
  w = jnp.log(jnp.array([0.2, 0.5, 1.0, 2.3]))
  log_z = float(jnp.log(jnp.exp(w).mean()))
  draws = jax.random.randint(jax.random.key(0), (20000, 16), 0, 4)
  low, high = energy.log_partition_bracket(w[draws])
  assert float(low.mean()) < log_z < float(high.mean())
  np.testing.assert_allclose(float(high.mean()) - log_z, log_z - float(low.mean()), rtol=0.5)


def test_energy_network_fuses_per_position_and_starts_from_the_denoiser():
  """At x0 = xt the initial fusion (the mean of the two embeddings) is embed(xt), so with the
  denoiser's backbone the pooled features are the denoiser's mean final hidden state."""
  from common.models.transformer import Transformer
  vocab, d = 5, 16
  den = Transformer(vocab, 1, d, 2, None, 32, causal=False)
  net = energy.EnergyNetwork(vocab_size=vocab, num_layers=1, d_model=d, num_heads=2, mlp_dim=32)
  x = jax.random.randint(jax.random.key(1), (3, 6), 0, vocab)
  den_p = den.init(jax.random.key(2), x)
  p = net.init(jax.random.key(3), x, x)['params']
  p = p | {'backbone': den_p['params'],  # head: E = sum(pooled) + 100 d (ReLU inactive)
           'head_hidden': {'kernel': jnp.eye(d), 'bias': jnp.full(d, 100.0)},
           'head_out': {'kernel': jnp.ones((d, 1))}}
  e = net.apply({'params': p}, x, x)
  pooled = den.apply(den_p, x, return_hidden=True).mean(1)
  np.testing.assert_allclose(e, pooled.sum(-1) + 100.0 * d, rtol=1e-5)
  # per position: moving one x0 symbol to another position changes the energy
  x0 = x.at[:, 0].set((x[:, 0] + 1) % vocab)
  x0_swapped = x0.at[:, 0].set(x0[:, 1]).at[:, 1].set(x0[:, 0])
  assert not np.allclose(net.apply({'params': p}, x0, x), net.apply({'params': p}, x0_swapped, x))


def test_proposal_with_one_candidate_skips_the_energy():
  vocab = 3
  log_mu = jnp.log(jnp.full((2, 5, vocab), 0.5).at[..., MASK].set(1e-30))

  def energy_fn(x0, xt, log_mu):
    raise AssertionError('k = 1 must not evaluate the energy')

  p = energy.make_proposal(energy_fn, 1, vocab)(jax.random.key(0), jnp.full((2, 5), MASK), log_mu)
  assert p.shape == (2, 5, vocab) and (np.asarray(p).sum(-1) == 1).all()


def test_paper_estimator_is_no_bound_for_a_joint_denoiser():
  """Two symbols with x1 = x2 uniform over V and the exact joint denoiser: -log p(x0 | xt) is
  log V when both are masked, else 0, so E_t[w(t) P(both masked) log V] = log V / 2 (the
  schedule's weight and mask rate, eps -> 0), below the true NLL log V."""
  vocab = 7
  t = (np.arange(100_000) + 0.5) / 100_000  # midpoint rule on (0, 1)
  weight = np.asarray(diffusion.loss_weight(jnp.asarray(t), 1e-6))
  both = np.asarray(diffusion.mask_probability(jnp.asarray(t), 1e-6)) ** 2
  estimate = float(np.mean(weight * both * np.log(vocab)))
  np.testing.assert_allclose(estimate, np.log(vocab) / 2, rtol=1e-3)
  assert estimate < np.log(vocab)
