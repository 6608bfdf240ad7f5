"""The MBConv stage spec shared by MobileNetV2 and EfficientNet, and the stage loop both run.

A network body is a sequence of :class:`Stage` s, each ``repeats`` inverted residual blocks
(:class:`jaxcnn.nn.layers.InvertedResidual`: expand 1x1, depthwise ``kernel x kernel``, optional
squeeze-excite, linear 1x1 projection); the first block of a stage has its ``stride``. MobileNetV2
is the case ``kernel=3, se_ratio=0`` (Sandler et al. 2018, Table 2); EfficientNet-B0's stages
add 5x5 kernels and squeeze-excite of ratio 0.25 (Tan & Le 2019, Table 1); MnasNet searches over
these fields per stage (Tan et al. 2019, section 4, Figure 4; :mod:`jaxcnn.search.mbconv`).

Example::

  Stage(expansion=6, kernel=5, stride=2, channels=40, repeats=2, se_ratio=0.25)

References: Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks";
Tan et al. 2019, "MnasNet: Platform-Aware Neural Architecture Search for Mobile"; Tan & Le 2019,
"EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks".
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Callable, NamedTuple, Sequence

import jax

from jaxcnn.nn.layers import InvertedResidual, Ops, make_divisible


class Stage(NamedTuple):
  """One stage of MBConv blocks.

  Attributes:
    expansion: the expansion ratio of the blocks' hidden width (1: no expansion layer).
    kernel: the depthwise kernel size (odd).
    stride: the first block's stride (1 or 2); the others have stride 1.
    channels: output channels before the width multiplier.
    repeats: number of blocks before the depth multiplier (>= 1).
    se_ratio: squeeze-excite bottleneck as a fraction of each block's input channels (0: none).
  """

  expansion: float
  kernel: int
  stride: int
  channels: int
  repeats: int
  se_ratio: float = 0.0


def check_stage(stage: Stage) -> Stage:
  """Returns ``stage``; raises a ValueError naming the first field with an invalid value."""
  def bad(field: str, allowed: str) -> ValueError:
    return ValueError(f"Stage {field} must be {allowed}, got {getattr(stage, field)!r} in "
                      f"{stage}.")

  def is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)

  if not isinstance(stage.expansion, numbers.Real) or not stage.expansion >= 1:
    raise bad("expansion", "a number >= 1")
  if not is_int(stage.kernel) or stage.kernel < 1 or stage.kernel % 2 == 0:
    raise bad("kernel", "an odd int >= 1")
  if stage.stride not in (1, 2) or not is_int(stage.stride):
    raise bad("stride", "1 or 2")
  if not is_int(stage.channels) or stage.channels < 1:
    raise bad("channels", "an int >= 1")
  if not is_int(stage.repeats) or stage.repeats < 1:
    raise bad("repeats", "an int >= 1")
  if not isinstance(stage.se_ratio, numbers.Real) or not 0 <= stage.se_ratio < 1:
    raise bad("se_ratio", "in [0, 1)")
  return stage


def as_stages(stages: Sequence[Any], row: Callable[..., Stage]) -> tuple[Stage, ...]:
  """Stage specs from :class:`Stage` s or plain sequences (e.g. a config's tuples or JSON lists).

  A plain sequence of six numbers is read as the fields of :class:`Stage`, one of another length
  as a row of the model's table, ``row(*spec)`` (e.g. EfficientNet's 5-tuples
  ``(expansion, kernel, stride, channels, repeats)``).
  """
  if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or not stages:
    raise ValueError(f"stages must be a non-empty sequence of Stage specs, got {stages!r}.")
  row_fields = tuple(inspect.signature(row).parameters)
  out = []
  for spec in stages:
    if not isinstance(spec, Stage):
      plain = isinstance(spec, Sequence) and not isinstance(spec, (str, bytes))
      if not plain or len(spec) not in (len(row_fields), len(Stage._fields)):
        raise ValueError(f"A stage is a Stage, its 6 fields ({', '.join(Stage._fields)}) or a "
                         f"table row ({', '.join(row_fields)}); got {spec!r}.")
      spec = Stage(*spec) if len(spec) == len(Stage._fields) else row(*spec)
    out.append(check_stage(spec))
  return tuple(out)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """``width * filters`` rounded to the nearest multiple of ``divisor``, at least 90% of it
  (:func:`jaxcnn.nn.layers.make_divisible`)."""
  return make_divisible(filters * width, divisor)


def round_repeats(repeats: int, depth: float) -> int:
  """``depth * repeats`` rounded up."""
  return int(math.ceil(depth * repeats))


def mbconv_stages(x: jax.Array, stages: Sequence[Stage], ops: Ops, *, train: bool,
                  width: float = 1.0, depth: float = 1.0, drop_path_rate: float = 0.0
                  ) -> jax.Array:
  """Runs ``stages`` as blocks ``block1, block2, ...`` of the calling (compact) module.

  Channels are :func:`round_filters` of ``width``, repeats :func:`round_repeats` of ``depth``;
  block ``i`` (from 0) of ``n`` drops its residual branch at ``drop_path_rate * i / n``.
  """
  repeats = [round_repeats(s.repeats, depth) for s in stages]
  total, block = sum(repeats), 0
  for stage, n in zip(stages, repeats):
    for i in range(n):
      x = InvertedResidual(
          round_filters(stage.channels, width), stage.stride if i == 0 else 1, stage.expansion,
          stage.kernel, se_ratio=stage.se_ratio, drop_path_rate=drop_path_rate * block / total,
          name=f"block{block + 1}", ops=ops)(x, train=train)
      block += 1
  return x
