"""The paper configs read the papers' data formats: one step of each `:tiny` form on tiny files
written here in the real layout (CIFAR-10 batches, an ImageFolder face tree, COCO json + JPEGs).
"""

import json
import os
import pathlib
import pickle

import jax
import numpy as np
import pytest
from PIL import Image

from common import data
from common.detection import pipeline
from configs.atss import paper_coco_r50_fpn_1x as atss_config
from configs.rs2 import paper_cifar10
from configs.sampling_free import paper_coco_r50_fpn_1x as sf_config
from configs.unpg import paper_ms1m
from papers.atss import experiment as atss
from papers.rs2 import experiment as rs2
from papers.sampling_free import experiment as sampling_free
from papers.unpg import omniglot as unpg

# --- CIFAR-10 -----------------------------------------------------------------------------


def write_cifar10(root, fmt: str, per_batch: int = 20, test_size: int = 40, seed: int = 0):
  """cifar-10-batches-{py,bin}/: data_batch_1..5 of `per_batch` images, test_batch of `test_size`.
  Image i of class c is filled with the value 10 * c + 1 in red (the label is in the pixels)."""
  rng = np.random.default_rng(seed)
  folder = root / f'cifar-10-batches-{fmt}'
  folder.mkdir(parents=True)
  for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
    n = test_size if name == 'test_batch' else per_batch
    labels = rng.integers(0, 10, n)
    flat = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
    flat[:, :1024] = (10 * labels + 1)[:, None]  # channel-major: the first 1024 bytes are red
    if fmt == 'py':
      batch = {b'batch_label': name.encode(), b'labels': labels.tolist(), b'data': flat,
               b'filenames': [f'{i}.png'.encode() for i in range(n)]}
      (folder / name).write_bytes(pickle.dumps(batch))
    else:
      records = np.concatenate([labels.astype(np.uint8)[:, None], flat], 1)
      (folder / f'{name}.bin').write_bytes(records.tobytes())


def test_augment_is_a_padded_crop_or_its_mirror():
  images = np.random.default_rng(0).integers(1, 256, (6, 8, 8, 3)).astype(np.uint8)
  out = rs2.augment(images, seed=3, step=7, pad=2)
  np.testing.assert_array_equal(out, rs2.augment(images, seed=3, step=7, pad=2))  # pure
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(len(images)):
    crops = [c for dy in range(5) for dx in range(5)
             for c in (padded[i, dy:dy + 8, dx:dx + 8], padded[i, dy:dy + 8, dx:dx + 8][:, ::-1])]
    assert any(np.array_equal(out[i], c) for c in crops)
  assert not np.array_equal(out, images)


@pytest.mark.parametrize('fmt', ['py', 'bin'])
def test_rs2_paper_config_steps_on_cifar10_files(fmt, tmp_path):
  write_cifar10(tmp_path / 'cifar', fmt)
  config = paper_cifar10.get_config('tiny')
  config.data.cifar10_dir = str(tmp_path / 'cifar')
  train_x, train_y, test_x, test_y = rs2.load_data(config)
  assert train_x.shape == (80, 32, 32, 3) and test_x.shape == (40, 32, 32, 3)
  np.testing.assert_array_equal(train_x[:, 0, 0, 0], 10 * train_y + 1)  # images match labels
  result = rs2.train_and_evaluate(config, str(tmp_path / 'work'))
  assert int(result.state.step) == 1
  kernel = jax.tree.leaves(result.state.params)
  assert any(k.ndim == 5 and k.shape[3] == 3 for k in kernel)  # RGB input (one member), not MNIST
  assert 0.0 <= result.eval_metrics['accuracy'] <= 1.0


class _Exploit:
  def __reduce__(self):
    return (os.system, ('echo pwned > pwned.txt',))


