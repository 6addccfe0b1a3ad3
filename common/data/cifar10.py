"""CIFAR-10 readers for users who have the files: the python (pickle) and the binary format.

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch}          (python)
    <root>/cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin}  (binary)

Python batches are pickled dicts with b'data' [N, 3072] uint8 (channel-major: 1024 red, 1024
green, 1024 blue, rows of 32) and b'labels'; a binary record is 1 label byte + 3072 such bytes.
Both give images [N, 32, 32, 3] uint8 (HWC) and labels [N] int32. Python batches are read with
a restricted unpickler: only the dict of bytes, strings, numbers, lists and numpy arrays the
format holds loads; any other object (a crafted file would run code on load) is one error line.
"""

from __future__ import annotations

import pathlib
import pickle

import numpy as np

from common.data.sources import DataError

RECORD = 1 + 3 * 32 * 32
_TRAIN = [f'data_batch_{i}' for i in range(1, 6)]


def _to_hwc(flat: np.ndarray) -> np.ndarray:
  return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


class _BatchUnpickler(pickle.Unpickler):
  """Loads only plain containers and numpy arrays: no other global can be named."""

  _ALLOWED = {('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode'),
              *((f'numpy.{core}.{module}', name) for core in ('core', '_core')
                for module, name in (('multiarray', '_reconstruct'), ('numeric', '_frombuffer')))}

  def find_class(self, module: str, name: str):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f'refusing to load {module}.{name}: CIFAR-10 batches hold only '
                                 'bytes, lists and arrays')


def read_cifar10_python(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """One python-format batch file -> (images [N, 32, 32, 3] uint8, labels [N] int32)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f'{path} is missing: download CIFAR-10 (python version) and unpack it')
  try:
    with path.open('rb') as f:
      batch = _BatchUnpickler(f, encoding='bytes').load()
    data = np.asarray(batch[b'data'], np.uint8)
    labels = np.asarray(batch[b'labels'], np.int32)
  except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as e:
    raise DataError(f'{path} is not a CIFAR-10 python batch ({e!r}): download it again') from None
  if data.ndim != 2 or data.shape[1] != RECORD - 1 or len(data) != len(labels):
    raise DataError(f'{path}: data {data.shape} / labels {labels.shape} are not [N, 3072] / [N]')
  return _to_hwc(data), labels


def read_cifar10_binary(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """One binary-format batch file -> (images [N, 32, 32, 3] uint8, labels [N] int32)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f'{path} is missing: download CIFAR-10 (binary version) and unpack it')
  raw = np.frombuffer(path.read_bytes(), np.uint8)
  if len(raw) == 0 or len(raw) % RECORD:
    raise DataError(f'{path} holds {len(raw)} bytes, not a multiple of {RECORD}: the file is '
                    'truncated or not CIFAR-10 binary')
  records = raw.reshape(-1, RECORD)
  labels = records[:, 0].astype(np.int32)
  if labels.max() > 9:
    raise DataError(f'{path}: label {labels.max()} > 9, not a CIFAR-10 binary file')
  return _to_hwc(records[:, 1:]), labels


def load_cifar10(root: str | pathlib.Path, split: str = 'train') -> tuple[np.ndarray, np.ndarray]:
  """The train (50k) or test (10k) split from whichever format is under `root`."""
  if split not in ('train', 'test'):
    raise ValueError(f'split={split!r} must be "train" or "test"')
  root = pathlib.Path(root)
  names = _TRAIN if split == 'train' else ['test_batch']
  if (root / 'cifar-10-batches-py').is_dir():
    parts = [read_cifar10_python(root / 'cifar-10-batches-py' / n) for n in names]
  elif (root / 'cifar-10-batches-bin').is_dir():
    parts = [read_cifar10_binary(root / 'cifar-10-batches-bin' / f'{n}.bin') for n in names]
  else:
    raise DataError(f'{root} holds neither cifar-10-batches-py nor cifar-10-batches-bin: '
                    'unpack cifar-10-python.tar.gz or cifar-10-binary.tar.gz there')
  return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
