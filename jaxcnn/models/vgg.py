"""VGG-11/13/16/19 (configurations A, B, D, E), with and without batch normalization.

Convolutions are 3x3, stride 1, padding 1, with bias; five 2x2 max-pools halve the map, so inputs
must be at least 32x32. The ``_bn`` variants put a BatchNorm after every convolution (keeping the
bias, as torchvision does). The features are average-pooled to the published 7x7 before the
classifier, so the parameter count is the published one for any input size.

References: Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition"; Ioffe & Szegedy 2015 (batch normalization).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax

from jaxcnn.models._common import Published, check_nhwc, register_model
from jaxcnn.models.alexnet import adaptive_avg_pool, classifier
from jaxcnn.nn.layers import ConvBNAct, OpsModule, choice

# Filters per stage; each stage ends with a 2x2 max-pool (Simonyan & Zisserman 2015, Table 1).
CONFIGS = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}

# torchvision's (params, GMACs) of vgg{depth} and vgg{depth}_bn.
_TORCHVISION = {
    11: ((132_863_336, 7.61e9), (132_868_840, 7.61e9)),
    13: ((133_047_848, 11.31e9), (133_053_736, 11.31e9)),
    16: ((138_357_544, 15.47e9), (138_365_992, 15.47e9)),
    19: ((143_667_240, 19.63e9), (143_678_248, 19.63e9)),
}


class VGG(OpsModule):
  """VGG: stages of 3x3 convolutions and 2x2 max-pools, then a 4096-4096 classifier with dropout.

  ``stages`` lists the filters of each stage; ``hidden_features`` the width of the classifier's
  two hidden layers. Dropout follows each hidden layer (fc-act-dropout, as the original Caffe
  model and torchvision).

  References: Simonyan & Zisserman 2015.
  """

  stages: Sequence[Sequence[int]] = CONFIGS[16]
  num_classes: int = 1000
  dropout_rate: float = 0.5
  hidden_features: int = 4096
  norm: Any = choice("none")
  padding: Any = choice("torch")

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "VGG")
    ops = self.get_ops()
    min_size = 2 ** len(self.stages)
    if min(x.shape[1:3]) < min_size:
      raise ValueError(f"VGG needs images of at least {min_size}x{min_size}, got {x.shape[1:3]}.")
    for s, stage in enumerate(self.stages):
      for i, features in enumerate(stage):
        x = ConvBNAct(features, (3, 3), use_bias=True, ops=ops,
                      name=f"conv{s + 1}_{i + 1}")(x, train=train)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = adaptive_avg_pool(x, (7, 7))
    return classifier(x, ops, hidden=self.hidden_features, num_classes=self.num_classes,
                      dropout_rate=self.dropout_rate, train=train, dropout_after=True)


def _tv(name: str, figures: tuple[int, float]) -> Published:
  return Published(params=figures[0], macs=figures[1],
                   source=f"torchvision {name} (macs: torchvision's GFLOPS column)")


for _depth, _stages in CONFIGS.items():
  _plain, _bn = _TORCHVISION[_depth]
  register_model(functools.partial(VGG, stages=_stages), name=f"vgg{_depth}",
                 published=_tv(f"vgg{_depth}", _plain))
  register_model(functools.partial(VGG, stages=_stages, norm="batch"), name=f"vgg{_depth}_bn",
                 published=_tv(f"vgg{_depth}_bn", _bn))
