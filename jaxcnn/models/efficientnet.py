"""EfficientNet-B0 and its compound-scaled family B1..B7.

B0 is the searched baseline (Tan & Le 2019, Table 1): a 3x3/2 stem, seven stages of MBConv blocks
(:class:`jaxcnn.nn.layers.InvertedResidual` with squeeze-excite of ratio 0.25 of the block input
channels), a 1x1 head convolution, global pooling, dropout and a classifier; swish (SiLU)
activations; stochastic depth whose drop rate grows linearly from 0 to ``drop_path_rate`` (0.2)
over the blocks.

Compound scaling (section 3.3): depth ``d = alpha**phi``, width ``w = beta**phi``, resolution
``r = gamma**phi`` with ``alpha * beta**2 * gamma**2 ~ 2``, so FLOPs grow by about ``2**phi``
(:func:`compound_scale`). The published B1..B7 use hand-rounded coefficients close to that rule
(:data:`VARIANTS`), which are the ones registered. Widths are rounded to multiples of 8
(:func:`round_filters`), depths up (:func:`round_repeats`), as in the reference implementation.

References: Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks".
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax

from jaxcnn.models._common import Published, check_nhwc, pooled_head, register_model
from jaxcnn.nn.layers import ConvBNAct, InvertedResidual, OpsModule, choice, make_divisible

# Tan & Le 2019, Table 1: (expansion, kernel, stride, output channels, repeats) per stage.
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))

# Published figures: the "params" collection (weights, biases, norm scales and offsets; no running
# statistics) for 1000 classes, from torchvision (exact; the paper rounds them, "paper_params").
# "macs": multiply-adds per image at the variant's resolution, Tan & Le 2019, Table 2 ("FLOPs").
# (torchvision's GFLOPS agree within 1% for B3..B7 but list 1.09 for B2, which the paper's
# 1.0 and B2's own width/depth/resolution do not support.)
_SOURCE = "torchvision efficientnet_b{} (params); Tan & Le 2019, Table 2 (paper_params, macs)"
_TABLE = {  # variant: (torchvision params, paper params, paper multiply-adds)
    0: (5_288_548, 5.3e6, 0.39e9),
    1: (7_794_184, 7.8e6, 0.70e9),
    2: (9_109_994, 9.2e6, 1.0e9),
    3: (12_233_232, 12e6, 1.8e9),
    4: (19_341_616, 19e6, 4.2e9),
    5: (30_389_784, 30e6, 9.9e9),
    6: (43_040_704, 43e6, 19e9),
    7: (66_347_960, 66e6, 37e9),
}

# The published variants: (width, depth, resolution, dropout) of the reference implementation.
VARIANTS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 300, 0.3),
    4: (1.4, 1.8, 380, 0.4),
    5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5),
    7: (2.0, 3.1, 600, 0.5),
}


def compound_scale(phi: float, alpha: float = 1.2, beta: float = 1.1,
                   gamma: float = 1.15) -> tuple[float, float, float]:
  """The (depth, width, resolution) multipliers ``(alpha**phi, beta**phi, gamma**phi)``.

  The defaults are the grid-searched coefficients of the paper (section 4.2), for which
  ``alpha * beta**2 * gamma**2 ~ 2``: FLOPs grow by about ``2**phi``.
  References: Tan & Le 2019, equation (3).
  """
  if alpha < 1 or beta < 1 or gamma < 1:
    raise ValueError(f"compound_scale needs alpha, beta, gamma >= 1, got {alpha}, {beta}, {gamma}.")
  return alpha**phi, beta**phi, gamma**phi


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """``width * filters`` rounded to the nearest multiple of ``divisor``, at least 90% of it
  (:func:`jaxcnn.nn.layers.make_divisible`)."""
  return make_divisible(filters * width, divisor)


def round_repeats(repeats: int, depth: float) -> int:
  """``depth * repeats`` rounded up."""
  return int(math.ceil(depth * repeats))


class EfficientNet(OpsModule):
  """EfficientNet with width multiplier ``width`` and depth multiplier ``depth`` over B0.

  Attributes:
    width, depth: multipliers of B0's channels and per-stage repeats.
    default_resolution: the input size the variant was designed for (any size works: the
      network pools globally).
    dropout_rate: dropout before the classifier (needs the ``"dropout"`` rng when training).
    drop_path_rate: stochastic depth rate of the last block; block ``i`` of ``n`` uses
      ``drop_path_rate * i / n`` (needs the ``"dropout"`` rng when training).
    se_ratio: squeeze-excite bottleneck as a fraction of each block's input channels.
  """

  width: float = 1.0
  depth: float = 1.0
  default_resolution: int = 224
  dropout_rate: float = 0.2
  drop_path_rate: float = 0.2
  se_ratio: float = 0.25
  stages: Sequence[tuple[int, int, int, int, int]] = B0_STAGES
  num_classes: int = 1000
  act: Any = choice("swish")

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "EfficientNet")
    ops = self.get_ops()
    x = ConvBNAct(round_filters(32, self.width), (3, 3), (2, 2), name="stem",
                  ops=ops)(x, train=train)
    repeats = [round_repeats(stage[4], self.depth) for stage in self.stages]
    total, block = sum(repeats), 0
    for (expand, kernel, stride, features, _), n in zip(self.stages, repeats):
      for i in range(n):
        x = InvertedResidual(
            round_filters(features, self.width), stride if i == 0 else 1, expand, kernel,
            se_ratio=self.se_ratio, drop_path_rate=self.drop_path_rate * block / total,
            name=f"block{block + 1}", ops=ops)(x, train=train)
        block += 1
    x = ConvBNAct(round_filters(1280, self.width), (1, 1), name="head_conv",
                  ops=ops)(x, train=train)
    return pooled_head(x, ops, self.num_classes, dropout_rate=self.dropout_rate, train=train)


for _phi, (_width, _depth, _resolution, _dropout) in VARIANTS.items():
  _params, _paper, _macs = _TABLE[_phi]
  register_model(
      functools.partial(EfficientNet, width=_width, depth=_depth,
                        default_resolution=_resolution, dropout_rate=_dropout),
      name=f"efficientnet_b{_phi}", input_size=(_resolution, _resolution, 3),
      published=Published(params=_params, paper_params=_paper, macs=_macs,
                          source=_SOURCE.format(_phi)))
