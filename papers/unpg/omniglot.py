"""Open-set verification on Omniglot: train a small conv embedder with a margin head (ArcFace /
CosFace), with or without UNPG, on 136 characters; verify on 156 unseen characters.

    python -m common.main --config=configs/unpg/omniglot.py:arcface,unpg,smoke --workdir=/tmp/u

With `config.data.image_folder` set (`configs/unpg/paper_ms1m.py`), it trains on an image tree
`root/<identity>/<image>` instead (read with `common.data.ImageFolder`, decoded per batch) and
verifies on held-out identities: the last `data.held_out_identities` of the sorted identity
folders, or every identity of `data.eval_image_folder` when that is set.

The trainer is `common.train.fit`; batches are identity-balanced (P classes x K drawers). Its
evaluator (`common.verification`: TAR@FAR on all pairs, 10-fold accuracy) runs every
`train.eval_every` steps and at the end; `floor_metrics` gives the same metrics for raw pixels
and the untrained embedder. Under data parallelism the loss runs on the global batch (jit +
NamedSharding), so UNPG's negative pairs come from every device, as gathering the features
would give.
"""

from __future__ import annotations

import concurrent.futures
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


class FolderImages:
  """Rows of an `ImageFolder` as a lazy float32 array [N, S, S, C] in [0, 1]: indexing (an int,
  slice or row array) decodes just those images, in a thread pool."""

  def __init__(self, folder: data.ImageFolder, rows: np.ndarray, workers: int = 8):
    self.folder, self.rows, self.workers = folder, np.asarray(rows, np.int64), workers
    self.shape = (len(self.rows), folder.image_size, folder.image_size, folder.channels)
    self.dtype = np.dtype(np.float32)

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index) -> np.ndarray:
    picked = self.rows[index]
    flat = np.atleast_1d(picked).tolist()
    with concurrent.futures.ThreadPoolExecutor(max(1, min(self.workers, len(flat)))) as pool:
      images = list(pool.map(self.folder.image, flat))
    batch = np.stack(images).astype(np.float32) / 255.0 if images else np.zeros(
        (0,) + self.shape[1:], np.float32)
    return batch[0] if np.ndim(picked) == 0 else batch


def load_image_folder(config: ml_collections.ConfigDict):
  """(train images, train labels, test images, test labels) of `data.image_folder`; the test
  identities are held out of training (see the module docstring)."""
  d = config.data
  folder = data.ImageFolder(d.image_folder, d.image_size)
  if d.get('eval_image_folder', ''):
    evaluation = data.ImageFolder(d.eval_image_folder, d.image_size)
    return (FolderImages(folder, np.arange(len(folder))), folder.labels,
            FolderImages(evaluation, np.arange(len(evaluation))), evaluation.labels)
  held, num_ids = d.held_out_identities, len(folder.classes)
  if not 2 <= held <= num_ids - config.train.classes_per_batch:
    raise cfglib.ConfigError(
        f'config.data.held_out_identities={held} must be in [2, {num_ids} identities - '
        f'train.classes_per_batch={config.train.classes_per_batch}] for {d.image_folder}: '
        'change it or set data.eval_image_folder')
  cut = num_ids - held
  train_rows, test_rows = np.flatnonzero(folder.labels < cut), np.flatnonzero(folder.labels >= cut)
  return (FolderImages(folder, train_rows), folder.labels[train_rows],
          FolderImages(folder, test_rows), folder.labels[test_rows] - cut)


def load_data(config: ml_collections.ConfigDict):
  """(train images, train labels, test images, test labels); with `data.num_test_classes`,
  only the first that many unseen Omniglot characters are tested."""
  if config.data.get('image_folder', ''):
    return load_image_folder(config)
  root = data.data_dir(config.data.data_dir)
  size = config.data.image_size
  if root is None:
    print(f'notice: no data directory (set ${data.sources.ENV_VAR}); using synthetic images')
    train_x, train_y = synthetic_split(136, 20, size, 0)
    test_x, test_y = synthetic_split(156, 20, size, 1)
  else:
    train_x, train_y = load_split(str(root / config.data.train_zip), size)
    test_x, test_y = load_split(str(root / config.data.test_zip), size)
  keep = config.data.get('num_test_classes', 0)
  if keep:
    rows = test_y < keep
    test_x, test_y = test_x[rows], test_y[rows]
  return train_x, train_y, test_x, test_y


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
  if config.data.get('num_test_classes', 0) not in (0, *range(2, 157)):
    raise cfglib.ConfigError(f'config.data.num_test_classes={config.data.num_test_classes} '
                             'must be 0 (all 156 unseen characters) or in [2, 156]')
  if not config.data.get('image_folder', '') and config.train.classes_per_batch > 136:
    raise cfglib.ConfigError(f'config.train.classes_per_batch={config.train.classes_per_batch} '
                             '> 136 training characters: pass 64')


@functools.lru_cache(maxsize=8)
def _jitted_apply(model: nn.Module):
  return jax.jit(model.apply)


