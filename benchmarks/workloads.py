"""One benchmark workload per paper: the paper's own loss, model, loader and optimizer.

Shapes come from each paper's reproduction config (`configs/<paper>/*.py`, not `paper_*`);
`quick` takes its `smoke` form. Each workload also names the same step in plain PyTorch
(`benchmarks/torch_steps.py`), built on the first batch the JAX step sees.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import data, lm, train
from common.models.convnet import ConvNet
from common.models.transformer import Transformer

Batch = dict[str, np.ndarray]


@dataclasses.dataclass
class Workload:
  """One training step as the experiment runs it.

  `loader(step)` is the experiment's own batch function (timed alone for the loader share);
  the step is `common.train.make_train_step(loss_fn, optimizer from optim)` unless the paper
  has its own `step(state, batch) -> (state, metrics)` with initial `state`.
  `torch_step(batch)` builds the PyTorch equivalent running on that batch.
  """
  loss_fn: Callable | None
  params: Any
  loader: Callable[[int], Batch]
  optim: ml_collections.ConfigDict | None
  torch_step: Callable[[Batch], Callable[[], float]] | None = None
  note: str = ''
  step: Callable | None = None
  state: Any = None
  total_steps: int = 1000

  def step_and_state(self) -> tuple[Callable, Any]:
    """The training step and its initial state."""
    if self.step is not None:
      return self.step, self.state
    tx = train.make_optimizer(self.optim, self.total_steps)
    return train.make_train_step(self.loss_fn, tx), train.init_state(self.params, tx, 0)


def _optim(name='adamw', lr=1e-3, weight_decay=0.01, grad_clip=1.0, **kw):
  return ml_collections.ConfigDict(dict(name=name, lr=lr, schedule='constant', warmup_steps=0,
                                        weight_decay=weight_decay, grad_clip=grad_clip, **kw))


def _init(model: nn.Module, example: Any, seed: int = 0) -> Any:
  """`model.init` as one compiled program (eager init compiles every op on its own)."""
  return jax.jit(model.init)(jax.random.key(seed), example)


@functools.cache
def _corpus(data_dir: str) -> lm.CharCorpus:
  return lm.load_corpus(data_dir)


def _torch():
  from benchmarks import torch_steps  # optional dependency: imported only when measured
  return torch_steps


def _char_loader(corpus: lm.CharCorpus, seq_len: int, batch_size: int, seed: int):
  """`common.lm.fit_char_lm`'s training stream: shuffled windows, pure in (seed, step)."""
  windows = lm.windows(corpus.train, seq_len)
  order = data.batch_indices(len(windows), batch_size, seed)
  return windows, lambda step: data.take({'tokens': windows}, order[step])


# --- the shared backbones ---------------------------------------------------------------------

def lm_workload(quick: bool) -> Workload:
  """The shared transformer as a character LM (the backbone of parscale, edlm, redi)."""
  layers, d, heads, batch, seq = (2, 64, 4, 8, 64) if quick else (4, 256, 8, 32, 256)
  corpus = _corpus('')
  windows, loader = _char_loader(corpus, seq, batch, 0)
  model = Transformer(vocab_size=corpus.vocab_size, num_layers=layers, d_model=d,
                      num_heads=heads, mlp_dim=4 * d)
  params = _init(model, windows[:1, :-1])

  def loss_fn(params, batch, rng):
    logits = model.apply(params, batch['tokens'][:, :-1])
    return lm.token_cross_entropy(logits, batch['tokens'][:, 1:]), {}

  return Workload(loss_fn, params, loader, _optim(),
                  lambda b: _torch().make_lm_step(corpus.vocab_size, layers, d, heads, 4 * d,
                                                  batch, seq),
                  f'{layers}x{d}, seq {seq}, batch {batch}')


