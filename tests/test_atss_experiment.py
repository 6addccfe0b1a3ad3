"""ATSS detector: loss on 8 devices == 1 device, and the paper config's 1x schedule (its one
step on a COCO folder is in tests/test_paper_data.py)."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from common import parallel, train
from common.detection import data as D
from common.detection import pipeline
from configs.atss import mnist_canvas, paper_coco_r50_fpn_1x
from papers.atss import experiment


def test_loss_and_grads_8_devices_equal_1():
  config = mnist_canvas.get_config('smoke')
  config.detector.update(backbone_features=(8, 8, 8), fpn_features=8, num_convs=1)
  batch = D.make_canvases(8, 3, canvas=64, max_size=40)
  anchors, nums = pipeline.anchors_from_config(config)
  model = experiment.build_model(config, len(D.SHAPES))
  params = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)))
  loss_fn = experiment.make_loss_fn(config, model, anchors, nums, len(D.SHAPES))
  step = jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, b, None)[0]))
  one = step(params, batch)
  mesh = parallel.make_mesh(8)
  sharded = jax.device_put(batch, NamedSharding(mesh, P('data')))
  eight = step(parallel.replicate(params, mesh), sharded)
  np.testing.assert_allclose(one[0], eight[0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(one[1]), jax.tree.leaves(eight[1]), strict=True):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_paper_schedule_steps_down_at_60k_and_80k():
  optim = paper_coco_r50_fpn_1x.get_config().optim
  lr = train.make_schedule(optim, 90_000)
  want = {0: 0.0, 250: 0.005, 500: 0.01, 59_999: 0.01, 60_000: 1e-3, 79_999: 1e-3, 80_000: 1e-4,
          89_999: 1e-4}
  for step, value in want.items():
    np.testing.assert_allclose(float(lr(step)), value, rtol=1e-5, err_msg=f'step {step}')
