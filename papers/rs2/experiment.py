"""One training run with a per-round data budget on MNIST (8k train / 2k test split), or on
CIFAR-10 when `config.data.cifar10_dir` is set (`configs/rs2/paper_cifar10.py`).

    python -m common.main --config=configs/rs2/mnist.py:rs2 --workdir=/tmp/rs2
    python -m common.main --config=configs/rs2/mnist.py:static,smoke --workdir=/tmp/rs2_smoke

`config.data.sampler` picks the data-loading policy (`common.data.subsets`): RS2 without or
with replacement, a static random subset, or full data. `config.selection.method` ('el2n' |
'forgetting' | 'kcenter') instead trains on the static subset a pruning method picks from a
finished pre-training run (`selection.pretrained_workdir`: its parameters, read with
`common.checkpoint.restore_params`, and for forgetting its record of which training examples it
classified correctly after each epoch); its steps are returned as `pretrain_steps`.

The step count is adapted to the budget: train.steps = steps per round x rounds at the per-round
fraction r (full data too: the budget-matched run), or `train.epochs` full-data epochs; the
cosine runs over exactly those steps. Held-out accuracy is evaluated every `train.eval_every`
steps (or every `train.eval_every_rounds` rounds / `train.eval_every_epochs` epochs) into
metrics.jsonl; `data.num_val > 0` evaluates on the last num_val training examples (held out of
training) instead of the test split.

Seeds: one run trains `config.num_seeds` consecutive seeds (from `config.seed`) in one program,
one after another inside each step: the parameters are stacked on a leading member axis and the
loss is the sum of the members' losses, so every member gets exactly its own gradient (SGD's
update is elementwise). Seed s
draws its data, subset and initialisation as a one-seed run with `config.seed = s` does. Eval
metrics are logged per seed (`eval/accuracy/seed<i>`); the final metrics are
`{'per_seed': [...]}` (`common.sweep`'s `vmap_seeds`).
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import checkpoint, data, parallel, train
from common import config as cfglib
from common.data import subsets
from common.experiment import read_result
from common.models.convnet import ConvNet
from papers.rs2 import pruning

NUM_CLASSES = 10


class Classifier(nn.Module):
  """28x28 images -> 2x2 mean-pool stem -> ConvNet stages -> logits (a net small enough for
  hundreds of CPU runs; the stem quarters the conv cost)."""
  features: tuple[int, ...] = (8, 16)
  groups: int = 4

  @nn.compact
  def __call__(self, images: jax.Array, return_features: bool = False) -> jax.Array:
    x = nn.avg_pool(images - 0.5, (2, 2), strides=(2, 2))
    feats = ConvNet(tuple(self.features), groups=self.groups, name='convnet')(x)
    logits = nn.Dense(NUM_CLASSES, name='head')(feats)
    return (logits, feats) if return_features else logits


@functools.lru_cache(maxsize=2)
def _mnist(root: str) -> tuple[np.ndarray, np.ndarray]:
  import pathlib
  images, labels = data.load_mnist(pathlib.Path(root), 't10k')
  return images, labels


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Stand-in classification set when no data directory is set: noisy class prototypes."""
  rng = np.random.default_rng(seed)
  protos = rng.random((NUM_CLASSES, 28, 28)) > 0.7
  labels = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
  flips = rng.random((n, 28, 28)) > 0.8
  return ((protos[labels] ^ flips) * 255).astype(np.uint8), labels


