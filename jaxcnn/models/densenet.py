"""DenseNet: every layer of a dense block sees the feature maps of all layers before it.

``densenet121/169/201`` are the ImageNet networks (Huang et al. 2017, Table 1; growth rate 32,
bottleneck width 4k, compression 0.5); ``densenet_bc_100_12`` is the CIFAR DenseNet-BC with
depth 100 and growth rate 12 (three blocks of 16 bottleneck layers, a 3x3 stem of 2k channels).
Layers are pre-activation: norm, activation, convolution.

References: Huang et al. 2017, "Densely Connected Convolutional Networks".
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models._common import (CIFAR_INPUT, Published, check_nhwc, pooled_head,
                                   register_model)
from jaxcnn.nn.layers import OpsModule, choice

class DenseLayer(OpsModule):
  """Norm-act-conv1x1 (``bottleneck_width * growth_rate`` channels), norm-act-conv3x3 (growth).

  Returns only the ``growth_rate`` new channels; the caller concatenates them. Without a
  bottleneck (``bottleneck_width=0``) it is the plain norm-act-conv3x3 layer.
  """

  growth_rate: int
  bottleneck_width: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    conv = functools.partial(ops.conv, use_bias=False)
    if self.bottleneck_width:
      x = ops.activate(ops.normalize(x, train=train))
      x = conv(self.bottleneck_width * self.growth_rate, (1, 1))(x)
    x = ops.activate(ops.normalize(x, train=train))
    return conv(self.growth_rate, (3, 3), padding=ops.pad((3, 3)))(x)


class DenseBlock(OpsModule):
  """``num_layers`` dense layers, each fed the concatenation of the block input and all outputs."""

  num_layers: int
  growth_rate: int
  bottleneck_width: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    for _ in range(self.num_layers):
      new = DenseLayer(self.growth_rate, self.bottleneck_width, ops=ops)(x, train=train)
      x = jnp.concatenate([x, new], axis=-1)
    return x


class Transition(OpsModule):
  """Norm-act-conv1x1 to ``features`` channels, then 2x2 average pooling with stride 2."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if min(x.shape[1:3]) < 2:
      raise ValueError(f"DenseNet transition needs feature maps of at least 2x2, got "
                       f"{x.shape[1:3]}: the input image is too small.")
    ops = self.get_ops()
    x = ops.activate(ops.normalize(x, train=train))
    x = ops.conv(self.features, (1, 1), use_bias=False)(x)
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(OpsModule):
  """DenseNet / DenseNet-BC.

  Attributes:
    block_sizes: dense layers per block, e.g. ``(6, 12, 24, 16)`` for DenseNet-121.
    growth_rate: k, channels each dense layer adds.
    stem_features: channels of the first convolution (``2 * growth_rate`` in the paper).
    bottleneck_width: the 1x1 bottleneck has ``bottleneck_width * k`` channels (0: none).
    compression: transitions keep ``floor(compression * C)`` channels (theta; 1 for no "C").
    imagenet_stem: 7x7/2 convolution + 3x3/2 max pool (ImageNet) instead of one 3x3 (CIFAR).
    padding: ``"torch"`` (default, ``k // 2`` as torchvision) or ``"same"`` (TF SAME).
  """

  block_sizes: Sequence[int] = (6, 12, 24, 16)
  growth_rate: int = 32
  stem_features: int = 64
  bottleneck_width: int = 4
  compression: float = 0.5
  imagenet_stem: bool = True
  num_classes: int = 1000
  padding: Any = choice("torch")

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "DenseNet")
    ops = self.get_ops()
    if self.imagenet_stem:
      x = ops.conv(self.stem_features, (7, 7), strides=(2, 2), padding=ops.pad((7, 7)),
                   use_bias=False, name="stem")(x)
      x = ops.activate(ops.normalize(x, train=train))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=ops.pad((3, 3)))
    else:
      x = ops.conv(self.stem_features, (3, 3), padding=ops.pad((3, 3)), use_bias=False,
                   name="stem")(x)
    for i, num_layers in enumerate(self.block_sizes):
      x = DenseBlock(num_layers, self.growth_rate, self.bottleneck_width, name=f"block{i + 1}",
                     ops=ops)(x, train=train)
      if i < len(self.block_sizes) - 1:
        x = Transition(int(self.compression * x.shape[-1]), name=f"transition{i + 1}",
                       ops=ops)(x, train=train)
    x = ops.activate(ops.normalize(x, train=train))
    return pooled_head(x, ops, self.num_classes)


# Published parameter counts are of the "params" collection (weights, biases, norm scales and
# offsets; not the running statistics) for the default classes (1000, or 10 for CIFAR-10); "macs"
# are multiply-accumulates per 224x224 image; "params_tol" is half a unit of the last published
# digit where the source rounds.
def _imagenet(depth: int, block_sizes: tuple[int, ...], params: int, macs: float):
  return register_model(
      functools.partial(DenseNet, block_sizes=block_sizes), name=f"densenet{depth}",
      published=Published(params=params, macs=macs, source=f"torchvision densenet{depth} "
                          "(params, GFLOPS); Huang et al. 2017"))


densenet121 = _imagenet(121, (6, 12, 24, 16), 7_978_856, 2.83e9)
densenet169 = _imagenet(169, (6, 12, 32, 32), 14_149_480, 3.36e9)
densenet201 = _imagenet(201, (6, 12, 48, 32), 20_013_928, 4.29e9)
densenet_bc_100_12 = register_model(
    functools.partial(DenseNet, block_sizes=(16, 16, 16), growth_rate=12, stem_features=24,
                      imagenet_stem=False, num_classes=10),
    name="densenet_bc_100_12", input_size=CIFAR_INPUT,
    published=Published(params=0.8e6, params_tol=0.05e6,
                        source="Huang et al. 2017, Table 2 (DenseNet-BC, L=100, k=12: 0.8M)"))
