"""The shared dense-detector stack: anchors, box coder, IoU, NMS, losses, FPN + dense head,
the synthetic digits-on-canvas COCO data, and COCO evaluation (pycocotools)."""