def load_split(data_dir: str = '', num_train: int = 8000, num_test: int = 2000
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(train x [N,28,28,1] float32 in [0,1], train y, test x, test y): the 10k MNIST test file
  split by a fixed permutation (seed 0) into train / test; synthetic digits without data."""
  root = data.data_dir(data_dir)
  if root is None:
    data.stand_in_notice('synthetic digits')
    images, labels = synthetic_digits(num_train + num_test)
  else:
    images, labels = _mnist(str(root))
  if num_train + num_test > len(images):
    raise cfglib.ConfigError(f'num_train + num_test = {num_train + num_test} > {len(images)} '
                             'MNIST examples: lower config.data.num_train (or set '
                             'config.data.cifar10_dir for CIFAR-10)')
  perm = np.random.default_rng(0).permutation(len(images))
  x = images[perm].astype(np.float32)[..., None] / 255.0
  y = labels[perm].astype(np.int32)
  return (x[:num_train], y[:num_train], x[num_train:num_train + num_test],
          y[num_train:num_train + num_test])


def load_cifar10_split(root: str, num_train: int = 50_000, num_test: int = 10_000
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(train x [N,32,32,3] uint8, train y, test x, test y): the first num_train / num_test images
  of CIFAR-10's train / test files (python or binary format, `common.data.load_cifar10`)."""
  train_x, train_y = data.load_cifar10(root, 'train')
  test_x, test_y = data.load_cifar10(root, 'test')
  for name, want, have in (('num_train', num_train, len(train_x)),
                           ('num_test', num_test, len(test_x))):
    if want > have:
      raise cfglib.ConfigError(f'config.data.{name}={want} > {have} images in {root}: lower it')
  return train_x[:num_train], train_y[:num_train], test_x[:num_test], test_y[:num_test]


def load_data(config: ml_collections.ConfigDict):
  """CIFAR-10 when `data.cifar10_dir` is set, else the MNIST split (`load_split`)."""
  d = config.data
  if d.get('cifar10_dir', ''):
    return load_cifar10_split(d.cifar10_dir, d.num_train, d.num_test)
  return load_split(d.data_dir, d.num_train, d.num_test)


def as_float(images: np.ndarray) -> np.ndarray:
  """uint8 images -> float32 in [0, 1] (float images pass through)."""
  return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images


def augment(images: np.ndarray, seed: int, step: int, pad: int = 4) -> np.ndarray:
  """CIFAR augmentation, pure in (seed, step): random crop from a `pad`-zero-padded image and a
  random horizontal flip (as the paper's DeepCore training does)."""
  rng = np.random.default_rng([seed, step, 1])
  n, h, w = images.shape[:3]
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dy, dx = rng.integers(0, 2 * pad + 1, (2, n))
  rows = dy[:, None] + np.arange(h)[None]
  cols = dx[:, None] + np.arange(w)[None]
  flip = rng.random(n) < 0.5
  cols = np.where(flip[:, None], cols[:, ::-1], cols)
  return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# --- members: seeds x learning rates, stacked on a leading axis ---------------------------------

def member_names(config: ml_collections.ConfigDict) -> list[str]:
  """'seed<i>' for the run's seeds config.seed + i."""
  return [f'seed{i}' for i in range(config.get('num_seeds', 1))]


def stack(trees: list) -> object:
  return jax.tree.map(lambda *x: jnp.stack(x), *trees)


def member(tree, i: int) -> object:
  """Member i's slice of a stacked pytree."""
  return jax.tree.map(lambda x: x[i], tree)


def make_loss_and_eval(model: nn.Module, names: list[str]):
  """loss_fn on a batch [B, members, ...] (member m's own examples in column m) and eval_fn on
  a batch [B, ...] every member sees. Members run one after another in one program: vmapping
  the conv over stacked parameters lowers to a grouped convolution whose gradient is ~30x
  slower on XLA:CPU."""
  def member_loss(params, images, labels):
    logits = model.apply(params, images)
    return cross_entropy(logits, labels), jnp.mean(jnp.argmax(logits, -1) == labels)

  def loss_fn(params, batch, rng):
    del rng
    losses, accs = zip(*(member_loss(member(params, m), batch['image'][:, m],
                                     batch['label'][:, m]) for m in range(len(names))),
                       strict=True)
    # the sum: d(sum)/d(params of m) = d(loss of m)/d(params of m)
    return sum(losses), {'accuracy': jnp.mean(jnp.stack(accs)),
                         'member_loss': jnp.mean(jnp.stack(losses))}

  def eval_fn(params, batch):
    out = {}
    for m, name in enumerate(names):
      logits = model.apply(member(params, m), batch['image'])
      out[f'loss/{name}'] = cross_entropy(logits, batch['label'])
      out[f'accuracy/{name}'] = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    out['loss'] = jnp.mean(jnp.stack([out[f'loss/{n}'] for n in names]))
    out['accuracy'] = jnp.mean(jnp.stack([out[f'accuracy/{n}'] for n in names]))
    return out

  return loss_fn, eval_fn


# --- budget: steps, evaluation period ------------------------------------------------------------

def steps_per_round(config: ml_collections.ConfigDict) -> int:
  """Steps of one round at the per-round fraction r (`data.sampler.fraction`)."""
  k = subsets.subset_size(config.data.num_train, config.data.sampler.fraction)
  return subsets.steps_per_round(k, config.train.batch_size)


def steps_per_epoch(config: ml_collections.ConfigDict) -> int:
  return config.data.num_train // config.train.batch_size


def steps_for(config: ml_collections.ConfigDict) -> int:
  """`train.steps` when set (> 0); else `train.epochs` full-data epochs when set; else the
  budget-adapted count, steps per round x rounds at fraction r (for full data too: the run
  matched to the budget of r)."""
  t = config.train
  if t.get('steps', 0):
    return t.steps
  if t.get('epochs', 0):
    return steps_per_epoch(config) * t.epochs
  return steps_per_round(config) * t.rounds


def selection_method(config: ml_collections.ConfigDict) -> str:
  """'none', or the pruning method that picks the static subset."""
  return config.selection.method if 'selection' in config else 'none'


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.check_choice(config, 'data.sampler.mode', subsets.MODES)
  cfglib.check_range(config, 'data.sampler.fraction', 0.0, 1.0, low_open=True)
  cfglib.check_positive_int(config, 'data.num_train', 'data.num_test', 'train.eval_batch_size')
  cfglib.check_nonneg_int(config, *(f'train.{k}' for k in (
      'steps', 'rounds', 'epochs', 'eval_every_rounds', 'eval_every_epochs') if k in config.train))
  if 'num_seeds' in config:
    cfglib.check_positive_int(config, 'num_seeds')
  num_val = config.data.get('num_val', 0)
  if not 0 <= num_val < config.data.num_train:
    raise cfglib.ConfigError(f'config.data.num_val={num_val} must be in [0, num_train='
                             f'{config.data.num_train}): the validation examples are held out of '
                             'the training split')
  if not (config.train.get('steps', 0) or config.train.get('epochs', 0)
          or config.train.get('rounds', 0)):
    raise cfglib.ConfigError('no budget: set config.train.rounds (or train.epochs, train.steps)')
  cfglib.check_divisible(config, 'train.eval_batch_size', num_devices, 'the number of devices')
  if not num_val:
    cfglib.check_divisible(config, 'data.num_test', config.train.eval_batch_size,
                           'train.eval_batch_size')
  else:
    cfglib.check_divisible(config, 'data.num_val', config.train.eval_batch_size,
                           'train.eval_batch_size')
  k = subsets.subset_size(config.data.num_train, config.data.sampler.fraction)
  if k < config.train.batch_size:
    raise cfglib.ConfigError(f'a round holds {k} examples < train.batch_size='
                             f'{config.train.batch_size}: raise data.sampler.fraction or lower '
                             'the batch size')
  method = selection_method(config)
  if 'selection' in config:
    cfglib.check_choice(config, 'selection.method', ('none', *pruning.METHODS))
  if method != 'none':
    if config.data.sampler.mode != 'static':
      raise cfglib.ConfigError(f'config.selection.method={method!r} trains on one chosen subset: '
                               "set config.data.sampler.mode='static'")
    if not config.selection.pretrained_workdir:
      raise cfglib.ConfigError(
          f'config.selection.method={method!r} scores examples with a pre-trained model: run '
          'configs/rs2/mnist.py:pretrain and pass --config.selection.pretrained_workdir=DIR')
  cfglib.validate_train(with_steps(config), num_devices)


def with_steps(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with train.steps set from the budget and train.eval_every from
  train.eval_every_rounds / eval_every_epochs (> 0)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.train.steps = steps_for(config)
    if config.train.get('eval_every_rounds', 0):
      config.train.eval_every = config.train.eval_every_rounds * steps_per_round(config)
    elif config.train.get('eval_every_epochs', 0):
      config.train.eval_every = config.train.eval_every_epochs * steps_per_epoch(config)
  return config


# --- data ------------------------------------------------------------------------------------

def splits(config: ml_collections.ConfigDict
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(train x, train y, eval x, eval y): the eval split is the test split, or with
  `data.num_val > 0` the last num_val training examples (then not trained on)."""
  train_x, train_y, test_x, test_y = load_data(config)
  v = config.data.get('num_val', 0)
  if v:
    return train_x[:-v], train_y[:-v], train_x[-v:], train_y[-v:]
  return train_x, train_y, test_x, test_y


@functools.cache
def _apply_members(model: nn.Module, num: int):
  """One jitted program: every member's (logits, features) on one batch."""
  return jax.jit(lambda p, x: [model.apply(member(p, m), x, return_features=True)
                               for m in range(num)])


def predict(model: nn.Module, params, images: np.ndarray, batch_size: int,
            return_features: bool = False):
  """Stacked `params` [M, ...] on `images` in batches (the last one padded): logits [M, N, C]
  (and pooled features [M, N, F] with `return_features`)."""
  apply = _apply_members(model, jax.tree.leaves(params)[0].shape[0])
  logits, feats = [], []
  for s in range(0, len(images), batch_size):
    x = as_float(images[s:s + batch_size])
    pad = batch_size - len(x)
    out = apply(params, np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]))
    logits.append(np.stack([np.asarray(lg)[:len(x)] for lg, _ in out]))
    feats.append(np.stack([np.asarray(f)[:len(x)] for _, f in out]))
  logits = np.concatenate(logits, axis=1)
  return (logits, np.concatenate(feats, axis=1)) if return_features else logits


CORRECT_DIR = 'train_correct'  # <pretrain workdir>/train_correct/step_<s>.npy: [M, N] bool


def save_train_correct(workdir: str, step: int, correct: np.ndarray) -> None:
  folder = os.path.join(workdir, CORRECT_DIR)
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f'step_{step:09d}.npy')
  with open(path + '.tmp', 'wb') as f:
    np.save(f, np.asarray(correct, bool))
  os.replace(path + '.tmp', path)


