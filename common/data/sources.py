"""Readers for the datasets in the data directory (`PAPERS_DATA_DIR`, see README).

Every reader checks what it reads and fails with one line that names the file and the fix.
"""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import re
import struct
import sys
import zipfile

import numpy as np

from common.config import ConfigError

ENV_VAR = 'PAPERS_DATA_DIR'


class DataError(ConfigError):
  """A data file is missing, truncated or malformed."""


def data_dir(override: str = '') -> pathlib.Path | None:
  """The data directory: `override` (a config setting), else $PAPERS_DATA_DIR, else None."""
  path = override or os.environ.get(ENV_VAR, '')
  if not path:
    return None
  p = pathlib.Path(path).expanduser()
  if not p.is_dir():
    source = 'config.data.data_dir' if override else f'${ENV_VAR}'
    raise DataError(f'{source}={path} is not a directory: point it at the data folder '
                    '(e.g. ../shared/data) or unset it')
  return p


def stand_in_notice(what: str) -> None:
  """Says on stderr (stdout stays the program's output) that `what` stands in for the data."""
  print(f'notice: no data directory (set ${ENV_VAR}); using {what}', file=sys.stderr)


def _require(path: pathlib.Path) -> pathlib.Path:
  if not path.is_file():
    raise DataError(f'{path} is missing: put the file there or run '
                    f'`python -m common.data.download --dest {path.parents[1]}`')
  return path


def load_char_corpus(root: pathlib.Path, name: str = 'tinyshakespeare/input.txt') -> str:
  text = _require(root / name).read_text(encoding='utf-8')
  if len(text) < 2:
    raise DataError(f'{root / name} is empty: restore the file or pick another corpus')
  return text


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Reads an IDX file (optionally gzipped) into a uint8 array of the declared shape."""
  raw = _require(path).read_bytes()
  try:
    if raw[:2] == b'\x1f\x8b':
      raw = gzip.decompress(raw)
  except (OSError, EOFError) as e:
    raise DataError(f'{path} is not a valid gzip file ({e}): download it again') from None
  if len(raw) < 4 or raw[0] or raw[1] or raw[2] != 0x08:
    raise DataError(f'{path} is not a uint8 IDX file: download it again')
  ndim = raw[3]
  header = 4 + 4 * ndim
  dims = struct.unpack(f'>{ndim}I', raw[4:header])
  expected = header + int(np.prod(dims))
  if len(raw) != expected:
    raise DataError(f'{path} holds {len(raw)} bytes but its header declares {expected}: '
                    'the file is truncated or corrupt, download it again')
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_mnist(root: pathlib.Path, split: str = 't10k') -> tuple[np.ndarray, np.ndarray]:
  """MNIST images [N, 28, 28] uint8 and labels [N] int32."""
  images = read_idx(root / 'mnist' / f'{split}-images-idx3-ubyte.gz')
  labels = read_idx(root / 'mnist' / f'{split}-labels-idx1-ubyte.gz').astype(np.int32)
  if len(images) != len(labels):
    raise DataError(f'MNIST {split}: {len(images)} images but {len(labels)} labels')
  return images, labels


_OMNIGLOT_PNG = re.compile(r'[^/]+/([^/]+)/(character\d+)/[^/]+\.png$')


def load_omniglot(zip_path: pathlib.Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Omniglot images [N, 105, 105] uint8 (1 = ink), character labels [N], label names."""
  from PIL import Image  # pillow comes with matplotlib

  try:
    archive = zipfile.ZipFile(_require(zip_path))
  except zipfile.BadZipFile:
    raise DataError(f'{zip_path} is not a valid zip file: download it again') from None
  images, names, label_of = [], [], {}
  with archive:
    for entry in sorted(archive.namelist()):
      match = _OMNIGLOT_PNG.search(entry)
      if not match:
        continue
      key = f'{match[1]}/{match[2]}'
      label_of.setdefault(key, len(label_of))
      try:
        png = Image.open(io.BytesIO(archive.read(entry)))
        images.append(1 - np.asarray(png.convert('L'), np.uint8) // 255)
      except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f'{zip_path}:{entry} cannot be read ({e}): download it again') from None
      names.append(key)
  if not images:
    raise DataError(f'{zip_path} holds no Omniglot PNGs: check the file')
  labels = np.array([label_of[n] for n in names], np.int32)
  return np.stack(images), labels, list(label_of)
