"""A small CNN for small images (digits 8x8, MNIST 28x28): the engine's default model.

Each stage is ``ConvBNAct`` repeated ``convs_per_stage`` times followed by 2x2 max pooling (skipped
once the feature map is 1 pixel wide); then global average pooling and a linear classifier.
``simple_cnn`` is two stages of 32 and 64 channels (about 66k parameters with 10 classes); ``simple_cnn_small``
is one stage of 16 channels. Both default to the offline digits (8x8x1). References: LeCun et al.
1998, "Gradient-Based Learning Applied to Document Recognition" (conv + pooling stages, then a
classifier).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax

from jaxcnn.models._common import DIGITS_INPUT, check_nhwc, pooled_head, register_model
from jaxcnn.nn import initializers
from jaxcnn.nn.layers import ConvBNAct, OpsModule


class SimpleCNN(OpsModule):
  """Stages of conv-norm-act blocks with max pooling, global average pooling, linear head."""

  num_classes: int = 10
  stage_features: Sequence[int] = (32, 64)
  convs_per_stage: int = 2

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "SimpleCNN")
    ops = self.get_ops()
    for features in self.stage_features:
      for _ in range(self.convs_per_stage):
        x = ConvBNAct(features, ops=ops)(x, train=train)
      if min(x.shape[1:3]) >= 2:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return pooled_head(x, ops, self.num_classes, kernel_init=initializers.get("lecun_normal"))


simple_cnn = register_model(functools.partial(SimpleCNN, stage_features=(32, 64)),
                            name="simple_cnn", input_size=DIGITS_INPUT)
simple_cnn_small = register_model(
    functools.partial(SimpleCNN, stage_features=(16,), convs_per_stage=1), name="simple_cnn_small",
    input_size=DIGITS_INPUT)
