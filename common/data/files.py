"""Local dataset files in the common formats: text tables, ImageFolder trees, COCO json.

    texts = read_texts('corpus/*.parquet', field='text')        # jsonl / parquet / arrow
    tokens = pack_documents([tok.encode(t).ids for t in texts], seq_len=1024, eos_id=eos)
    train = ImageFolder('faces/train', image_size=112)           # root/<class>/<image>
    batch = train.take(np.arange(8))                             # {'image', 'label'}
    coco = CocoDetection('annotations/instances_val2017.json', 'val2017')

Tables are read with pyarrow: newline-delimited JSON (`.jsonl`, `.json`), Parquet
(`.parquet`) and Arrow IPC files or streams (`.arrow`, as Hugging Face `datasets` writes them).
`ImageFolder` and `CocoDetection` are random-access (`len` and `[i]`), so they plug into
`grain.MapDataset.source` and decode only the images a batch needs. Every problem is a
`DataError` naming the file.
"""

from __future__ import annotations

import glob
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from common.data.sources import DataError

TABLE_SUFFIXES = ('.jsonl', '.json', '.parquet', '.arrow')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.ppm', '.tif', '.tiff')
PathLike = str | os.PathLike


def expand_paths(paths: PathLike | Sequence[PathLike], suffixes: Sequence[str]) -> list[str]:
  """Files named by paths, directories (their matching files) or glob patterns, sorted."""
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  found: list[str] = []
  for path in map(str, paths):
    if os.path.isdir(path):
      found += sorted(str(p) for p in pathlib.Path(path).rglob('*')
                      if p.is_file() and p.suffix.lower() in suffixes)
    elif any(c in path for c in '*?['):
      found += sorted(glob.glob(path, recursive=True))
    elif os.path.isfile(path):
      found.append(path)
    else:
      raise DataError(f'{path} does not exist: pass a file, a directory or a glob pattern')
  if not found:
    raise DataError(f'no {"/".join(suffixes)} files under {", ".join(map(str, paths))}')
  return found


def _read_one(path: str, columns: Sequence[str] | None):
  import pyarrow as pa
  import pyarrow.json
  import pyarrow.parquet

  suffix = pathlib.Path(path).suffix.lower()
  try:
    if suffix in ('.jsonl', '.json'):
      table = pyarrow.json.read_json(path)
    elif suffix == '.parquet':
      schema = pyarrow.parquet.read_schema(path)
      wanted = [c for c in columns if c in schema.names] if columns else None
      table = pyarrow.parquet.read_table(path, columns=wanted)
    elif suffix == '.arrow':
      try:
        with pa.memory_map(path) as source:
          table = pa.ipc.open_file(source).read_all()
      except pa.ArrowInvalid:  # the streaming format (Hugging Face `datasets` caches)
        with pa.memory_map(path) as source:
          table = pa.ipc.open_stream(source).read_all()
    else:
      raise DataError(f'{path}: unknown table format {suffix!r}; use one of '
                      f'{", ".join(TABLE_SUFFIXES)}')
  except (pa.ArrowException, OSError) as e:
    raise DataError(f'{path} cannot be read as {suffix[1:]} ({str(e).splitlines()[0]}): '
                    'check the file') from None
  if columns:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
      raise DataError(f'{path} has no column {missing[0]!r} (it has {table.column_names}): '
                      'pass the right field name')
    table = table.select(list(columns))
  return table


def read_table(paths: PathLike | Sequence[PathLike], columns: Sequence[str] | None = None):
  """All rows of the jsonl/parquet/arrow files as one `pyarrow.Table` (files in path order)."""
  import pyarrow as pa

  tables = [_read_one(p, columns) for p in expand_paths(paths, TABLE_SUFFIXES)]
  try:
    return pa.concat_tables(tables, promote_options='default')
  except pa.ArrowInvalid as e:
    raise DataError(f'the files have incompatible columns ({e}): pass `columns`') from None


def read_texts(paths: PathLike | Sequence[PathLike], field: str = 'text') -> list[str]:
  """The `field` column of every row as Python strings (nulls dropped)."""
  column = read_table(paths, [field]).column(field)
  return [t for t in column.to_pylist() if t is not None]


