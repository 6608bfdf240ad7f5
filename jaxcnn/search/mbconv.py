"""The MBConv macro space: MnasNet's factorized hierarchical space over a base stage table.

MnasNet (Tan et al. 2019, section 4, Figure 4) splits the network into blocks (here: stages) of
identical layers and searches each stage's layer on its own: the convolution (MBConv with
expansion 3 or 6, or the depthwise separable convolution, which is MBConv with expansion 1), the
kernel size (3x3 or 5x5), squeeze-excite (ratio 0 or 0.25) and the number of layers (the base's
-1, 0 or +1). Channels and strides follow the base; the paper's filter-size, skip and
regular-convolution choices are left out. Per stage ``i`` (from 1) the choices are
``stage{i}/kernel``, ``stage{i}/expansion``, ``stage{i}/se_ratio`` and ``stage{i}/repeats`` (its
options: the base's repeats -1, 0, +1 that are >= 1).

An architecture decodes to :class:`~jaxcnn.models.mbconv.Stage` specs, the ``stages`` field of
the zoo's EfficientNet (or MobileNetV2). Over EfficientNet-B0's seven stages (:data:`SPACE`),
B0 itself is one architecture, :data:`B0_ARCH`::

  stages = decode(B0_ARCH)                     # == efficientnet.B0_STAGES
  model = build(B0_ARCH, num_classes=10)       # create_model("efficientnet_b0", stages=stages)
  costs = Costs(build, (224, 224, 3))          # jaxcnn.search.costs: params and MACs

References:
  Tan et al. 2019, "MnasNet: Platform-Aware Neural Architecture Search for Mobile" (CVPR),
  section 4 and Figure 4; Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
  Convolutional Neural Networks", Table 1 (B0, found in this space).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import numpy as np

from jaxcnn.models import create_model
from jaxcnn.models.efficientnet import B0_STAGES, table1_stage
from jaxcnn.models.mbconv import Stage, as_stages, check_stage
from jaxcnn.search.space import Space

SEARCHED = ("kernel", "expansion", "se_ratio", "repeats")  # the Stage fields of each stage's choice


class MBConvSpace:
  """Per-stage kernel, expansion, squeeze-excite and repeats over the stages of ``base``.

  Args:
    base: the base stage table (its channels and strides are kept; plain 5-tuples are rows of
      EfficientNet's Table 1).
    kernels, expansions, se_ratios: the options of every stage (valid :class:`Stage` values).
    repeat_deltas: the offsets of the base's repeats; offsets giving fewer than 1 layer are
      dropped.
    model: the registered model :meth:`build` creates, with ``stages=`` the decoded stages.

  Attributes:
    space: the :class:`~jaxcnn.search.space.Space`, four choices per stage.
  """

  def __init__(self, base: Sequence[Any] = B0_STAGES, *, kernels: Sequence[int] = (3, 5),
               expansions: Sequence[float] = (1, 3, 6),
               se_ratios: Sequence[float] = (0.0, 0.25),
               repeat_deltas: Sequence[int] = (-1, 0, 1), model: str = "efficientnet_b0"):
    self.base = as_stages(base, table1_stage)
    for field, options in (("kernel", kernels), ("expansion", expansions),
                           ("se_ratio", se_ratios)):
      for option in options:
        check_stage(self.base[0]._replace(**{field: option}))
    choices = {}
    for i, stage in enumerate(self.base, start=1):
      repeats = tuple(stage.repeats + d for d in repeat_deltas if stage.repeats + d >= 1)
      options = dict(kernel=kernels, expansion=expansions, se_ratio=se_ratios, repeats=repeats)
      choices.update({f"stage{i}/{field}": tuple(options[field]) for field in SEARCHED})
    self.space = Space(choices)
    self.model = model

  def decode(self, arch: Any) -> tuple[Stage, ...]:
    """int [len(space)] option indices -> the stages, one :class:`Stage` per base stage."""
    values = self.space.decode(arch)
    return tuple(stage._replace(**{field: values[f"stage{i}/{field}"] for field in SEARCHED})
                 for i, stage in enumerate(self.base, start=1))

  def encode(self, stages: Sequence[Any]) -> np.ndarray:
    """Stages (:class:`Stage` s or their 6 fields) -> int32 [len(space)] option indices.

    Raises:
      ValueError if the number of stages, a channel count or stride differs from the base's, or
      a searched field is not one of its options.
    """
    stages = as_stages(stages, table1_stage)
    if len(stages) != len(self.base):
      raise ValueError(f"The space has {len(self.base)} stages, got {len(stages)}.")
    values = {}
    for i, (stage, base) in enumerate(zip(stages, self.base), start=1):
      for field in ("stride", "channels"):
        if getattr(stage, field) != getattr(base, field):
          raise ValueError(f"Stage {i} has {field} {getattr(stage, field)}, the base's is "
                           f"{getattr(base, field)} (only {', '.join(SEARCHED)} are searched).")
      values.update({f"stage{i}/{field}": getattr(stage, field) for field in SEARCHED})
    return np.asarray(self.space.encode(values), np.int32)

  def build(self, arch: Any, **overrides: Any) -> nn.Module:
    """The model of one architecture: ``create_model(model, stages=decode(arch), **overrides)``."""
    return create_model(self.model, stages=self.decode(arch), **overrides)


DEFAULT = MBConvSpace()  # over EfficientNet-B0's seven stages
SPACE = DEFAULT.space
B0_ARCH = DEFAULT.encode(B0_STAGES)  # EfficientNet-B0 (Tan & Le 2019, Table 1)


def decode(arch: Any) -> tuple[Stage, ...]:
  """:meth:`MBConvSpace.decode` of the space over B0's stages."""
  return DEFAULT.decode(arch)


def encode(stages: Sequence[Any]) -> np.ndarray:
  """:meth:`MBConvSpace.encode` of the space over B0's stages."""
  return DEFAULT.encode(stages)


def build(arch: Any, **overrides: Any) -> nn.Module:
  """:meth:`MBConvSpace.build` of the space over B0's stages (EfficientNet-B0's skeleton)."""
  return DEFAULT.build(arch, **overrides)
