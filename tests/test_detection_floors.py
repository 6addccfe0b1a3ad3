"""COCO AP floors (common.detection.floors) on hand-checkable ground truth."""

import pytest

from common.detection import floors


def _coco(classes_per_image, num_classes):
  images = [{'id': i + 1, 'file_name': f'{i}.png', 'height': 64, 'width': 64}
            for i in range(len(classes_per_image))]
  anns = [{'id': i + 1, 'image_id': i + 1, 'category_id': c, 'bbox': [4.0, 4.0, 20.0, 20.0],
           'area': 400.0, 'iscrowd': 0} for i, c in enumerate(classes_per_image)]
  return {'images': images, 'annotations': anns,
          'categories': [{'id': c + 1, 'name': str(c)} for c in range(num_classes)]}


def test_one_class_floors_are_perfect():
  coco = _coco([1, 1, 1], 1)
  assert floors.random_class_ap(coco)['AP'] == pytest.approx(100.0)
  assert floors.every_class_ap(coco)['AP'] == pytest.approx(100.0)


def test_every_class_at_one_score_by_hand():
  # image 1 holds a class-1 gt, image 2 a class-2 gt; equal scores keep the image order, so
  # class 1 ranks its hit first (AP 100) and class 2 its miss first (precision 1/2: AP 50)
  coco = _coco([1, 2], 2)
  dets = floors.every_class_detections(coco)
  assert [(d['image_id'], d['category_id'], d['score']) for d in dets] == [
      (1, 1, 1.0), (1, 2, 1.0), (2, 1, 1.0), (2, 2, 1.0)]
  assert floors.every_class_ap(coco)['AP'] == pytest.approx(75.0)


def test_random_class_detections_are_seeded_and_cover_every_gt():
  coco = _coco([1, 2, 3, 1, 2], 3)
  a, b = floors.random_class_detections(coco, 0), floors.random_class_detections(coco, 0)
  assert a == b and a != floors.random_class_detections(coco, 1)
  assert [d['bbox'] for d in a] == [g['bbox'] for g in coco['annotations']]
  assert all(d['category_id'] in (1, 2, 3) and 0 <= d['score'] < 1 for d in a)
  ap = floors.random_class_ap(coco, seeds=(0, 1))
  assert 0 <= ap['AP'] < 100
