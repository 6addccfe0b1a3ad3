"""Local dataset files: jsonl / parquet / arrow text tables and ImageFolder trees."""

import json

import numpy as np
import pytest

from common import data
from common.data import files

ROWS = [{'text': 'the cat sat', 'id': 0}, {'text': 'on the mat', 'id': 1},
        {'text': None, 'id': 2}, {'text': 'a dog', 'id': 3}]


@pytest.fixture(scope='module')
def tables(tmp_path_factory):
  pa = pytest.importorskip('pyarrow')
  import pyarrow.parquet

  root = tmp_path_factory.mktemp('tables')
  with open(root / 'a.jsonl', 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in ROWS)
  table = pa.Table.from_pylist(ROWS)
  pyarrow.parquet.write_table(table, root / 'b.parquet')
  with pa.OSFile(str(root / 'c.arrow'), 'wb') as sink, pa.ipc.new_file(sink, table.schema) as w:
    w.write_table(table)
  with pa.OSFile(str(root / 'd.arrow'), 'wb') as sink, pa.ipc.new_stream(sink, table.schema) as w:
    w.write_table(table)  # the streaming format Hugging Face `datasets` writes
  (root / 'notes.txt').write_text('ignored')
  return root


@pytest.mark.parametrize('name', ['a.jsonl', 'b.parquet', 'c.arrow', 'd.arrow'])
def test_read_texts_each_format(tables, name):
  assert data.read_texts(tables / name) == ['the cat sat', 'on the mat', 'a dog']
  assert data.read_table(tables / name, ['id']).column('id').to_pylist() == [0, 1, 2, 3]


def test_read_directory_and_glob(tables):
  assert len(data.read_texts(tables)) == 12  # four files, three texts each; .txt skipped
  assert len(data.read_texts(str(tables / '*.arrow'))) == 6
  assert data.read_table([tables / 'a.jsonl', tables / 'b.parquet']).num_rows == 8


def test_read_errors_name_the_problem(tables, tmp_path):
  with pytest.raises(data.DataError, match="no column 'body'"):
    data.read_texts(tables / 'b.parquet', field='body')
  with pytest.raises(data.DataError, match='does not exist'):
    data.read_texts(tmp_path / 'missing.jsonl')
  (tmp_path / 'bad.parquet').write_bytes(b'not parquet at all')
  with pytest.raises(data.DataError, match='bad.parquet cannot be read'):
    data.read_texts(tmp_path / 'bad.parquet')
  with pytest.raises(data.DataError, match='no .jsonl'):
    data.read_texts(tmp_path / 'empty_dir_glob_*.jsonl')


def test_pack_documents():
  windows = data.pack_documents([[1, 2, 3], [4, 5], [6]], seq_len=3, eos_id=0)
  # stream: 1 2 3 0 4 5 0 6 0 (9 tokens) -> (9 - 1) // 3 = 2 windows of 4, overlapping by one
  np.testing.assert_array_equal(windows, [[1, 2, 3, 0], [0, 4, 5, 0]])
  assert windows.dtype == np.int32
  with pytest.raises(data.DataError, match='fewer than one window'):
    data.pack_documents([[1]], seq_len=8, eos_id=0)


def test_pack_documents_with_trained_tokenizer(tables):
  tokenizers = pytest.importorskip('tokenizers')
  from tokenizers import models, pre_tokenizers, trainers
  tok = tokenizers.Tokenizer(models.WordLevel(unk_token='<unk>'))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.train_from_iterator(data.read_texts(tables / 'a.jsonl'),
                          trainers.WordLevelTrainer(special_tokens=['<eos>', '<unk>']))
  texts = data.read_texts(tables / 'a.jsonl')
  docs = [e.ids for e in tok.encode_batch(texts)]
  windows = data.pack_documents(docs, seq_len=4, eos_id=tok.token_to_id('<eos>'))
  assert windows.shape == (2, 5)
  assert tok.decode(windows[0].tolist()) == 'the cat sat on'  # <eos> is skipped


@pytest.fixture(scope='module')
def image_tree(tmp_path_factory):
  from PIL import Image

  root = tmp_path_factory.mktemp('images')
  rng = np.random.default_rng(0)
  for name, count, size in (('zebra', 2, (6, 4)), ('ant', 3, (6, 4))):
    (root / name / 'sub').mkdir(parents=True)
    for i in range(count):
      pixels = rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8)
      where = root / name / ('sub' if i == 2 else '') / f'{i}.png'
      Image.fromarray(pixels).save(where)
  (root / 'ant' / 'readme.md').write_text('not an image')
  (root / 'stray.png').write_bytes(b'')  # not in a class folder: ignored
  return root


def test_image_folder(image_tree):
  from PIL import Image

  folder = data.ImageFolder(image_tree)
  assert folder.classes == ['ant', 'zebra'] and len(folder) == 5
  np.testing.assert_array_equal(folder.labels, [0, 0, 0, 1, 1])
  item = folder[3]
  assert item['image'].shape == (4, 6, 3) and item['image'].dtype == np.uint8
  np.testing.assert_array_equal(item['image'], np.asarray(Image.open(image_tree / 'zebra/0.png')))
  batch = folder.take(np.array([4, 0]))
  assert batch['image'].shape == (2, 4, 6, 3)
  np.testing.assert_array_equal(batch['label'], [1, 0])
  images, labels, classes = data.load_image_folder(image_tree, image_size=8, channels=1)
  assert images.shape == (5, 8, 8, 1) and classes == ['ant', 'zebra'] and labels.sum() == 2


def test_image_folder_with_grain(image_tree):
  import grain

  folder = data.ImageFolder(image_tree, image_size=4)
  stream = grain.MapDataset.source(folder).shuffle(seed=0)
  labels = sorted(int(stream[i]['label']) for i in range(len(folder)))
  assert labels == [0, 0, 0, 1, 1]


def test_image_folder_errors(image_tree, tmp_path):
  with pytest.raises(data.DataError, match='not a directory'):
    data.ImageFolder(tmp_path / 'missing')
  (tmp_path / 'empty_class').mkdir()
  with pytest.raises(data.DataError, match='holds no images'):
    data.ImageFolder(tmp_path)
  (tmp_path / 'empty_class' / 'broken.png').write_bytes(b'garbage')
  with pytest.raises(data.DataError, match='broken.png is not a readable image'):
    data.ImageFolder(tmp_path)[0]
  assert files.IMAGE_SUFFIXES[0] == '.jpg'
