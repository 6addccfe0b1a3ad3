"""Detection data: digits (or procedural shapes) composed on canvases, as padded arrays and COCO
json; and a reader that turns a COCO-format folder into the same padded arrays.

Boxes follow the +1 convention: [x0, y0, x1, y1] with x1 the last covered pixel, so the COCO
bbox is [x0, y0, x1 - x0 + 1, y1 - y0 + 1] (maskrcnn-benchmark's xyxy <-> xywh).
Labels are 1-based (0 is background); `mask` marks real (unpadded) boxes.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import pathlib

import numpy as np
from PIL import Image

from common import data as datalib

SHAPES = ('rectangle', 'ellipse', 'triangle', 'cross', 'ring')


def _shape(kind: int, h: int, w: int) -> np.ndarray:
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  u, v = (xx + 0.5) / w, (yy + 0.5) / h
  if SHAPES[kind] == 'rectangle':
    m = np.ones((h, w), bool)
  elif SHAPES[kind] == 'ellipse':
    m = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
  elif SHAPES[kind] == 'triangle':
    m = np.abs(u - 0.5) <= 0.5 * v
  elif SHAPES[kind] == 'cross':
    m = (np.abs(u - 0.5) < 0.17) | (np.abs(v - 0.5) < 0.17)
  else:
    r = (u - 0.5) ** 2 + (v - 0.5) ** 2
    m = (r <= 0.25) & (r >= 0.09)
  return (m * 255).astype(np.uint8)


def _digit(img28: np.ndarray, h: int, w: int) -> np.ndarray:
  ys, xs = np.nonzero(img28 > 30)
  crop = img28[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
  return np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR))


def make_canvases(num_images: int, seed: int, canvas: int = 64, min_size: float = 8.0,
                  max_size: float = 40.0, max_objects: int = 4, digits=None,
                  max_gts: int | None = None) -> dict[str, np.ndarray]:
  """Composes 1..max_objects objects per canvas; sqrt(area) log-uniform in [min_size, max_size],
  aspect ratio h/w log-uniform in [1/3, 3]; `digits` = (images [N, 28, 28], labels [N]) or None
  for procedural shapes. Boxes are tight around the drawn pixels."""
  rng = np.random.default_rng(seed)
  max_gts = max_gts or max_objects
  images = np.zeros((num_images, canvas, canvas, 1), np.uint8)
  boxes = np.zeros((num_images, max_gts, 4), np.float32)
  labels = np.zeros((num_images, max_gts), np.int32)
  mask = np.zeros((num_images, max_gts), bool)
  for i in range(num_images):
    n = rng.integers(1, max_objects + 1)
    for j in range(n):
      s = math.exp(rng.uniform(math.log(min_size), math.log(max_size)))
      r = math.exp(rng.uniform(math.log(1 / 3), math.log(3)))
      w = int(np.clip(round(s / math.sqrt(r)), 3, canvas - 1))
      h = int(np.clip(round(s * math.sqrt(r)), 3, canvas - 1))
      if digits is None:
        cls = int(rng.integers(len(SHAPES)))
        patch = _shape(cls, h, w)
      else:
        k = int(rng.integers(len(digits[1])))
        cls = int(digits[1][k])
        patch = _digit(digits[0][k], h, w)
      x0, y0 = int(rng.integers(0, canvas - w + 1)), int(rng.integers(0, canvas - h + 1))
      region = images[i, y0:y0 + h, x0:x0 + w, 0]
      np.maximum(region, patch, out=region)
      ys, xs = np.nonzero(patch > 60)
      if len(xs) == 0:
        continue
      boxes[i, j] = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max(), y0 + ys.max()]
      labels[i, j] = cls + 1
      mask[i, j] = True
  return {'image': images, 'boxes': boxes, 'labels': labels, 'mask': mask}


def num_classes_of(digits) -> int:
  return len(SHAPES) if digits is None else 10


def load_digits(data_dir_setting: str = '', split: str = 'train'):
  """MNIST test digits (first 5000 for 'train', last 5000 for 'val'), or None without data."""
  root = datalib.data_dir(data_dir_setting)
  if root is None:
    datalib.stand_in_notice('procedural shapes')
    return None
  images, labels = datalib.load_mnist(root, 't10k')
  part = slice(0, 5000) if split == 'train' else slice(5000, 10000)
  return images[part].reshape(-1, 28, 28), labels[part]


def to_coco(dataset: dict[str, np.ndarray], num_classes: int,
            class_names: list[str] | None = None,
            crowd: list[tuple[np.ndarray, np.ndarray]] | None = None) -> dict:
  """COCO instances dict of padded arrays (image ids 1.., category ids 1..C). `crowd` holds per
  image (boxes [K, 4], labels [K]) of crowd regions, written as iscrowd=1 annotations: COCOeval
  ignores the detections that fall on them instead of counting them as false positives."""
  n, h, w = dataset['image'].shape[:3]
  names = class_names or [str(c) for c in range(num_classes)]
  images = [{'id': i + 1, 'file_name': f'{i + 1:06d}.png', 'height': h, 'width': w}
            for i in range(n)]
  anns = []

  def add(image: int, box, label: int, iscrowd: int) -> None:
    bw, bh = float(box[2] - box[0] + 1), float(box[3] - box[1] + 1)
    anns.append({'id': len(anns) + 1, 'image_id': image + 1, 'category_id': int(label),
                 'bbox': [float(box[0]), float(box[1]), bw, bh], 'area': bw * bh,
                 'iscrowd': iscrowd})

  for i in range(n):
    for b, lab in zip(dataset['boxes'][i][dataset['mask'][i]],
                      dataset['labels'][i][dataset['mask'][i]], strict=True):
      add(i, b, lab, 0)
    for b, lab in zip(*(crowd[i] if crowd else ((), ())), strict=True):
      add(i, b, lab, 1)
  return {'images': images, 'annotations': anns,
          'categories': [{'id': c + 1, 'name': names[c]} for c in range(num_classes)]}


def write_coco_folder(dataset: dict[str, np.ndarray], num_classes: int, root: str | pathlib.Path,
                      name: str = 'train') -> tuple[pathlib.Path, pathlib.Path]:
  """Writes `root/annotations/instances_<name>.json` and `root/<name>/*.png`."""
  root = pathlib.Path(root)
  coco = to_coco(dataset, num_classes)
  (root / 'annotations').mkdir(parents=True, exist_ok=True)
  (root / name).mkdir(parents=True, exist_ok=True)
  for im, meta in zip(dataset['image'], coco['images'], strict=True):
    Image.fromarray(np.repeat(im, 3, -1)).save(root / name / meta['file_name'])
  ann = root / 'annotations' / f'instances_{name}.json'
  ann.write_text(json.dumps(coco))
  return ann, root / name


class CocoImages:
  """The images of a `CocoDetection`, resized to image_size^2 and decoded only when indexed.

  Array-like for the detector pipeline (`len`, `shape`, `dtype`, `x[int | slice | rows]`), so a
  batch decodes just its images (COCO train2017 at 800^2 would be 227 GB as one array); batches
  are decoded by a thread pool (PIL releases the GIL while decoding and resizing).
  """

  def __init__(self, coco: datalib.CocoDetection, image_size: int, channels: int = 3,
               workers: int = 8):
    self.coco, self.image_size, self.channels, self.workers = coco, image_size, channels, workers
    self.shape = (len(coco), image_size, image_size, channels)
    self.dtype = np.dtype(np.uint8)
    self.ndim = 4

  def __len__(self) -> int:
    return self.shape[0]

  def load(self, index: int) -> np.ndarray:
    img = Image.fromarray(self.coco[index]['image'])
    arr = np.asarray(img.resize((self.image_size, self.image_size), Image.BILINEAR))
    return arr[..., :self.channels]

  def __getitem__(self, index) -> np.ndarray:
    if isinstance(index, (int, np.integer)):
      return self.load(int(index))
    rows = np.arange(len(self))[index]
    out = np.zeros((len(rows),) + self.shape[1:], np.uint8)
    if len(rows):
      with concurrent.futures.ThreadPoolExecutor(min(self.workers, len(rows))) as pool:
        for i, image in enumerate(pool.map(self.load, rows.tolist())):
          out[i] = image
    return out

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    return self[:] if dtype is None else self[:].astype(dtype)


def read_coco_folder(annotation_file, image_dir, image_size: int, max_gts: int,
                     channels: int = 3) -> tuple[dict, dict]:
  """A COCO-format folder as padded arrays: images resized to image_size^2 (boxes scaled; the
  images are a lazy `CocoImages`), the first max_gts non-crowd boxes per image (the official
  training filter drops crowd boxes); also the COCO dict of the resized ground truth, which
  keeps the crowd regions (iscrowd=1) so that COCOeval ignores detections on them. Only the
  json is read here."""
  coco = datalib.CocoDetection(annotation_file, image_dir)
  n = len(coco)
  out = {'image': CocoImages(coco, image_size, channels),
         'boxes': np.zeros((n, max_gts, 4), np.float32),
         'labels': np.zeros((n, max_gts), np.int32), 'mask': np.zeros((n, max_gts), bool)}
  crowd = []
  for i, record in enumerate(coco.records):
    b = record['boxes'].copy()
    b[:, 2:] -= 1.0  # reader's x + w -> last pixel (+1 convention)
    b *= np.array([image_size / record['width'], image_size / record['height']] * 2, np.float32)
    keep = ~record['crowd']
    k = min(int(keep.sum()), max_gts)
    out['boxes'][i, :k] = b[keep][:k]
    out['labels'][i, :k] = record['labels'][keep][:k] + 1
    out['mask'][i, :k] = True
    crowd.append((b[~keep], record['labels'][~keep] + 1))
  return out, to_coco(out, coco.num_classes, coco.category_names, crowd)
