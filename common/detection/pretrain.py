"""The ImageNet-init analogue: the detector's backbone pretrained as a digit classifier.

    python -m common.main --config=configs/<paper>/mnist_backbone.py --workdir=/tmp/backbone

`DigitClassifier` is `model.Backbone` (the detector's, same settings) + global average pooling +
a linear layer, trained with softmax cross-entropy on the digits the training canvases are drawn
from (`data.load_digits(.., 'train')`; never the validation canvases' digits), 28 x 28 as MNIST
stores them. Without a data directory it classifies the procedural shapes instead. Accuracy on
the validation digits is logged every `train.eval_every` steps as `eval/accuracy` and returned.
A detector run starts from this run's backbone with `config.detector.backbone_init=<workdir>`
(`pipeline.init_params`), as the detection papers start from an ImageNet-trained ResNet-50.

config: seed, data (data_dir, num_shapes), detector.backbone_features, train, optim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import config as cfglib
from common import data, parallel, train
from common.detection import data as detdata
from common.detection.model import Backbone

SIZE = 28  # MNIST's digit size


class DigitClassifier(nn.Module):
  """Backbone -> mean over the last stage's locations -> logits [B, num_classes]."""
  num_classes: int
  backbone_features: Sequence[int] = (32, 64, 96)

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    stages = Backbone(tuple(self.backbone_features), name='backbone')(images)
    return nn.Dense(self.num_classes, name='classifier')(stages[-1].mean((1, 2)))


def shapes_set(num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """`num` procedural shapes (`data.SHAPES`), each drawn at a random size and place in 28 x 28."""
  rng = np.random.default_rng(seed)
  images = np.zeros((num, SIZE, SIZE), np.uint8)
  labels = rng.integers(len(detdata.SHAPES), size=num).astype(np.int32)
  for i, k in enumerate(labels):
    s = math.exp(rng.uniform(math.log(8), math.log(SIZE)))
    r = math.exp(rng.uniform(math.log(1 / 2), math.log(2)))
    w = int(np.clip(round(s / math.sqrt(r)), 3, SIZE))
    h = int(np.clip(round(s * math.sqrt(r)), 3, SIZE))
    y, x = int(rng.integers(0, SIZE - h + 1)), int(rng.integers(0, SIZE - w + 1))
    images[i, y:y + h, x:x + w] = detdata._shape(int(k), h, w)
  return images, labels


def load(config: ml_collections.ConfigDict) -> tuple[dict, dict, int]:
  """(train {'image', 'label'}, validation {'image', 'label'}, num_classes)."""
  train_digits = detdata.load_digits(config.data.data_dir, 'train')
  if train_digits is None:
    n = config.data.num_shapes
    tr, va = shapes_set(n, 0), shapes_set(max(n // 5, 1), 1)
  else:
    tr, va = train_digits, detdata.load_digits(config.data.data_dir, 'val')
  as_set = lambda d: {'image': d[0][..., None], 'label': d[1].astype(np.int32)}  # noqa: E731
  return as_set(tr), as_set(va), detdata.num_classes_of(train_digits)


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  cfglib.validate_train(config, num_devices)


def get_config(backbone_features: Sequence[int], smoke: bool = False) -> ml_collections.ConfigDict:
  """This experiment for a detector's backbone (`detector.backbone_features`): 1000 Adam steps
  of batch 64 on the 5000 training digits; `smoke` shrinks it to seconds."""
  c = ml_collections.ConfigDict()
  c.experiment = 'common.detection.pretrain'
  c.seed = 0
  c.num_devices = 1
  c.data = dict(data_dir='', num_shapes=5000)  # num_shapes: without data, procedural shapes
  c.detector = dict(backbone_features=tuple(backbone_features))
  c.train = dict(steps=1000, batch_size=64, log_every=100, eval_every=500, eval_batches=1,
                 checkpoint_every=1000, keep_checkpoints=1, steps_per_dispatch=1)
  c.optim = dict(name='adam', lr=2e-3, schedule='cosine', warmup_steps=50, weight_decay=0.0,
                 grad_clip=0.0, final_lr_fraction=0.0)
  if smoke:
    c.data.num_shapes = 100
    c.train.update(steps=4, batch_size=16, log_every=2, eval_every=2, checkpoint_every=2)
    c.optim.warmup_steps = 1
  return c


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train.FitResult:
  """Trains the classifier; eval/accuracy on the validation digits every `train.eval_every`."""
  mesh = parallel.mesh_from_config(config)
  validate(config, mesh.size)
  tr, va, num_classes = load(config)
  model = DigitClassifier(num_classes, tuple(config.detector.backbone_features))
  params = model.init(jax.random.key(config.seed), jnp.zeros((1, SIZE, SIZE, 1)))

  def logits(params, images):
    return model.apply(params, jnp.asarray(images, jnp.float32) / 255.0)

  def loss_fn(params, batch, rng):
    del rng
    z = logits(params, batch['image'])
    loss = optax.softmax_cross_entropy_with_integer_labels(z, batch['label']).mean()
    return loss, {'accuracy': (z.argmax(-1) == batch['label']).mean()}

  predict = jax.jit(lambda p, x: logits(p, x).argmax(-1))

  def evaluator(params):
    hits = sum(int((np.asarray(predict(params, va['image'][i:i + 500]))
                    == va['label'][i:i + 500]).sum()) for i in range(0, len(va['label']), 500))
    return {'accuracy': hits / len(va['label'])}

  order = data.batch_indices(len(tr['label']), config.train.batch_size, config.seed)
  return train.fit(config, workdir, mesh=mesh, params=params, loss_fn=loss_fn,
                   train_batch=lambda step: data.take(tr, order[step]), evaluator=evaluator)
