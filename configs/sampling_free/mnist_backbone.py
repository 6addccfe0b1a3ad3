"""The Sampling-Free detector's backbone pretrained as a digit classifier (the ImageNet-init
analogue).

    python -m common.main --config=configs/sampling_free/mnist_backbone.py --workdir=/tmp/bb
    python -m common.main --config=configs/sampling_free/mnist_backbone.py:smoke --workdir=/tmp/b

`common.detection.pretrain`: `configs/sampling_free/mnist_canvas.py`'s backbone + a linear
layer, trained on the 5000 digits of the training canvases (validation accuracy on the 5000
digits of the validation canvases). A detector run loads it with
`--config.detector.backbone_init=<workdir>`.
"""

import ml_collections

from common.config import config_args
from common.detection import pretrain
from configs.sampling_free import mnist_canvas


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  smoke = 'smoke' in config_args(arg, ('smoke',))
  return pretrain.get_config(mnist_canvas.get_config().detector.backbone_features, smoke)