def load_train_correct(workdir: str, last_step: int) -> np.ndarray:
  """[T, M, N]: a pre-training run's records at its evaluations up to `last_step`, in order."""
  folder = os.path.join(workdir, CORRECT_DIR)
  steps = sorted(int(f[5:-4]) for f in os.listdir(folder) if f.endswith('.npy')) \
      if os.path.isdir(folder) else []
  steps = [s for s in steps if s <= last_step]
  if not steps:
    raise cfglib.ConfigError(f'{workdir} holds no record of training-set correctness: '
                             'pre-train with config.selection.record_train_correct=True')
  return np.stack([np.load(os.path.join(folder, f'step_{s:09d}.npy')) for s in steps])


class Pretrained:
  """A finished pre-training run: its stacked parameters, steps, and members' seeds."""

  def __init__(self, workdir: str):
    done = read_result(workdir)
    if done is None:
      raise cfglib.ConfigError(f'config.selection.pretrained_workdir={workdir} holds no finished '
                               'run: run configs/rs2/mnist.py:pretrain there first')
    pre = ml_collections.ConfigDict(done['config'])
    self.workdir = workdir
    self.seeds = list(range(pre.seed, pre.seed + pre.get('num_seeds', 1)))
    self.steps = int(steps_for(pre))
    self.params = checkpoint.restore_params(workdir)

  def index(self, seed: int) -> int:
    if seed not in self.seeds:
      raise cfglib.ConfigError(f'{self.workdir} pre-trained seeds {self.seeds}, not seed {seed}: '
                               'pre-train the same seeds')
    return self.seeds.index(seed)


