"""MobileNet v1 (depthwise separable convolutions) and v2 (inverted residuals), width multipliers.

``mobilenet_v1`` with width multiplier alpha in ``mobilenet_v1_075/_050/_025``: every layer has
``int(alpha * C)`` channels (Howard et al. 2017, Table 1 and section 4.2). ``mobilenet_v2``
(and ``mobilenet_v2_140``, width 1.4): channels rounded to multiples of 8, the last 1x1 layer
has ``1280 * max(1, alpha)`` channels (Sandler et al. 2018, Table 2); its stages are
:class:`jaxcnn.models.mbconv.Stage` specs (3x3 kernels, no squeeze-excite), the spec EfficientNet
uses. Both default to the papers' activations: ReLU (v1) and ReLU6 (v2; the projection stays
linear).

References: Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications"; Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks".
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax

from jaxcnn.models._common import Published, check_nhwc, pooled_head, register_model
from jaxcnn.models.mbconv import Stage, as_stages, mbconv_stages
from jaxcnn.nn.layers import ConvBNAct, DepthwiseSeparable, OpsModule, choice, make_divisible

# Howard et al. 2017, Table 1: (output channels, stride) of the 13 depthwise separable layers.
V1_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def table2_stage(t: float, c: int, n: int, s: int) -> Stage:
  """A row ``(expansion t, output channels c, repeats n, first stride s)`` of Sandler et al.
  2018, Table 2, as a :class:`~jaxcnn.models.mbconv.Stage` (3x3 kernel, no squeeze-excite)."""
  return Stage(expansion=t, kernel=3, stride=s, channels=c, repeats=n)


# Sandler et al. 2018, Table 2 (rows t, c, n, s).
V2_STAGES = tuple(table2_stage(*row) for row in (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1)))


class MobileNetV1(OpsModule):
  """3x3/2 convolution, 13 depthwise separable layers, global average pool, classifier.

  Attributes:
    width: the width multiplier alpha; every layer has ``int(alpha * C)`` channels.
    dropout_rate: dropout before the classifier (needs the ``"dropout"`` rng when training).
  """

  width: float = 1.0
  dropout_rate: float = 0.001
  layers: Sequence[tuple[int, int]] = V1_LAYERS
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "MobileNetV1")
    ops = self.get_ops()
    x = ConvBNAct(int(32 * self.width), (3, 3), (2, 2), name="stem", ops=ops)(x, train=train)
    for i, (features, stride) in enumerate(self.layers):
      x = DepthwiseSeparable(int(features * self.width), stride, name=f"block{i + 1}",
                             ops=ops)(x, train=train)
    return pooled_head(x, ops, self.num_classes, dropout_rate=self.dropout_rate, train=train)


class MobileNetV2(OpsModule):
  """3x3/2 convolution, 17 inverted residual blocks, 1x1 convolution, pool, classifier.

  Attributes:
    width: the width multiplier alpha; channels are ``make_divisible(alpha * C)``.
    dropout_rate: dropout before the classifier (needs the ``"dropout"`` rng when training).
    stages: :class:`~jaxcnn.models.mbconv.Stage` specs; a plain 4-tuple is a row ``(t, c, n, s)``
      of Table 2 (:func:`table2_stage`), a 6-tuple the fields of a Stage.
  """

  width: float = 1.0
  dropout_rate: float = 0.2
  stages: Sequence[Stage] = V2_STAGES
  num_classes: int = 1000
  act: Any = choice("relu6")

  def __post_init__(self):
    object.__setattr__(self, "stages", as_stages(self.stages, table2_stage))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "MobileNetV2")
    ops = self.get_ops()
    x = ConvBNAct(make_divisible(32 * self.width), (3, 3), (2, 2), name="stem",
                  ops=ops)(x, train=train)
    x = mbconv_stages(x, self.stages, ops, train=train, width=self.width)
    last = make_divisible(1280 * max(1.0, self.width))
    x = ConvBNAct(last, (1, 1), name="head_conv", ops=ops)(x, train=train)
    return pooled_head(x, ops, self.num_classes, dropout_rate=self.dropout_rate, train=train)


# Published "params": the "params" collection (weights, biases, norm scales and offsets; no
# running statistics) for 1000 classes; "macs": multiply-adds per 224x224 image.
def _v1(width: float, name: str, params: float, macs: float, source: str):
  return register_model(
      functools.partial(MobileNetV1, width=width) if width != 1.0 else MobileNetV1, name=name,
      published=Published(params=params, params_tol=0.05e6, macs=macs,
                          source=f"Howard et al. 2017, {source}"))


mobilenet_v1 = _v1(1.0, "mobilenet_v1", 4.2e6, 569e6, "Table 8 (1.0 MobileNet-224)")
mobilenet_v1_075 = _v1(0.75, "mobilenet_v1_075", 2.6e6, 325e6, "Table 6 (0.75 MobileNet-224)")
mobilenet_v1_050 = _v1(0.5, "mobilenet_v1_050", 1.3e6, 149e6, "Table 6 (0.50 MobileNet-224)")
mobilenet_v1_025 = _v1(0.25, "mobilenet_v1_025", 0.5e6, 41e6, "Table 6 (0.25 MobileNet-224)")
mobilenet_v2 = register_model(
    MobileNetV2, name="mobilenet_v2",
    published=Published(params=3_504_872, macs=300e6,
                        source="torchvision mobilenet_v2 (params); Sandler et al. 2018, Table 4 "
                               "(300M multiply-adds; the paper rounds the params to 3.4M)"))
# Table 4 also lists 6.9M parameters for width 1.4, but Table 2 at width 1.4 (as built here and by
# the reference code) has 6.1M while matching the 585M multiply-adds; the 6.9M is left out as
# unreliable.
mobilenet_v2_140 = register_model(
    functools.partial(MobileNetV2, width=1.4), name="mobilenet_v2_140",
    published=Published(macs=585e6, source="Sandler et al. 2018, Table 4 (MobileNetV2 (1.4))"))