def embed(model: nn.Module, params, images, batch_size: int = 520) -> np.ndarray:
  """Embeddings of all images (an array or a lazy `FolderImages`), in fixed-size batches (the
  last one padded)."""
  apply = _jitted_apply(model)
  n = len(images)
  out = []
  for s in range(0, n, batch_size):
    x = np.asarray(images[s:s + batch_size])
    x = np.concatenate([x, np.zeros((batch_size - len(x), *x.shape[1:]), x.dtype)])
    out.append(np.asarray(apply(params, x)))
  return np.concatenate(out)[:n]


def make_model(config: ml_collections.ConfigDict) -> Embedder:
  return Embedder(tuple(config.model.features), config.model.embedding_dim)


def init_params(config: ml_collections.ConfigDict, images: np.ndarray, num_classes: int) -> dict:
  """{'embedder': the embedder's initial parameters, 'class_weights': [C, D] Xavier-uniform},
  both from `config.seed`."""
  key_model, key_weights = jax.random.split(jax.random.key(config.seed))
  return {'embedder': make_model(config).init(key_model, np.asarray(images[:1])),
          'class_weights': nn.initializers.xavier_uniform()(
              key_weights, (num_classes, config.model.embedding_dim))}


def make_loss_fn(config: ml_collections.ConfigDict):
  """`loss_fn(params, batch, rng) -> (loss, {})` of `common.train.fit`: the configured margin
  head (+ UNPG) on the embeddings of the batch."""
  model, loss_of = make_model(config), make_loss(config)

  def loss_fn(params, batch, rng):
    del rng
    features = model.apply(params['embedder'], batch['image'])
    return loss_of(features, params['class_weights'], batch['label']), {}

  return loss_fn


def test_pairs(config: ml_collections.ConfigDict, test_y: np.ndarray) -> np.ndarray:
  """The fixed 10-fold pair list of the unseen identities (seed 0, `data.num_pairs`)."""
  return verification.make_pairs(test_y, config.data.num_pairs, seed=0)


def floor_metrics(config: ml_collections.ConfigDict) -> dict[str, dict[str, float]]:
  """Verification metrics of two trivial embedders on the same unseen images and pairs as the
  experiment: 'raw_pixels' (flattened pixels, cosine similarity) and 'untrained' (the
  embedder at its `config.seed` initialisation)."""
  train_x, train_y, test_x, test_y = load_data(config)
  pairs = test_pairs(config, test_y)
  params = init_params(config, train_x, int(train_y.max()) + 1)
  pixels = np.asarray(test_x[:]).reshape(len(test_y), -1)
  return {'raw_pixels': verification.evaluate_embeddings(pixels, test_y, pairs),
          'untrained': verification.evaluate_embeddings(
              embed(make_model(config), params['embedder'], test_x), test_y, pairs)}


ROC_FARS = np.geomspace(1e-4, 1e-1, 31)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains the embedder + class weights; evaluates the verification metrics on the unseen
  identities every `train.eval_every` steps and at the end (`common.verification`: 10-fold
  `accuracy`, `tar@far=...`). The final metrics add the ROC (`roc_far`, `roc_tar`); they are
  also written to `workdir/verification.json`, the embeddings to `test_embeddings.npy`."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  train_x, train_y, test_x, test_y = load_data(config)
  model = make_model(config)
  params = init_params(config, train_x, int(train_y.max()) + 1)
  # --- data: identity-balanced global batches, pure in (seed, step) ------------------------
  by_class = class_index(train_y)
  per_class = config.train.batch_size // config.train.classes_per_batch

  def train_batch(step: int):
    rows = identity_balanced_batch(by_class, config.train.classes_per_batch, per_class,
                                   config.seed, step)
    return data.take({'image': train_x, 'label': train_y}, rows)

  # --- evaluator: verification on the unseen identities ----------------------------------
  pairs = test_pairs(config, test_y)

  def evaluator(params) -> dict[str, float]:
    embeddings = embed(model, jax.device_get(params)['embedder'], test_x)
    return verification.evaluate_embeddings(embeddings, test_y, pairs)

  result = train.fit(config, workdir, mesh=mesh, params=params, loss_fn=make_loss_fn(config),
                     train_batch=train_batch, evaluator=evaluator)
  if result.preempted:
    return result
  embeddings = embed(model, jax.device_get(result.state.params)['embedder'], test_x)
  far, tar = verification.roc_curve(
      verification.all_pairs(embeddings, test_y, max_far=float(ROC_FARS[-1])), ROC_FARS)
  result.eval_metrics = {**result.eval_metrics, 'roc_far': far.tolist(), 'roc_tar': tar.tolist()}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'verification.json'), 'w') as f:
      json.dump(result.eval_metrics, f, indent=2)
    np.save(os.path.join(workdir, 'test_embeddings.npy'), embeddings.astype(np.float32))
  return result


def loss_on_mesh(config: ml_collections.ConfigDict, params, batch, mesh) -> jax.Array:
  """The training loss of one global batch sharded over `mesh` (for the 1 vs 8 device test)."""
  loss_fn = make_loss_fn(config)
  value_and_grad = jax.value_and_grad(lambda p, b: loss_fn(p, b, None)[0])
  return jax.jit(value_and_grad)(parallel.replicate(params, mesh),
                                 parallel.shard_batch(batch, mesh))

