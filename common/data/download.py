"""Download the datasets with sha256 checks, for users without `../shared/data`.

    python -m common.data.download --dest ~/papers_data   # then PAPERS_DATA_DIR=~/papers_data
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import tempfile
import urllib.request

# relative path -> (url, sha256)
FILES = {
    'tinyshakespeare/input.txt': (
        'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt',
        '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed'),
    'mnist/t10k-images-idx3-ubyte.gz': (
        'https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz',
        '1488b2253c7678056ecec4d0a5964be6cf8cf6dc6411b21a48d77a497fefe2be'),
    'mnist/t10k-labels-idx1-ubyte.gz': (
        'https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz',
        'daa0ca80179b076764a51a527b4850de26f321125e4d2d55cf279fff0a4b4c4d'),
    'omniglot/images_background_small1.zip': (
        'https://raw.githubusercontent.com/brendenlake/omniglot/master/python/'
        'images_background_small1.zip',
        'f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4'),
    'omniglot/images_background_small2.zip': (
        'https://raw.githubusercontent.com/brendenlake/omniglot/master/python/'
        'images_background_small2.zip',
        '3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f'),
}


def sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def download(url: str, dest: pathlib.Path, expected_sha256: str) -> pathlib.Path:
  """Fetches `url` to `dest` atomically; a checksum mismatch leaves `dest` untouched."""
  dest = pathlib.Path(dest)
  if dest.is_file() and sha256(dest) == expected_sha256:
    return dest
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + '.part')
  try:
    with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=60) as response:
      while chunk := response.read(1 << 20):
        out.write(chunk)
    actual = sha256(pathlib.Path(tmp))
    if actual != expected_sha256:
      raise ValueError(f'{url}: sha256 {actual} != expected {expected_sha256}; '
                       'the file was not saved')
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return dest


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--dest', required=True, type=pathlib.Path)
  parser.add_argument('--only', default='', help='download only paths containing this')
  args = parser.parse_args()
  for rel, (url, digest) in FILES.items():
    if args.only in rel:
      print(download(url, args.dest / rel, digest))


if __name__ == '__main__':
  main()