def join_documents(documents: Sequence[Sequence[int]], eos_id: int) -> np.ndarray:
  """Token lists joined into one int32 stream with `eos_id` after each document."""
  lengths = [len(d) + 1 for d in documents]
  stream = np.empty(sum(lengths), np.int32)
  pos = 0
  for doc, n in zip(documents, lengths, strict=True):
    stream[pos:pos + n - 1] = doc
    stream[pos + n - 1] = eos_id
    pos += n
  return stream


def pack_documents(documents: Sequence[Sequence[int]], seq_len: int, eos_id: int) -> np.ndarray:
  """Token lists joined with `eos_id` after each, cut into windows [N, seq_len + 1] int32.

  Window i holds tokens [i * seq_len, (i + 1) * seq_len]: inputs plus next-token targets, the
  layout of `common.lm.windows`. The tail that does not fill a window is dropped.
  """
  stream = join_documents(documents, eos_id)
  count = (len(stream) - 1) // seq_len
  if count == 0:
    raise DataError(f'{len(stream)} tokens are fewer than one window of seq_len={seq_len} + 1: '
                    'add documents or shorten data.seq_len')
  return stream[np.arange(count)[:, None] * seq_len + np.arange(seq_len + 1)]


class ImageFolder:
  """`root/<class>/<image>` as a random-access source of {'image': uint8 [H, W, C], 'label'}.

  Classes are the sorted sub-directory names (label = index), images the sorted files with an
  image suffix inside each (any depth). With `image_size`, images are resized to that square
  (bilinear); without it they must already share one size to be stacked.
  """

  def __init__(self, root: PathLike, image_size: int | None = None, channels: int = 3):
    self.root = pathlib.Path(root)
    if not self.root.is_dir():
      raise DataError(f'{root} is not a directory: pass the folder holding one folder per class')
    if channels not in (1, 3):
      raise DataError(f'channels={channels} must be 1 (grayscale) or 3 (RGB)')
    self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
    paths, labels = [], []
    for label, name in enumerate(self.classes):
      files = sorted(p for p in (self.root / name).rglob('*')
                     if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
      paths += files
      labels += [label] * len(files)
    if not paths:
      raise DataError(f'{root} holds no images in class folders (root/<class>/<image>.png)')
    self.paths = paths
    self.labels = np.asarray(labels, np.int32)
    self.image_size = image_size
    self.channels = channels

  def __len__(self) -> int:
    return len(self.paths)

  def image(self, index: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    path = self.paths[index]
    try:
      with Image.open(path) as img:
        img = img.convert('RGB' if self.channels == 3 else 'L')
        if self.image_size and img.size != (self.image_size, self.image_size):
          img = img.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        array = np.asarray(img, np.uint8)
    except (UnidentifiedImageError, OSError) as e:
      raise DataError(f'{path} is not a readable image ({e}): remove or replace it') from None
    return array.reshape(array.shape[:2] + (self.channels,))

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {'image': self.image(int(index)), 'label': self.labels[int(index)]}

  def take(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """A batch: images [B, H, W, C] uint8 and labels [B] int32."""
    images = [self.image(int(i)) for i in indices]
    shapes = {x.shape for x in images}
    if len(shapes) > 1:
      raise DataError(f'{self.root}: images of sizes {sorted(shapes)[:3]} cannot be stacked: '
                      'pass image_size to resize them')
    return {'image': np.stack(images), 'label': self.labels[np.asarray(indices, np.int64)]}


def load_image_folder(root: PathLike, image_size: int | None = None, channels: int = 3
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """A whole (small) ImageFolder tree in memory: images, labels, class names."""
  folder = ImageFolder(root, image_size, channels)
  batch = folder.take(np.arange(len(folder)))
  return batch['image'], batch['label'], folder.classes


class CocoDetection:
  """COCO detection annotations (`instances_*.json`) over an image directory, random-access.

  Item i is {'image': uint8 [H, W, 3], 'boxes': float32 [N, 4] (x0, y0, x1, y1) in pixels,
  'labels': int32 [N] (index into `category_ids`, contiguous from 0), 'crowd': bool [N],
  'image_id': int}. Boxes narrower or lower than one pixel are dropped (as mmdetection does);
  `skip_empty` drops images with no boxes left (the usual training filter). Images are not
  resized: a detection pipeline rescales images and boxes together.
  """

  def __init__(self, annotation_file: PathLike, image_dir: PathLike, skip_empty: bool = False):
    import json

    path = pathlib.Path(annotation_file)
    try:
      coco = json.loads(path.read_text())
      images, categories = coco['images'], coco['categories']
      annotations = coco.get('annotations', [])
    except FileNotFoundError:
      raise DataError(f'{path} does not exist: pass the COCO annotation json') from None
    except (ValueError, KeyError, TypeError) as e:
      raise DataError(f'{path} is not COCO detection json ({e!r}): it needs "images" and '
                      '"categories"') from None
    self.image_dir = pathlib.Path(image_dir)
    self.category_ids = sorted(c['id'] for c in categories)
    self.category_names = [next(c['name'] for c in categories if c['id'] == i)
                           for i in self.category_ids]
    label_of = {c: i for i, c in enumerate(self.category_ids)}
    per_image: dict[int, list] = {im['id']: [] for im in images}
    for ann in annotations:
      x, y, w, h = ann['bbox']
      if w >= 1 and h >= 1 and ann['image_id'] in per_image:
        per_image[ann['image_id']].append(
            ([x, y, x + w, y + h], label_of[ann['category_id']], bool(ann.get('iscrowd', 0))))
    self.records = []
    for im in sorted(images, key=lambda im: im['id']):
      anns = per_image[im['id']]
      if skip_empty and not anns:
        continue
      self.records.append({
          'image_id': im['id'], 'file': self.image_dir / im['file_name'],
          'height': im['height'], 'width': im['width'],
          'boxes': np.asarray([a[0] for a in anns], np.float32).reshape(-1, 4),
          'labels': np.asarray([a[1] for a in anns], np.int32),
          'crowd': np.asarray([a[2] for a in anns], bool)})

  @property
  def num_classes(self) -> int:
    return len(self.category_ids)

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    record = self.records[int(index)]
    try:
      with Image.open(record['file']) as img:
        image = np.asarray(img.convert('RGB'), np.uint8)
    except (UnidentifiedImageError, OSError) as e:
      raise DataError(f'{record["file"]} is not a readable image ({e}): check image_dir') \
          from None
    if image.shape[:2] != (record['height'], record['width']):
      raise DataError(f'{record["file"]} is {image.shape[1]}x{image.shape[0]} but the json says '
                      f'{record["width"]}x{record["height"]}: check image_dir')
    return {'image': image, 'boxes': record['boxes'], 'labels': record['labels'],
            'crowd': record['crowd'], 'image_id': record['image_id']}


EOS_TOKENS = ('<|endoftext|>', '</s>', '<eos>')


def eos_id(tokenizer, eos_token: str | None = None) -> int:
  """The id of `eos_token`, or of the first of '<|endoftext|>', '</s>', '<eos>' the tokenizer
  knows."""
  candidates = [eos_token] if eos_token else list(EOS_TOKENS)
  ids = [tokenizer.token_to_id(t) for t in candidates]
  found = next((i for i in ids if i is not None), None)
  if found is None:
    raise DataError(f'the tokenizer has no end-of-text token among {candidates}: pass eos_token')
  return found


def token_stream(paths: PathLike | Sequence[PathLike], tokenizer, field: str = 'text',
                 eos_token: str | None = None) -> np.ndarray:
  """Text files -> every document tokenized (no special tokens) and joined with EOS, int32."""
  eos = eos_id(tokenizer, eos_token)
  texts = read_texts(paths, field)
  documents = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
  return join_documents(documents, eos)


def token_windows(paths: PathLike | Sequence[PathLike], tokenizer, seq_len: int,
                  field: str = 'text', eos_token: str | None = None) -> np.ndarray:
  """Text files -> tokenized, EOS-joined windows [N, seq_len + 1] (a paper-scale LM corpus).

  `tokenizer` is a `tokenizers.Tokenizer` (e.g. `common.hf.load_tokenizer(dir)`); `eos_token`
  names the separator (default: the first of '<|endoftext|>', '</s>', '<eos>' it knows).
  """
  eos = eos_id(tokenizer, eos_token)
  texts = read_texts(paths, field)
  documents = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
  return pack_documents(documents, seq_len, eos)
