"""Bad input: one clear line, a non-zero exit, nothing in the workdir damaged."""

import gzip
import hashlib
import zipfile

import numpy as np
import pytest

from common import data
from common.data.download import download
from tests.testutil import run_main

SMOKE = '--config=configs/quickstart.py:smoke'


@pytest.mark.parametrize('override, expected', [
    ('--config.train.foo=1', '--config.train.foo: no such setting'),
    ('--config.train.steps=abc', 'invalid literal'),
    ('--config.train.batch_size=-1', 'config.train.batch_size=-1 must be a positive integer'),
    ('--config.optim.lr=0', 'config.optim.lr=0'),
    ('--config.optim.name=adagrad', 'config.optim.name=\'adagrad\' is not one of'),
    ('--config.data.data_dir=/nonexistent', 'config.data.data_dir=/nonexistent is not a dir'),
    ('--config=configs/nope.py', 'cannot be loaded'),
])
def test_bad_setting_gives_one_line(tmp_path, override, expected):
  (tmp_path / 'keep.txt').write_text('precious')
  args = [SMOKE, f'--workdir={tmp_path}', override]
  if override.startswith('--config='):
    args = [override, f'--workdir={tmp_path}']
  proc = run_main(*args, timeout=60)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], lines
  assert sorted(p.name for p in tmp_path.iterdir()) == ['keep.txt']


def test_batch_not_divisible_by_devices(tmp_path):
  proc = run_main(SMOKE, f'--workdir={tmp_path}', '--config.train.batch_size=12', devices=8)
  assert proc.returncode == 2
  assert 'not divisible by the number of devices (8)' in proc.stderr


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  proc = run_main(SMOKE, f'--workdir={blocker}/run', timeout=60)
  assert proc.returncode == 2 and 'cannot be created' in proc.stderr.strip()


def test_truncated_idx_file(tmp_path):
  raw = bytes([0, 0, 8, 3]) + np.array([2, 2, 2], '>u4').tobytes() + bytes(range(8))
  (tmp_path / 'ok.idx').write_bytes(raw)
  np.testing.assert_array_equal(data.read_idx(tmp_path / 'ok.idx').ravel(), range(8))
  (tmp_path / 'cut.idx.gz').write_bytes(gzip.compress(raw[:-3]))
  with pytest.raises(data.DataError, match='truncated'):
    data.read_idx(tmp_path / 'cut.idx.gz')
  with pytest.raises(data.DataError, match='missing'):
    data.read_idx(tmp_path / 'absent.idx')


def test_broken_zip_and_empty_corpus(tmp_path):
  (tmp_path / 'bad.zip').write_bytes(b'not a zip')
  with pytest.raises(data.DataError, match='not a valid zip'):
    data.load_omniglot(tmp_path / 'bad.zip')
  (tmp_path / 'tinyshakespeare').mkdir()
  (tmp_path / 'tinyshakespeare' / 'input.txt').write_text('')
  with pytest.raises(data.DataError, match='empty'):
    data.load_char_corpus(tmp_path)


def test_omniglot_reader_on_a_tiny_zip(tmp_path):
  from PIL import Image
  path = tmp_path / 'o.zip'
  with zipfile.ZipFile(path, 'w') as z:
    for char in ('character01', 'character02'):
      for drawer in range(2):
        img = Image.fromarray(np.full((105, 105), 255, np.uint8)).convert('1')
        img.putpixel((3, 4), 0)
        name = f'small/Alpha/{char}/x_{drawer}.png'
        with z.open(name, 'w') as f:
          img.save(f, format='PNG')
  images, labels, names = data.load_omniglot(path)
  assert images.shape == (4, 105, 105) and images.sum() == 4 and images[0, 4, 3] == 1
  np.testing.assert_array_equal(labels, [0, 0, 1, 1])
  assert names == ['Alpha/character01', 'Alpha/character02']


def test_real_data_checksums_match_download_table(data_dir):
  if data_dir is None:
    pytest.skip('PAPERS_DATA_DIR is not set')
  from common.data.download import FILES, sha256
  for rel, (_, digest) in FILES.items():
    assert sha256(data_dir / rel) == digest, rel
  images, labels = data.load_mnist(data_dir)
  assert images.shape == (10000, 28, 28) and np.bincount(labels)[0] == 980


def test_download_checks_sha256(tmp_path):
  src = tmp_path / 'src.bin'
  src.write_bytes(b'hello data')
  digest = hashlib.sha256(b'hello data').hexdigest()
  out = download(src.as_uri(), tmp_path / 'out' / 'file.bin', digest)
  assert out.read_bytes() == b'hello data'
  with pytest.raises(ValueError, match='sha256'):
    download(src.as_uri(), tmp_path / 'out' / 'other.bin', '0' * 64)
  assert not (tmp_path / 'out' / 'other.bin').exists()
  assert [p.name for p in (tmp_path / 'out').iterdir()] == ['file.bin']


def test_batch_stream_is_a_pure_function_of_seed_and_step():
  a, b = data.batch_indices(10, 4, seed=3), data.batch_indices(10, 4, seed=3)
  assert [a[i].tolist() for i in range(6)] == [b[i].tolist() for i in (0, 1, 2, 3, 4, 5)]
  assert a[7].tolist() == b[7].tolist()  # random access, no replay
  first_epoch = np.concatenate([a[0], a[1], a[2][:2]])
  assert sorted(first_epoch.tolist()) == list(range(10))
  assert data.batch_indices(10, 4, seed=4)[0].tolist() != a[0].tolist()


def test_workdir_of_another_model_is_refused_unless_forced(tmp_path):
  first = run_main(SMOKE, f'--workdir={tmp_path}', '--config.train.steps=2', timeout=120)
  assert first.returncode == 0, first.stderr[-2000:]
  before = sorted(p.name for p in (tmp_path / 'checkpoints').iterdir())
  other = run_main(SMOKE, f'--workdir={tmp_path}', '--config.model.mlp_dim=128', timeout=60)
  assert other.returncode == 2 and 'different config.model' in other.stderr
  assert '--force_resume' in other.stderr
  assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()) == before
  forced = run_main(SMOKE, f'--workdir={tmp_path}', '--config.train.steps=4',
                    '--config.train.log_every=1', '--force_resume', timeout=120)
  assert forced.returncode == 0, forced.stderr[-2000:]  # same shapes: resumes from step 2


@pytest.mark.parametrize('text', ['{"images": [', '{"annotations": []}', '[1, 2]'])
def test_invalid_coco_json(tmp_path, text):
  (tmp_path / 'instances.json').write_text(text)
  with pytest.raises(data.DataError, match='instances.json'):
    data.CocoDetection(tmp_path / 'instances.json', tmp_path)
