"""Open-set verification on Omniglot: train a small conv embedder with a margin head (ArcFace /
CosFace), with or without UNPG, on 136 characters; verify on 156 unseen characters.

    python -m common.main --config=configs/unpg/omniglot.py:arcface,unpg,smoke --workdir=/tmp/u

The trainer is `common.train.fit`; batches are identity-balanced (P classes x K drawers).
Under data parallelism the loss runs on the global batch (jit + NamedSharding), so UNPG's
negative pairs come from every device, as gathering the features would give.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from common import config as cfglib
from common import data, parallel, train, verification
from common.models.convnet import ConvNet
from papers.unpg import loss as unpg
from papers.unpg.sampling import class_index, identity_balanced_batch


@functools.lru_cache(maxsize=4)
def load_split(zip_path: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Omniglot images downscaled to [N, S, S, 1] float32 in [0, 1] (1 = ink), labels [N]."""
  from PIL import Image

  images, labels, _ = data.sources.load_omniglot(pathlib.Path(zip_path))
  small = np.stack([
      np.asarray(Image.fromarray(im * 255).resize((image_size, image_size), Image.BOX),
                 np.float32) / 255.0 for im in images])
  return small[..., None], labels


def synthetic_split(num_classes: int, per_class: int, image_size: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Stand-in data when no data directory is set: noisy class prototypes."""
  rng = np.random.default_rng(seed)
  protos = rng.random((num_classes, image_size, image_size, 1)) > 0.8
  labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
  noise = rng.random((len(labels), image_size, image_size, 1)) > 0.95
  return (protos[labels] ^ noise).astype(np.float32), labels


def load_data(config: ml_collections.ConfigDict):
  """(train images, train labels, test images, test labels)."""
  root = data.data_dir(config.data.data_dir)
  size = config.data.image_size
  if root is None:
    print(f'notice: no data directory (set ${data.sources.ENV_VAR}); using synthetic images')
    return (*synthetic_split(136, 20, size, 0), *synthetic_split(156, 20, size, 1))
  return (*load_split(str(root / config.data.train_zip), size),
          *load_split(str(root / config.data.test_zip), size))


class Embedder(nn.Module):
  """ConvNet last-stage feature map, flattened -> linear embedding (the verification feature).

  Flattening instead of global pooling keeps where the strokes are, which is most of what
  tells characters apart; pooled features start nearly parallel for all images.
  """
  features: tuple[int, ...] = (16, 32, 64)
  embedding_dim: int = 64

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    maps = ConvNet(tuple(self.features), name='convnet')(images - 0.5, return_stages=True)[-1]
    return nn.Dense(self.embedding_dim, name='embedding')(maps.reshape(maps.shape[0], -1))


def make_loss(config: ml_collections.ConfigDict):
  """(features, class_weights, labels) -> loss, as `config.loss` names it."""
  c = config.loss
  fn = unpg.unpg_loss if c.unpg else unpg.margin_loss
  return functools.partial(fn, head=c.head, scale=c.scale, margin=c.margin, wisk=c.wisk)


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.validate_train(config, num_devices)
  cfglib.check_positive_int(config, 'train.classes_per_batch', 'data.image_size',
                            'model.embedding_dim', 'data.num_pairs')
  cfglib.check_choice(config, 'loss.head', unpg.HEADS)
  cfglib.check_divisible(config, 'train.batch_size', config.train.classes_per_batch,
                         'train.classes_per_batch')
  cfglib.check_range(config, 'loss.scale', 0.0, 1e4, low_open=True)
  cfglib.check_range(config, 'loss.margin', 0.0, 1.5)
  if not config.loss.wisk >= 0:
    raise cfglib.ConfigError(f'config.loss.wisk={config.loss.wisk} must be >= 0 '
                             '(inf keeps every negative pair): pass --config.loss.wisk=1.5')
  if config.train.classes_per_batch > 136:
    raise cfglib.ConfigError(f'config.train.classes_per_batch={config.train.classes_per_batch} '
                             '> 136 training characters: pass 64')


def embed(model: nn.Module, params, images: np.ndarray, batch_size: int = 520) -> np.ndarray:
  """Embeddings of all images, in fixed-size batches (the last one padded)."""
  apply = jax.jit(model.apply)
  n = len(images)
  pad = -n % batch_size
  padded = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
  out = [np.asarray(apply(params, padded[s:s + batch_size]))
         for s in range(0, len(padded), batch_size)]
  return np.concatenate(out)[:n]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains the embedder + class weights; eval metrics are the verification metrics on the
  unseen characters (also written to `workdir/verification.json`)."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  train_x, train_y, test_x, test_y = load_data(config)
  num_classes = int(train_y.max()) + 1
  # --- model -----------------------------------------------------------------------------
  model = Embedder(tuple(config.model.features), config.model.embedding_dim)
  key_model, key_weights = jax.random.split(jax.random.key(config.seed))
  params = {
      'embedder': model.init(key_model, train_x[:1]),
      'class_weights': nn.initializers.xavier_uniform()(
          key_weights, (num_classes, config.model.embedding_dim)),
  }
  loss_of = make_loss(config)

  def loss_fn(params, batch, rng):
    del rng
    features = model.apply(params['embedder'], batch['image'])
    return loss_of(features, params['class_weights'], batch['label']), {}

  # --- data: identity-balanced global batches, pure in (seed, step) ------------------------
  by_class = class_index(train_y)
  per_class = config.train.batch_size // config.train.classes_per_batch

  def train_batch(step: int):
    rows = identity_balanced_batch(by_class, config.train.classes_per_batch, per_class,
                                   config.seed, step)
    return data.take({'image': train_x, 'label': train_y}, rows)

  result = train.fit(config, workdir, mesh=mesh, params=params, loss_fn=loss_fn,
                     train_batch=train_batch)
  # --- verification on the unseen characters --------------------------------------------
  params = jax.device_get(result.state.params)
  embeddings = embed(model, params['embedder'], test_x)
  pairs = verification.make_pairs(test_y, config.data.num_pairs, seed=0)
  metrics = verification.evaluate_embeddings(embeddings, test_y, pairs)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'verification.json'), 'w') as f:
      json.dump(metrics, f, indent=2)
    np.save(os.path.join(workdir, 'test_embeddings.npy'), embeddings.astype(np.float32))
  result.eval_metrics = metrics
  return result


def loss_on_mesh(config: ml_collections.ConfigDict, params, batch, mesh) -> jax.Array:
  """The training loss of one global batch sharded over `mesh` (for the 1 vs 8 device test)."""
  model = Embedder(tuple(config.model.features), config.model.embedding_dim)
  loss_of = make_loss(config)

  def loss_fn(params, batch):
    features = model.apply(params['embedder'], batch['image'])
    return loss_of(features, params['class_weights'], batch['label'])

  return jax.jit(jax.value_and_grad(loss_fn))(parallel.replicate(params, mesh),
                                              parallel.shard_batch(batch, mesh))

