"""One training run with a per-round data budget on MNIST (8k train / 2k test split), or on
CIFAR-10 when `config.data.cifar10_dir` is set (`configs/rs2/paper_cifar10.py`).

    python -m common.main --config=configs/rs2/mnist.py:rs2 --workdir=/tmp/rs2
    python -m common.main --config=configs/rs2/mnist.py:static,smoke --workdir=/tmp/rs2_smoke

`config.data.sampler` picks the data-loading policy (`common.data.subsets`): RS2 without or
with replacement, a static random subset, or full data. `config.selection.method` ('el2n' |
'kcenter') instead trains on the static subset a pruning method picks with the parameters of a
finished pre-training run (`selection.pretrained_workdir`, read with
`common.checkpoint.restore_params`); its steps are returned as `pretrain_steps`. The step count
is adapted to the budget: train.steps = steps per round x rounds, and the cosine runs over
exactly those steps. Held-out accuracy is evaluated every `train.eval_every` steps (every
round with `train.eval_every_rounds = 1`) into metrics.jsonl.
"""

from __future__ import annotations

import functools

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
    print(f'notice: no data directory (set ${data.sources.ENV_VAR}); using synthetic digits')
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


def make_loss_and_eval(model: nn.Module):
  def loss_fn(params, batch, rng):
    del rng
    logits = model.apply(params, batch['image'])
    return cross_entropy(logits, batch['label']), {
        'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label'])}

  def eval_fn(params, batch):
    logits = model.apply(params, batch['image'])
    return {'loss': cross_entropy(logits, batch['label']),
            'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label'])}

  return loss_fn, eval_fn


def steps_for(config: ml_collections.ConfigDict) -> int:
  """`train.steps` when set (> 0), else the budget-adapted count: steps per round x rounds
  (full data: N // batch per round)."""
  if config.train.get('steps', 0):
    return config.train.steps
  s = config.data.sampler
  fraction = 1.0 if s.mode == 'full' else s.fraction
  return subsets.total_steps(config.data.num_train, fraction, config.train.batch_size,
                             config.train.rounds)


def steps_per_round(config: ml_collections.ConfigDict) -> int:
  s = config.data.sampler
  k = subsets.subset_size(config.data.num_train, 1.0 if s.mode == 'full' else s.fraction)
  return subsets.steps_per_round(k, config.train.batch_size)


def selection_method(config: ml_collections.ConfigDict) -> str:
  """'none', or the pruning method that picks the static subset ('el2n' | 'kcenter')."""
  return config.selection.method if 'selection' in config else 'none'


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.check_choice(config, 'data.sampler.mode', subsets.MODES)
  cfglib.check_range(config, 'data.sampler.fraction', 0.0, 1.0, low_open=True)
  cfglib.check_positive_int(config, 'train.rounds', 'data.num_train', 'data.num_test',
                            'train.eval_batch_size')
  cfglib.check_nonneg_int(config, *(f'train.{k}' for k in ('steps', 'eval_every_rounds')
                                     if k in config.train))
  cfglib.check_divisible(config, 'train.eval_batch_size', num_devices, 'the number of devices')
  cfglib.check_divisible(config, 'data.num_test', config.train.eval_batch_size,
                         'train.eval_batch_size')
  k = subsets.subset_size(config.data.num_train, config.data.sampler.fraction)
  if config.data.sampler.mode != 'full' and k < config.train.batch_size:
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
  train.eval_every_rounds (> 0: that many rounds)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.train.steps = steps_for(config)
    rounds = config.train.get('eval_every_rounds', 0)
    if rounds:
      config.train.eval_every = rounds * steps_per_round(config)
  return config


def model_outputs(model: nn.Module, params, images: np.ndarray, batch_size: int
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(logits, pooled features) of `images` under `params`, in batches (the last one padded)."""
  apply = jax.jit(functools.partial(model.apply, return_features=True))
  logits, feats = [], []
  for s in range(0, len(images), batch_size):
    x = as_float(images[s:s + batch_size])
    pad = batch_size - len(x)
    out = apply(params, np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]))
    logits.append(np.asarray(out[0])[:len(x)])
    feats.append(np.asarray(out[1])[:len(x)])
  return np.concatenate(logits), np.concatenate(feats)


def pretrained(workdir: str) -> tuple[object, int]:
  """(parameters, training steps) of the finished pre-training run in `workdir`."""
  done = read_result(workdir)
  if done is None:
    raise cfglib.ConfigError(f'config.selection.pretrained_workdir={workdir} holds no finished '
                             'run: run configs/rs2/mnist.py:pretrain there first')
  return checkpoint.restore_params(workdir), int(done['metrics']['train_steps'])


def select_subset(config: ml_collections.ConfigDict, model: nn.Module, params,
                  train_x: np.ndarray, train_y: np.ndarray) -> np.ndarray:
  """The static subset of k = r*N examples that `config.selection.method` keeps."""
  k = subsets.subset_size(len(train_x), config.data.sampler.fraction)
  logits, feats = model_outputs(model, params, train_x, config.selection.score_batch_size)
  if config.selection.method == 'el2n':
    scores = np.asarray(pruning.el2n_scores(jnp.asarray(logits), jnp.asarray(train_y)))
    return pruning.top_k_balanced(scores, train_y, k)
  return pruning.k_center_greedy(feats, k, config.seed)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains the classifier on the configured per-round budget; eval = held-out accuracy every
  `train.eval_every` steps. Final metrics add `train_steps`, `pretrain_steps` (charged to a
  pruning arm), and the floors `untrained_accuracy` and `chance_accuracy`."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  config = with_steps(config)
  train_x, train_y, test_x, test_y = load_data(config)
  model = Classifier(tuple(config.model.features))
  params = model.init(jax.random.key(config.seed), as_float(train_x[:1]))
  loss_fn, eval_fn = make_loss_and_eval(model)
  # --- data: the sampler's batch at step t is pure in (seed, t), so resume is exact --------
  method = selection_method(config)
  subset, pretrain_steps = None, 0
  if method != 'none':  # a pruning method: one subset from the pre-trained model
    pre_params, pretrain_steps = pretrained(config.selection.pretrained_workdir)
    subset = select_subset(config, model, pre_params, train_x, train_y)
  s = config.data.sampler
  stream = subsets.SubsetBatchStream(len(train_x), s.fraction, config.train.batch_size,
                                     config.seed, s.mode, subset=subset)
  arrays = {'image': train_x, 'label': train_y}

  def train_batch(step: int):
    batch = data.take(arrays, stream[step])
    if config.data.get('augment', False):
      batch['image'] = augment(batch['image'], config.seed, step)
    return {'image': as_float(batch['image']), 'label': batch['label']}

  def eval_batches():
    b = config.train.eval_batch_size
    for s in range(0, len(test_x), b):
      yield {'image': as_float(test_x[s:s + b]), 'label': test_y[s:s + b]}

  # --- floors: the untrained network and the majority class on the same test set ----------
  untrained = train.evaluate(jax.jit(eval_fn), parallel.replicate(params, mesh), eval_batches(),
                             mesh)['accuracy']
  chance = float(np.bincount(test_y).max() / len(test_y))
  result = train.fit(config, workdir, mesh=mesh, params=params, loss_fn=loss_fn,
                     train_batch=train_batch, eval_fn=eval_fn, eval_batches=eval_batches)
  result.eval_metrics = {**result.eval_metrics, 'train_steps': int(config.train.steps),
                         'pretrain_steps': pretrain_steps, 'untrained_accuracy': untrained,
                         'chance_accuracy': chance}
  return result
