"""Open-set verification on Omniglot: train a small conv embedder with a margin head (ArcFace /
CosFace), with or without UNPG, on the characters of one zip; verify on characters whose
alphabet training never sees (`omniglot_split`: the test split, or a held-out training
alphabet for choosing hyperparameters).

    python -m common.main --config=configs/unpg/omniglot.py:arcface,unpg,smoke --workdir=/tmp/u

With `config.data.image_folder` set (`configs/unpg/paper_ms1m.py`), it trains on an image tree
`root/<identity>/<image>` instead (read with `common.data.ImageFolder`, decoded per batch) and
verifies on held-out identities: the last `data.held_out_identities` of the sorted identity
folders, or every identity of `data.eval_image_folder` when that is set.

The trainer is `common.train.fit`; batches are drawn as `train.sampler` says (`'shuffled'`: one
permutation of the training images per epoch, as the official loader; `'balanced'`: P classes
x K images), each image randomly warped (`random_affine`) when `data.augment` asks. Its
evaluator (`common.verification`: TAR@FAR on all pairs, partial AUC, 10-fold accuracy) runs
every `train.eval_every` steps and at the end; `floor_metrics` gives the same metrics for raw
pixels and the untrained embedder. Under data parallelism the loss runs on the global batch
(jit + NamedSharding), so UNPG's negative pairs come from every device, as gathering the
features would give.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import config as cfglib
from common import data, parallel, train, verification
from common.models.convnet import ConvNet
from papers.unpg import loss as unpg
from papers.unpg import sampling


@functools.lru_cache(maxsize=4)
def load_split(zip_path: str, image_size: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """Omniglot images downscaled to [N, S, S, 1] float32 in [0, 1] (1 = ink), labels [N] and
  the label names 'alphabet/characterXX'."""
  from PIL import Image

  images, labels, names = data.sources.load_omniglot(pathlib.Path(zip_path))
  small = np.stack([
      np.asarray(Image.fromarray(im * 255).resize((image_size, image_size), Image.BOX),
                 np.float32) / 255.0 for im in images])
  return small[..., None], labels, tuple(names)


def _alphabet(name: str) -> str:
  return name.split('/')[0]


def _keep_classes(images: np.ndarray, labels: np.ndarray, classes: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
  """The images of `classes` (sorted label ids), relabelled 0..len(classes)-1."""
  new = np.full(int(labels.max()) + 1, -1, np.int32)
  new[classes] = np.arange(len(classes), dtype=np.int32)
  rows = new[labels] >= 0
  return images[rows], new[labels[rows]]


def omniglot_split(config: ml_collections.ConfigDict, train: tuple, test: tuple
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(train images, labels, evaluation images, labels) of `data.split` from the two Omniglot
  zips, each given as (images, labels, names):

  - 'test': train on the characters of the training zip; evaluate on the characters of the
    test zip whose alphabet is not among the training alphabets (the zips share two alphabets,
    image for image, which would otherwise be seen in training);
  - 'validation': train on the training zip without alphabet `data.val_alphabet`; evaluate on
    that alphabet (the split that chooses hyperparameters).

  `data.num_train_classes` > 0 keeps that many training characters (a fixed random subset,
  the same for every seed)."""
  d = config.data
  (train_x, train_y, train_names), (test_x, test_y, test_names) = train, test
  train_alphabets = {_alphabet(n) for n in train_names}
  if d.get('split', 'test') == 'validation':
    if d.val_alphabet not in train_alphabets:
      raise cfglib.ConfigError(f'config.data.val_alphabet={d.val_alphabet!r} is not one of the '
                               f'training alphabets {sorted(train_alphabets)}')
    held = np.array([_alphabet(n) == d.val_alphabet for n in train_names])
    eval_x, eval_y = _keep_classes(train_x, train_y, np.flatnonzero(held))
    train_x, train_y = _keep_classes(train_x, train_y, np.flatnonzero(~held))
  else:
    unseen = np.array([_alphabet(n) not in train_alphabets for n in test_names])
    eval_x, eval_y = _keep_classes(test_x, test_y, np.flatnonzero(unseen))
  k = d.get('num_train_classes', 0)
  num_classes = int(train_y.max()) + 1
  if k:
    if k > num_classes:
      raise cfglib.ConfigError(f'config.data.num_train_classes={k} > {num_classes} training '
                               'characters: lower it (0 keeps all)')
    chosen = np.sort(np.random.default_rng(0).permutation(num_classes)[:k])
    train_x, train_y = _keep_classes(train_x, train_y, chosen)
  return train_x, train_y, eval_x, eval_y