def test_cifar10_python_batch_with_code_is_refused(tmp_path):
  path = tmp_path / 'data_batch_1'
  path.write_bytes(pickle.dumps({b'data': _Exploit(), b'labels': [0]}))
  with pytest.raises(data.DataError, match=r'refusing to load (posix|nt|os)\.system'):
    data.read_cifar10_python(path)
  assert not (tmp_path / 'pwned.txt').exists() and not pathlib.Path('pwned.txt').exists()
  good = tmp_path / 'good'
  write_cifar10(good, 'py', per_batch=3)
  images, labels = data.read_cifar10_python(good / 'cifar-10-batches-py' / 'data_batch_1')
  assert images.shape == (3, 32, 32, 3)
  assert images[:, 0, 0, 0].tolist() == (10 * labels + 1).tolist()


def test_rs2_cifar10_missing_folder_is_one_line(tmp_path):
  config = paper_cifar10.get_config('tiny')
  config.data.cifar10_dir = str(tmp_path)
  with pytest.raises(rs2.data.DataError, match='neither cifar-10-batches-py'):
    rs2.train_and_evaluate(config, str(tmp_path / 'work'))


# --- ImageFolder faces --------------------------------------------------------------------


def write_faces(root, identities: int = 12, per_identity: int = 5, seed: int = 0):
  """root/<identity>/<image> with PNG and JPEG files of differing sizes (resized on read)."""
  rng = np.random.default_rng(seed)
  for k in range(identities):
    folder = root / f'm.{k:05d}'
    folder.mkdir(parents=True)
    base = rng.integers(0, 256, (3,))
    for j in range(per_identity):
      h, w = (24, 20) if j % 2 else (20, 20)
      pixels = np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(folder / f'{j}.{"jpg" if j % 2 else "png"}')


def test_unpg_paper_config_steps_on_an_image_folder(tmp_path):
  write_faces(tmp_path / 'faces')
  config = paper_ms1m.get_config('tiny')
  config.data.image_folder = str(tmp_path / 'faces')
  train_x, train_y, test_x, test_y = unpg.load_data(config)
  assert len(train_x) == 8 * 5 and set(train_y.tolist()) == set(range(8))  # 4 held out
  assert len(test_x) == 4 * 5 and set(test_y.tolist()) == set(range(4))
  assert train_x[np.array([0, 5])].shape == (2, 16, 16, 3) and train_x[0].max() <= 1.0
  result = unpg.train_and_evaluate(config, str(tmp_path / 'work'))
  assert int(result.state.step) == 1
  m = result.eval_metrics
  assert m['num_positive_pairs'] == 4 * 10 and m['num_negative_pairs'] == 20 * 19 // 2 - 40
  assert 0.0 <= m['accuracy'] <= 1.0
  embeddings = np.load(tmp_path / 'work' / 'test_embeddings.npy')
  assert embeddings.shape == (20, config.model.embedding_dim)


def test_unpg_too_few_identities_is_a_config_error(tmp_path):
  write_faces(tmp_path / 'faces', identities=9)
  config = paper_ms1m.get_config('tiny')
  config.data.image_folder = str(tmp_path / 'faces')
  with pytest.raises(unpg.cfglib.ConfigError, match='held_out_identities'):
    unpg.load_data(config)


# --- COCO -----------------------------------------------------------------------------------

CATEGORIES = [{'id': 1, 'name': 'person', 'supercategory': 'person'},
              {'id': 3, 'name': 'car', 'supercategory': 'vehicle'},
              {'id': 18, 'name': 'dog', 'supercategory': 'animal'}]