def select_subset(config: ml_collections.ConfigDict, model: nn.Module, pre: Pretrained,
                  seed: int, train_x: np.ndarray, train_y: np.ndarray) -> np.ndarray:
  """The static subset of k = r*N examples that `config.selection.method` keeps for `seed`,
  from the pre-training run's member of the same seed."""
  k = subsets.subset_size(len(train_x), config.data.sampler.fraction)
  i = pre.index(seed)
  method = config.selection.method
  if method == 'forgetting':
    correct = load_train_correct(pre.workdir, pre.steps)[:, i]
    return pruning.top_k_balanced(pruning.forgetting_events(correct), train_y, k)
  params = jax.tree.map(lambda x: x[i:i + 1], pre.params)
  logits, feats = predict(model, params, train_x, config.selection.score_batch_size,
                          return_features=True)
  if method == 'el2n':
    scores = np.asarray(pruning.el2n_scores(jnp.asarray(logits[0]), jnp.asarray(train_y)))
    return pruning.top_k_balanced(scores, train_y, k)
  return pruning.k_center_greedy(feats[0], k, seed)


# --- the run ----------------------------------------------------------------------------------

def per_seed_metrics(config: ml_collections.ConfigDict, final: dict, untrained: dict,
                     chance: float, pretrain_steps: int) -> dict:
  """`per_seed`: the run's final metrics, one dict per seed (a one-seed run: that dict at the
  top level too, as `common.sweep` reads a run with or without `vmap_seeds`)."""
  per_seed = [{'accuracy': final[f'accuracy/{name}'], 'loss': final[f'loss/{name}'],
               'untrained_accuracy': untrained[f'accuracy/{name}'], 'chance_accuracy': chance,
               'train_steps': int(config.train.steps), 'pretrain_steps': pretrain_steps,
               'lr': float(config.optim.lr)} for name in member_names(config)]
  return {**per_seed[0], 'per_seed': per_seed} if len(per_seed) == 1 else {'per_seed': per_seed}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains every seed on the configured budget; eval = held-out accuracy every
  `train.eval_every` steps. Final metrics per seed add `train_steps`, `pretrain_steps` (charged
  to a pruning arm), `lr`, and the floors `untrained_accuracy` and `chance_accuracy`."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  config = with_steps(config)
  train_x, train_y, eval_x, eval_y = splits(config)
  model = Classifier(tuple(config.model.features))
  names = member_names(config)
  seeds = [config.seed + i for i in range(len(names))]
  # --- parameters: seed s initialised as a one-seed run of seed s ----------------------------
  params = stack([model.init(jax.random.key(s), as_float(train_x[:1])) for s in seeds])
  loss_fn, eval_fn = make_loss_and_eval(model, names)
  # --- data: the sampler's batch at step t is pure in (seed, t), so resume is exact --------
  method = selection_method(config)
  chosen = {s: None for s in seeds}
  pretrain_steps = 0
  if method != 'none':  # a pruning method: one subset per seed from the pre-trained model
    pre = Pretrained(config.selection.pretrained_workdir)
    pretrain_steps = pre.steps
    chosen = {s: select_subset(config, model, pre, s, train_x, train_y) for s in seeds}
  s = config.data.sampler
  streams = {seed: subsets.SubsetBatchStream(len(train_x), s.fraction, config.train.batch_size,
                                             seed, s.mode, subset=chosen[seed])
             for seed in seeds}
  arrays = {'image': train_x, 'label': train_y}
  last_step = [None]  # the newest step whose batch was requested (its eval follows it)

  def train_batch(step: int):
    last_step[0] = step
    batch = data.take(arrays, np.stack([streams[seed][step] for seed in seeds], axis=1))
    if config.data.get('augment', False):
      batch['image'] = np.stack([augment(batch['image'][:, m], seed, step)
                                 for m, seed in enumerate(seeds)], axis=1)
    return {'image': as_float(batch['image']), 'label': batch['label']}

  def eval_batches():
    b = config.train.eval_batch_size
    for i in range(0, len(eval_x), b):
      yield {'image': as_float(eval_x[i:i + b]), 'label': eval_y[i:i + b]}

  evaluator = None
  if 'selection' in config and config.selection.get('record_train_correct', False):

    def evaluator(params):  # which training examples each seed classifies correctly now
      step = config.train.steps if last_step[0] is None else last_step[0] + 1
      logits = predict(model, params, train_x, config.selection.score_batch_size)
      correct = np.argmax(logits, -1) == train_y[None]
      if jax.process_index() == 0:
        save_train_correct(workdir, step, correct)
      return {'train_accuracy': float(correct.mean())}

  # --- floors: the untrained network and the majority class on the same eval split ---------
  untrained = train.evaluate(jax.jit(eval_fn), parallel.replicate(params, mesh), eval_batches(),
                             mesh)
  chance = float(np.bincount(eval_y).max() / len(eval_y))
  result = train.fit(config, workdir, mesh=mesh, params=params, loss_fn=loss_fn,
                     train_batch=train_batch, eval_fn=eval_fn, eval_batches=eval_batches,
                     evaluator=evaluator)
  result.eval_metrics = per_seed_metrics(config, result.eval_metrics, untrained, chance,
                                         pretrain_steps)
  return result