def synthetic_split(num_classes: int, per_class: int, image_size: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Stand-in data when no data directory is set: noisy class prototypes."""
  rng = np.random.default_rng(seed)
  protos = rng.random((num_classes, image_size, image_size, 1)) > 0.8
  labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
  noise = rng.random((len(labels), image_size, image_size, 1)) > 0.95
  return (protos[labels] ^ noise).astype(np.float32), labels


# the synthetic stand-in mimics the zips' alphabets: 5 training alphabets, 2 shared with the test
SYNTHETIC_TRAIN_NAMES = tuple(f'{a}/character{i:02d}' for a, n in (
    ('Balinese', 24), ('Early_Aramaic', 22), ('Greek', 24), ('Korean', 40), ('Latin', 26))
    for i in range(1, n + 1))
SYNTHETIC_TEST_NAMES = tuple(f'{a}/character{i:02d}' for a, n in (
    ('Greek', 24), ('Japanese_(katakana)', 47), ('Latin', 26), ('Sanskrit', 42), ('Tagalog', 17))
    for i in range(1, n + 1))


SPLITS = ('test', 'validation')
ROC_FARS = np.geomspace(1e-4, 1e-1, 31)
BOOTSTRAP_FARS = (1e-3,)
BOOTSTRAP_RESAMPLES = 200


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
  """(train images, train labels, evaluation images, evaluation labels) of `data.split`
  (`omniglot_split`); with `data.num_test_classes`, only the first that many evaluation
  characters are kept."""
  if config.data.get('image_folder', ''):
    return load_image_folder(config)
  root = data.data_dir(config.data.data_dir)
  size = config.data.image_size
  if root is None:
    data.stand_in_notice('synthetic images')
    train = (*synthetic_split(136, 20, size, 0), SYNTHETIC_TRAIN_NAMES)
    test = (*synthetic_split(156, 20, size, 1), SYNTHETIC_TEST_NAMES)
  else:
    train = load_split(str(root / config.data.train_zip), size)
    test = load_split(str(root / config.data.test_zip), size)
  train_x, train_y, test_x, test_y = omniglot_split(config, train, test)
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
  cfglib.check_positive_int(config, 'data.image_size', 'model.embedding_dim', 'data.num_pairs')
  cfglib.check_choice(config, 'loss.head', unpg.HEADS)
  sampler = config.train.get('sampler', 'balanced')
  if sampler not in sampling.SAMPLERS:
    raise cfglib.ConfigError(f'config.train.sampler={sampler!r} is not one of '
                             f'{sampling.SAMPLERS}: pass shuffled')
  if sampler == 'balanced':
    cfglib.check_positive_int(config, 'train.classes_per_batch')
    cfglib.check_divisible(config, 'train.batch_size', config.train.classes_per_batch,
                           'train.classes_per_batch')
  cfglib.check_range(config, 'loss.scale', 0.0, 1e4, low_open=True)
  cfglib.check_range(config, 'loss.margin', 0.0, 1.5)
  if not config.loss.wisk >= 0:
    raise cfglib.ConfigError(f'config.loss.wisk={config.loss.wisk} must be >= 0 '
                             '(inf keeps every negative pair): pass --config.loss.wisk=1.5')
  if config.data.get('split', 'test') not in SPLITS:
    raise cfglib.ConfigError(f'config.data.split={config.data.split!r} is not one of {SPLITS}')
  keep = config.data.get('num_test_classes', 0)
  if keep and keep < 2:
    raise cfglib.ConfigError(f'config.data.num_test_classes={keep} must be 0 (every '
                             'evaluation character) or at least 2')


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


def affine_warp(images: jax.Array, offset: jax.Array, angle: jax.Array, zoom: jax.Array
                ) -> jax.Array:
  """Images [B, H, W, C] warped about their centres: output pixel p samples the input at
  R(angle)^T (p - centre) / zoom + centre - offset (rotation by `angle` radians, scaling by
  `zoom`, then translation by `offset` = (dy, dx) pixels), bilinear, 0 outside."""
  _, h, w, c = images.shape
  ys, xs = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2, indexing='ij')

  def warp(image, offset, angle, zoom):
    cos, sin = jnp.cos(angle) / zoom, jnp.sin(angle) / zoom
    src = [cos * ys - sin * xs + (h - 1) / 2 - offset[0],
           sin * ys + cos * xs + (w - 1) / 2 - offset[1]]
    return jnp.stack([jax.scipy.ndimage.map_coordinates(image[..., i], src, order=1,
                                                        mode='constant', cval=0.0)
                      for i in range(c)], axis=-1)

  return jax.vmap(warp)(images, offset, angle, zoom)


def random_affine(images: jax.Array, rng: jax.Array, shift: float, rotate: float,
                  scale: float) -> jax.Array:
  """`affine_warp` with each image's own random map: translation uniform in [-shift, shift]
  pixels per axis, rotation in [-rotate, rotate] degrees, zoom in [1 - scale, 1 + scale]."""
  b = images.shape[0]
  k_shift, k_rot, k_scale = jax.random.split(rng, 3)
  offset = jax.random.uniform(k_shift, (b, 2), minval=-shift, maxval=shift)
  angle = jnp.deg2rad(jax.random.uniform(k_rot, (b,), minval=-rotate, maxval=rotate))
  zoom = jax.random.uniform(k_scale, (b,), minval=1 - scale, maxval=1 + scale)
  return affine_warp(images, offset, angle, zoom)


def make_loss_fn(config: ml_collections.ConfigDict):
  """`loss_fn(params, batch, rng) -> (loss, {})` of `common.train.fit`: the configured margin
  head (+ UNPG) on the embeddings of the batch (each image randomly warped by `random_affine`
  when `data.augment` sets any of shift, rotate, scale)."""
  model, loss_of = make_model(config), make_loss(config)
  aug = config.data.get('augment', {})
  warp = tuple(float(aug.get(k, 0.0)) for k in ('shift', 'rotate', 'scale'))

  def loss_fn(params, batch, rng):
    images = batch['image']
    if any(warp):
      images = random_affine(images, rng, *warp)
    features = model.apply(params['embedder'], images)
    return loss_of(features, params['class_weights'], batch['label']), {}

  return loss_fn


def test_pairs(config: ml_collections.ConfigDict, test_y: np.ndarray) -> np.ndarray:
  """The fixed 10-fold pair list of the unseen identities (seed 0, `data.num_pairs`)."""
  return verification.make_pairs(test_y, config.data.num_pairs, seed=0)


def floor_metrics(config: ml_collections.ConfigDict) -> dict[str, dict]:
  """Verification metrics of two trivial embedders on the same evaluation images and pairs as
  the experiment: 'raw_pixels' (flattened pixels, cosine similarity) and 'untrained' (the
  embedder at its `config.seed` initialisation); each with the experiment's metrics and its
  identity-bootstrap TARs (`final_metrics`)."""
  train_x, train_y, test_x, test_y = load_data(config)
  pairs = test_pairs(config, test_y)
  params = init_params(config, train_x, int(train_y.max()) + 1)
  pixels = np.asarray(test_x[:]).reshape(len(test_y), -1)
  untrained = embed(make_model(config), params['embedder'], test_x)
  out = {}
  for name, embeddings in (('raw_pixels', pixels), ('untrained', untrained)):
    final = final_metrics(embeddings, test_y)
    out[name] = {**verification.evaluate_embeddings(embeddings, test_y, pairs),
                 **{k: v for k, v in final.items() if k.startswith('bootstrap/')}}
  return out


def final_metrics(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
  """What the end of training adds to the verification metrics: the ROC (`roc_far`, `roc_tar`)
  and TAR at each of `BOOTSTRAP_FARS` on `BOOTSTRAP_RESAMPLES` bootstrap resamples of the
  evaluation identities (`bootstrap/tar@far=...`; resample seed 0, so resample r is the same
  for every run and two arms can be compared resample by resample)."""
  every = verification.all_pairs(embeddings, labels, max_far=float(ROC_FARS[-1]))
  far, tar = verification.roc_curve(every, ROC_FARS)
  out = {'roc_far': far.tolist(), 'roc_tar': tar.tolist()}
  for f in BOOTSTRAP_FARS:
    out[f'bootstrap/tar@far={f:g}'] = verification.bootstrap_tar_at_far(
        every, f, BOOTSTRAP_RESAMPLES, seed=0).tolist()
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains the embedder + class weights; evaluates the verification metrics on the
  evaluation identities of `data.split` every `train.eval_every` steps and at the end
  (`common.verification`: 10-fold `accuracy`, `tar@far=...`, `pauc@far=0.01`). The final
  metrics add `final_metrics` (ROC, identity-bootstrap TARs); they are also written to
  `workdir/verification.json`, the embeddings to `test_embeddings.npy`."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  train_x, train_y, test_x, test_y = load_data(config)
  model = make_model(config)
  params = init_params(config, train_x, int(train_y.max()) + 1)
  # --- data: global batches, pure in (seed, step) ------------------------------------------
  if config.train.get('sampler', 'balanced') == 'shuffled':  # the official DataLoader's
    def rows_of(step: int) -> np.ndarray:
      return sampling.shuffled_batch(len(train_y), config.train.batch_size, config.seed, step)
  else:
    by_class = sampling.class_index(train_y)
    per_class = config.train.batch_size // config.train.classes_per_batch

    def rows_of(step: int) -> np.ndarray:
      return sampling.identity_balanced_batch(by_class, config.train.classes_per_batch,
                                              per_class, config.seed, step)

  def train_batch(step: int):
    return data.take({'image': train_x, 'label': train_y}, rows_of(step))

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
  result.eval_metrics = {**result.eval_metrics, **final_metrics(embeddings, test_y)}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'verification.json'), 'w') as f:
      json.dump(result.eval_metrics, f, indent=2)
    np.save(os.path.join(workdir, 'test_embeddings.npy'), embeddings.astype(np.float32))
  return result


def loss_on_mesh(config: ml_collections.ConfigDict, params, batch, mesh) -> jax.Array:
  """The training loss (and gradient) of one global batch sharded over `mesh`, augmentation key
  fixed (for the 1 vs 8 device test)."""
  loss_fn = make_loss_fn(config)
  value_and_grad = jax.value_and_grad(lambda p, b: loss_fn(p, b, jax.random.key(0))[0])
  return jax.jit(value_and_grad)(parallel.replicate(params, mesh),
                                 parallel.shard_batch(batch, mesh))

