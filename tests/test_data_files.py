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
  np.testing.assert_array_equal(data.token_windows(tables / 'a.jsonl', tok, 4), windows)
  with pytest.raises(data.DataError, match='no end-of-text token'):
    data.token_windows(tables / 'a.jsonl', tok, 4, eos_token='<|im_end|>')


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


@pytest.fixture(scope='module')
def coco_files(tmp_path_factory):
  from PIL import Image

  root = tmp_path_factory.mktemp('coco')
  (root / 'images').mkdir()
  for i, (w, h) in enumerate([(8, 6), (5, 5), (4, 7)]):
    Image.fromarray(np.full((h, w, 3), 10 * i, np.uint8)).save(root / 'images' / f'{i}.jpg')
  coco = {
      'images': [{'id': 30, 'file_name': '2.jpg', 'width': 4, 'height': 7},
                 {'id': 10, 'file_name': '0.jpg', 'width': 8, 'height': 6},
                 {'id': 20, 'file_name': '1.jpg', 'width': 5, 'height': 5}],
      'categories': [{'id': 7, 'name': 'zebra'}, {'id': 1, 'name': 'person'},
                     {'id': 3, 'name': 'car'}],
      'annotations': [
          {'id': 1, 'image_id': 10, 'category_id': 7, 'bbox': [1, 2, 3, 4], 'iscrowd': 0},
          {'id': 2, 'image_id': 10, 'category_id': 1, 'bbox': [0, 0, 8, 6], 'iscrowd': 1},
          {'id': 3, 'image_id': 20, 'category_id': 3, 'bbox': [2, 2, 0.5, 3], 'iscrowd': 0},
          {'id': 4, 'image_id': 30, 'category_id': 3, 'bbox': [0.5, 1.5, 2, 2]}]}
  (root / 'instances.json').write_text(json.dumps(coco))
  return root


def test_coco_detection(coco_files):
  coco = data.CocoDetection(coco_files / 'instances.json', coco_files / 'images')
  assert coco.category_ids == [1, 3, 7] and coco.category_names == ['person', 'car', 'zebra']
  assert len(coco) == 3 and coco.num_classes == 3
  first = coco[0]  # sorted by image id: 10
  assert first['image'].shape == (6, 8, 3) and first['image_id'] == 10
  np.testing.assert_array_equal(first['boxes'], [[1, 2, 4, 6], [0, 0, 8, 6]])  # xywh -> xyxy
  np.testing.assert_array_equal(first['labels'], [2, 0])
  np.testing.assert_array_equal(first['crowd'], [False, True])
  assert coco[1]['boxes'].shape == (0, 4)  # the 0.5-pixel-wide box is dropped
  np.testing.assert_array_equal(coco[2]['boxes'], [[0.5, 1.5, 2.5, 3.5]])
  kept = data.CocoDetection(coco_files / 'instances.json', coco_files / 'images', skip_empty=True)
  assert [r['image_id'] for r in kept.records] == [10, 30]


def test_coco_errors(coco_files, tmp_path):
  with pytest.raises(data.DataError, match='does not exist'):
    data.CocoDetection(tmp_path / 'none.json', tmp_path)
  (tmp_path / 'bad.json').write_text('{"images": []}')
  with pytest.raises(data.DataError, match='not COCO detection json'):
    data.CocoDetection(tmp_path / 'bad.json', tmp_path)
  wrong_dir = data.CocoDetection(coco_files / 'instances.json', tmp_path)
  with pytest.raises(data.DataError, match='not a readable image'):
    wrong_dir[0]
