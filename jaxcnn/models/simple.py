"""A small CNN for small images (digits 8x8, MNIST 28x28): the engine's default model.

Each stage is ``ConvBNAct`` repeated ``convs_per_stage`` times followed by 2x2 max pooling (skipped
once the feature map is 1 pixel wide); then global average pooling and a linear classifier.
``simple_cnn`` is two stages of 32 and 64 channels (about 66k parameters with 10 classes); ``simple_cnn_small``
is one stage of 16 channels. References: LeCun et al. 1998, "Gradient-Based Learning Applied to
Document Recognition" (conv + pooling stages, then a classifier).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax

from jaxcnn.models._common import register_model
from jaxcnn.nn import initializers
from jaxcnn.nn.layers import ConvBNAct, ModuleDef


class SimpleCNN(nn.Module):
  """Stages of conv-norm-act blocks with max pooling, global average pooling, linear head."""

  num_classes: int = 10
  stage_features: Sequence[int] = (32, 64)
  convs_per_stage: int = 2
  act: Any = "relu"
  norm: Any = "batch"
  conv: ModuleDef = nn.Conv
  kernel_init: Any = "kaiming_normal"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f"SimpleCNN expects NHWC images, got shape {x.shape}.")
    for features in self.stage_features:
      for _ in range(self.convs_per_stage):
        x = ConvBNAct(features, act=self.act, norm=self.norm, conv=self.conv,
                      kernel_init=self.kernel_init)(x, train=train)
      if min(x.shape[1:3]) >= 2:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.mean(axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=initializers.get("lecun_normal"),
                    name="head")(x)


simple_cnn = register_model(functools.partial(SimpleCNN, stage_features=(32, 64)),
                            name="simple_cnn")
simple_cnn_small = register_model(
    functools.partial(SimpleCNN, stage_features=(16,), convs_per_stage=1), name="simple_cnn_small")
