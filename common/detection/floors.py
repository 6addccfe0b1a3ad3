"""Trivial baselines (floors) of COCO AP: the validation set's own ground-truth boxes, detected
without any knowledge of their class.

- `random_class_ap`: each gt box once, with a class drawn uniformly and a score drawn uniformly
  in [0, 1) (the mean over a few fixed seeds): the AP of chance-level classification;
- `every_class_ap`: each gt box once per class, all at one score: the AP of perfect boxes with
  no class knowledge (COCOeval keeps the 100 first detections of an image).

A detector that does not beat `random_class_ap` has learned nothing measurable by AP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.detection import evaluation


def _objects(coco: dict) -> list[dict]:
  """The gt annotations that count as objects (crowd regions are only ignored by COCOeval)."""
  return [a for a in coco['annotations'] if not a.get('iscrowd', 0)]


def random_class_detections(coco: dict, seed: int) -> list[dict]:
  """Every gt box as one detection with a uniform random class and a uniform random score."""
  rng = np.random.default_rng(seed)
  ids = [c['id'] for c in coco['categories']]
  anns = _objects(coco)
  classes = rng.integers(len(ids), size=len(anns))
  scores = rng.random(len(anns))
  return [{'image_id': a['image_id'], 'category_id': ids[k], 'score': float(s),
           'bbox': list(a['bbox'])} for a, k, s in zip(anns, classes, scores, strict=True)]


def every_class_detections(coco: dict) -> list[dict]:
  """Every gt box as one detection per class, all with score 1."""
  return [{'image_id': a['image_id'], 'category_id': c['id'], 'score': 1.0,
           'bbox': list(a['bbox'])} for a in _objects(coco) for c in coco['categories']]


def random_class_ap(coco: dict, area_ranges: Sequence[float] | None = None,
                    seeds: Sequence[int] = (0, 1, 2)) -> dict[str, float]:
  """COCO metrics of `random_class_detections`, averaged over `seeds`."""
  runs = [evaluation.coco_evaluate(coco, random_class_detections(coco, s), area_ranges)
          for s in seeds]
  return {k: float(np.mean([r[k] for r in runs])) for k in evaluation.METRICS}


def every_class_ap(coco: dict, area_ranges: Sequence[float] | None = None) -> dict[str, float]:
  """COCO metrics of `every_class_detections`."""
  return evaluation.coco_evaluate(coco, every_class_detections(coco), area_ranges)


def ap_floors(config) -> dict[str, dict[str, float]]:
  """Both floors on the validation set of a detection config (5 draws of random classes)."""
  from common.detection import pipeline
  _, _, coco, _ = pipeline.load_data(config)
  area = tuple(config.eval_area_ranges)
  return {'random class': random_class_ap(coco, area, seeds=range(5)),
          'every class': every_class_ap(coco, area)}
