"""EfficientNet-B0 and its compound-scaled family B1..B7.

B0 is the searched baseline (Tan & Le 2019, Table 1): a 3x3/2 stem, seven stages of MBConv blocks
(:class:`jaxcnn.models.mbconv.Stage` specs run by :func:`jaxcnn.models.mbconv.mbconv_stages`,
with squeeze-excite of ratio 0.25 of the block input channels), a 1x1 head convolution, global
pooling, dropout and a classifier; swish (SiLU) activations; stochastic depth whose drop rate
grows linearly from 0 to ``drop_path_rate`` (0.2) over the blocks.

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
from typing import Any, Sequence

import flax.linen as nn
import jax

from jaxcnn.models._common import Published, check_nhwc, pooled_head, register_model
from jaxcnn.models.mbconv import (Stage, as_stages, mbconv_stages, round_filters,
                                  round_repeats)  # noqa: F401 (round_repeats: part of this API)
from jaxcnn.nn.layers import ConvBNAct, OpsModule, choice


def table1_stage(expansion: float, kernel: int, stride: int, channels: int, repeats: int
                 ) -> Stage:
  """A row of Tan & Le 2019, Table 1 as a :class:`~jaxcnn.models.mbconv.Stage`, with B0's
  squeeze-excite ratio 0.25."""
  return Stage(expansion, kernel, stride, channels, repeats, se_ratio=0.25)


# Tan & Le 2019, Table 1: the stages of B0.
B0_STAGES = tuple(table1_stage(*row) for row in (
    (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)))

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


class EfficientNet(OpsModule):
  """EfficientNet with width multiplier ``width`` and depth multiplier ``depth`` over B0.

  Attributes:
    width, depth: multipliers of B0's channels and per-stage repeats.
    default_resolution: the input size the variant was designed for (any size works: the
      network pools globally).
    dropout_rate: dropout before the classifier (needs the ``"dropout"`` rng when training).
    drop_path_rate: stochastic depth rate of the last block; block ``i`` of ``n`` uses
      ``drop_path_rate * i / n`` (needs the ``"dropout"`` rng when training).
    stages: :class:`~jaxcnn.models.mbconv.Stage` specs (each with its own ``se_ratio``); a plain
      5-tuple ``(expansion, kernel, stride, channels, repeats)`` is a row of Table 1
      (:func:`table1_stage`, ``se_ratio`` 0.25), a 6-tuple the fields of a Stage.
  """

  width: float = 1.0
  depth: float = 1.0
  default_resolution: int = 224
  dropout_rate: float = 0.2
  drop_path_rate: float = 0.2
  stages: Sequence[Stage] = B0_STAGES
  num_classes: int = 1000
  act: Any = choice("swish")

  def __post_init__(self):
    object.__setattr__(self, "stages", as_stages(self.stages, table1_stage))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "EfficientNet")
    ops = self.get_ops()
    x = ConvBNAct(round_filters(32, self.width), (3, 3), (2, 2), name="stem",
                  ops=ops)(x, train=train)
    x = mbconv_stages(x, self.stages, ops, train=train, width=self.width, depth=self.depth,
                      drop_path_rate=self.drop_path_rate)
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