def convnet_workload(quick: bool) -> Workload:
  """The shared conv net as a 28x28 classifier (the backbone of rs2 and unpg)."""
  features, batch = ((8, 16), 16) if quick else ((32, 64, 128), 128)
  model = ConvNet(features=features, num_outputs=10)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(1024, 28, 28, 1)).astype(np.float32)
  labels = rng.integers(0, 10, 1024).astype(np.int32)
  params = _init(model, images[:1])

  def loss_fn(params, batch, rng):
    logits = model.apply(params, batch['images'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels']).mean(), {}

  def loader(step):
    idx = rng.integers(0, len(images), batch)
    return {'images': images[idx], 'labels': labels[idx]}

  return Workload(loss_fn, params, loader,
                  _optim('sgd', lr=0.1, weight_decay=5e-4, grad_clip=0.0, momentum=0.9,
                         nesterov=True),
                  lambda b: _torch().make_convnet_step(features, 10, batch, 28),
                  f'features {features}, batch {batch}')


# --- the papers -------------------------------------------------------------------------------

def _model_args(config) -> tuple:
  m = config.model
  return m.num_layers, m.d_model, m.num_heads, m.mlp_dim


def parscale_workload(quick: bool) -> Workload:
  """ParScale: P = 4 streams of the shared backbone (prefix k/v, aggregator), next-token CE
  (configs/parscale/char_lm.py; the loss of papers/parscale/experiment.train_and_evaluate)."""
  from configs.parscale import char_lm
  from papers.parscale import experiment as ps
  config = char_lm.get_config('smoke' if quick else '')
  config.parscale.num_streams = 4
  corpus = _corpus(config.data.data_dir)
  windows, loader = _char_loader(corpus, config.data.seq_len, config.train.batch_size,
                                 config.seed)
  model = ps.make_model(config, corpus.vocab_size)
  params = _init(model, windows[:1, :-1], config.seed)
  loss_fn = ps.make_loss(model)
  p = config.parscale

  def torch_step(batch):
    return _torch().make_parscale_step(corpus.vocab_size, *_model_args(config), p.num_streams,
                                       p.num_prefix, p.eps, config.optim.to_dict(), batch)

  layers, d, _, _ = _model_args(config)
  return Workload(loss_fn, params, loader, config.optim, torch_step,
                  f'P={p.num_streams}, {layers}x{d}, seq {config.data.seq_len}, '
                  f'batch {config.train.batch_size}', total_steps=config.train.steps)


def edlm_workload(quick: bool) -> Workload:
  """EDLM's denoiser: the MDLM NELBO on the bidirectional transformer (configs/edlm/mdlm.py,
  papers/edlm/experiment.mdlm_loss), batches from the experiment's own stream."""
  from configs.edlm import mdlm
  from papers.edlm import experiment as ed
  config = mdlm.get_config('smoke' if quick else '')
  corpus = _corpus(config.data.data_dir)
  windows, loader, _ = ed.batches(config, corpus)
  model = ed.denoiser_model(config, corpus.vocab_size)
  params = _init(model, windows[:1, :-1], config.seed)
  mask_id, dif = corpus.vocab_size, config.diffusion

  def loss_fn(params, batch, rng):
    return ed.mdlm_loss(model, params, batch['tokens'][:, :-1], rng, mask_id, dif.eps,
                        dif.sampling_eps), {}

  def torch_step(batch):
    return _torch().make_mdlm_step(corpus.vocab_size, *_model_args(config), dif.eps,
                                   dif.sampling_eps, config.optim.to_dict(), batch)

  layers, d, _, _ = _model_args(config)
  return Workload(loss_fn, params, loader, config.optim, torch_step,
                  f'{layers}x{d}, seq {config.data.seq_len}, batch {config.train.batch_size}',
                  total_steps=config.train.steps)


def redi_workload(quick: bool) -> Workload:
  """REDI stage 2 on chosen/rejected trace pairs (configs/redi/arith.py:redi): the paper's
  `papers.redi.experiment.preference_loss` in the step `common.train.fit` runs, and the
  experiment's pair stream."""
  from configs.redi import arith
  from papers.redi import experiment as rd
  from papers.redi import task
  config = arith.get_config('redi,smoke' if quick else 'redi')
  d, cfg = config.data, config.preference
  ds = task.make_datasets(d.num_train, d.num_valid, d.num_test, d.samples_per_problem,
                          d.error_rate, d.seed)
  model = rd.make_model(config)
  params = _init(model, jnp.zeros((1, task.SEQ_LEN), jnp.int32), config.seed)
  order = data.batch_indices(len(ds.pref['pos_tokens']), config.train.batch_size, config.seed)

  def loss_fn(params, batch, rng):
    del rng
    return rd.preference_loss(model, cfg, params, batch)

  def torch_step(batch):
    return _torch().make_redi_step(task.VOCAB_SIZE, *_model_args(config), cfg.alpha,
                                   config.optim.to_dict(), batch)

  layers, dm, _, _ = _model_args(config)
  return Workload(loss_fn, params, lambda s: data.take(ds.pref, order[s]), config.optim,
                  torch_step, f'{layers}x{dm}, {config.train.batch_size} pairs x 2 x seq '
                  f'{task.SEQ_LEN}', total_steps=config.train.steps)


def rs2_workload(quick: bool) -> Workload:
  """RS2: the MNIST classifier step (configs/rs2/mnist.py:rs2, r = 10%), batches from the RS2
  without-replacement sampler (`common.data.subsets.batch_sampler`)."""
  from common.data import subsets
  from configs.rs2 import mnist
  from papers.rs2 import experiment as rs
  config = rs.with_steps(mnist.get_config('rs2,smoke' if quick else 'rs2'))
  train_x, train_y, _, _ = rs.load_split(config.data.data_dir, config.data.num_train,
                                         config.data.num_test)
  model = rs.Classifier(tuple(config.model.features))
  params = _init(model, train_x[:1], config.seed)
  members_loss, _ = rs.make_loss_and_eval(model, ['seed0'])

  def loss_fn(params, batch, rng):  # one member: parameters [1, ...], batch [B, 1, ...]
    return members_loss(jax.tree.map(lambda x: x[None], params),
                        jax.tree.map(lambda x: x[:, None], batch), rng)

  indices = subsets.batch_sampler(config.data.sampler.to_dict(), len(train_x),
                                  config.train.batch_size, config.seed)
  arrays = {'image': train_x, 'label': train_y}

  def torch_step(batch):
    return _torch().make_rs2_step(tuple(config.model.features), model.groups, rs.NUM_CLASSES,
                                  config.optim.to_dict(), batch)

  return Workload(loss_fn, params, lambda s: data.take(arrays, indices(s)), config.optim,
                  torch_step, f'features {tuple(config.model.features)}, 28x28, batch '
                  f'{config.train.batch_size}', total_steps=config.train.steps)


def _detector_torch(loss: str, config, num_classes: int, prior_bias: float, anchors, nums,
                    **loss_settings):
  det = config.detector

  def torch_step(batch):
    return _torch().make_detector_step(
        loss, num_classes, len(det.aspect_ratios) * len(det.scales),
        tuple(det.backbone_features), det.fpn_features, det.num_convs, prior_bias, anchors,
        nums, config.optim.to_dict(), batch, **loss_settings)

  return torch_step


def _detector_note(config, anchors) -> str:
  return (f'{config.data.canvas}px, {len(anchors)} anchors, backbone '
          f'{tuple(config.detector.backbone_features)}, batch {config.train.batch_size}')


def atss_workload(quick: bool) -> Workload:
  """ATSS: the dense detector with ATSS assignment and the official ATSS loss
  (configs/atss/mnist_canvas.py, papers/atss/experiment.make_loss_fn)."""
  from common.detection import pipeline
  from configs.atss import mnist_canvas
  from papers.atss import experiment as at
  config = mnist_canvas.get_config('smoke' if quick else '')
  tr, _, _, num_classes = pipeline.load_data(config)
  anchors, nums = pipeline.anchors_from_config(config)
  model = at.build_model(config, num_classes)
  params = _init(model, jnp.zeros((1,) + tr['image'].shape[1:]), config.seed)
  loss_fn = at.make_loss_fn(config, model, anchors, nums, num_classes)
  order = data.batch_indices(len(tr['image']), config.train.batch_size, config.seed)
  return Workload(loss_fn, params, lambda s: data.take(tr, order[s]), config.optim,
                  _detector_torch('atss', config, num_classes, model.prior_bias, anchors, nums,
                                  topk=config.assigner.topk, reg_weight=config.loss.reg_weight),
                  _detector_note(config, anchors), total_steps=config.train.steps)


def sampling_free_workload(quick: bool) -> Workload:
  """Sampling-Free RetinaNet: 9 anchors, IoU matcher, BCE + smooth-L1 with guided loss scaling
  and the optimal-bias init (configs/sampling_free/mnist_canvas.py, papers/sampling_free).
  The prior is counted on the first 64 training images (the experiment counts all; only the
  initial bias value depends on it, not the step's cost)."""
  from common.detection import pipeline
  from configs.sampling_free import mnist_canvas
  from papers.sampling_free import experiment as sf
  from papers.sampling_free import prior as sfp
  config = mnist_canvas.get_config('smoke' if quick else '')
  tr, _, _, num_classes = pipeline.load_data(config)
  anchors, nums = pipeline.anchors_from_config(config)
  head = {k: v[:64] for k, v in tr.items()}
  bias = sfp.bias_from_prior(sf.dataset_prior(config, head, anchors, num_classes))
  model = pipeline.detector_from_config(config, num_classes, prior_bias=bias, centerness=False)
  params = _init(model, jnp.zeros((1,) + tr['image'].shape[1:]), config.seed)
  loss_fn = sf.make_loss_fn(config, model, anchors, num_classes)
  order = data.batch_indices(len(tr['image']), config.train.batch_size, config.seed)
  return Workload(loss_fn, params, lambda s: data.take(tr, order[s]), config.optim,
                  _detector_torch('sampling_free', config, num_classes, bias, anchors, nums),
                  _detector_note(config, anchors), total_steps=config.train.steps)


def unpg_workload(quick: bool) -> Workload:
  """UNPG: the Omniglot embedder + class weights with ArcFace + UNPG's filtered negative pairs
  (configs/unpg/omniglot.py:arcface,unpg), the experiment's shuffled batches; the random affine
  augmentation is switched off so the step matches the PyTorch one."""
  from configs.unpg import omniglot as cfg
  from papers.unpg import omniglot as up
  from papers.unpg.sampling import shuffled_batch
  config = cfg.get_config('arcface,unpg,smoke' if quick else 'arcface,unpg')
  config.data.augment = dict(shift=0.0, rotate=0.0, scale=0.0)
  train_x, train_y, _, _ = up.load_data(config)
  num_classes = int(train_y.max()) + 1
  params = up.init_params(config, train_x, num_classes)
  loss_fn = up.make_loss_fn(config)  # the experiment's own loss

  def loader(step):
    rows = shuffled_batch(len(train_y), config.train.batch_size, config.seed, step)
    return data.take({'image': train_x, 'label': train_y}, rows)

  def torch_step(batch):
    return _torch().make_unpg_step(tuple(config.model.features), config.model.embedding_dim,
                                   num_classes, config.data.image_size, config.loss.to_dict(),
                                   config.optim.to_dict(), batch)

  return Workload(loss_fn, params, loader, config.optim, torch_step,
                  f'features {tuple(config.model.features)}, {config.data.image_size}px, '
                  f'batch {config.train.batch_size}', total_steps=config.train.steps)