def write_coco(root, split: str, num_images: int, seed: int):
  """annotations/instances_<split>.json + <split>/<id>.jpg as COCO ships them: non-contiguous
  image and category ids, images of differing sizes, float xywh boxes, a crowd box, one image
  without annotations."""
  rng = np.random.default_rng(seed)
  (root / 'annotations').mkdir(parents=True, exist_ok=True)
  (root / split).mkdir(parents=True)
  images, annotations = [], []
  for i in range(num_images):
    w, h = (96, 72) if i % 2 else (72, 96)
    image_id = 139 + 1000 * i
    pixels = rng.integers(0, 40, (h, w, 3)).astype(np.uint8)
    for j in range(0 if i == num_images - 1 else 2):
      bw, bh = float(rng.integers(16, 40)), float(rng.integers(16, 40))
      x, y = float(rng.integers(0, int(w - bw))) + 0.5, float(rng.integers(0, int(h - bh))) + 0.25
      cat = CATEGORIES[(i + j) % 3]
      pixels[int(y):int(y + bh), int(x):int(x + bw)] = 200 + 20 * (cat['id'] % 3)
      annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                          'category_id': cat['id'], 'bbox': [x, y, bw, bh],
                          'area': bw * bh, 'iscrowd': int(i == 0 and j == 1),
                          'segmentation': [[x, y, x + bw, y, x + bw, y + bh]]})
    name = f'{image_id:012d}.jpg'
    Image.fromarray(pixels).save(root / split / name, quality=90)
    images.append({'id': image_id, 'file_name': name, 'height': h, 'width': w, 'license': 1})
  ann = root / 'annotations' / f'instances_{split}.json'
  ann.write_text(json.dumps({'info': {'year': 2017}, 'licenses': [{'id': 1, 'name': 'x'}],
                             'images': images, 'annotations': annotations,
                             'categories': CATEGORIES}))
  return f'{ann}:{root / split}'


@pytest.fixture
def coco(tmp_path):
  return (write_coco(tmp_path / 'coco', 'train2017', 4, 0),
          write_coco(tmp_path / 'coco', 'val2017', 3, 1))


def test_coco_folder_reads_lazily_with_scaled_boxes(coco):
  config = atss_config.get_config('tiny')
  config.data.update(coco_train=coco[0], coco_val=coco[1])
  train, val, gt, num_classes = pipeline.load_data(config)
  assert num_classes == 3 and len(train['image']) == 4 and len(val['image']) == 3
  assert not isinstance(train['image'], np.ndarray)  # decoded per batch
  assert train['image'][np.array([1, 2])].shape == (2, 64, 64, 3)
  assert train['mask'].sum(1).tolist() == [1, 2, 2, 0]  # the crowd box is left out
  ann = json.loads(open(coco[0].split(':')[0]).read())['annotations'][0]  # image 0: 72 x 96
  x, y, w, h = ann['bbox']
  want = [x * 64 / 72, y * 64 / 96, (x + w - 1) * 64 / 72, (y + h - 1) * 64 / 96]
  np.testing.assert_allclose(train['boxes'][0, 0], want, rtol=1e-5)
  assert train['labels'][0, 0] == [c['id'] for c in CATEGORIES].index(ann['category_id']) + 1
  # the crowd box stays in the evaluation's ground truth as an ignored region (iscrowd=1)
  assert sorted(a['iscrowd'] for a in gt['annotations']) == [0, 0, 0, 1]
  assert [c['name'] for c in gt['categories']] == [
      'person', 'car', 'dog']


def test_atss_paper_config_steps_on_coco(coco, tmp_path):
  config = atss_config.get_config('tiny')
  config.data.update(coco_train=coco[0], coco_val=coco[1])
  result = atss.train_and_evaluate(config, str(tmp_path / 'work'))
  m = result.eval_metrics
  assert int(result.state.step) == 1 and 0.0 <= m['AP'] <= 100.0
  assert np.isfinite(m['pos_per_gt'])
  assert json.loads((tmp_path / 'work' / 'eval.json').read_text())['AP'] == m['AP']


def test_sampling_free_paper_config_steps_on_coco(coco, tmp_path):
  config = sf_config.get_config('tiny')
  config.data.update(coco_train=coco[0], coco_val=coco[1])
  result = sampling_free.train_and_evaluate(config, str(tmp_path / 'work'))
  m = result.eval_metrics
  assert int(result.state.step) == 1 and 0.0 <= m['AP'] <= 100.0
  assert 0 < m['prior'] < 1 / 3 and m['threshold'] == pytest.approx(4 * m['prior'])  # C = 3
  cls_bias = [x for x in jax.tree.leaves(result.state.params) if x.shape == (9 * 3,)]
  assert cls_bias  # 9 anchors x the 3 COCO categories of the json
