"""Residual networks: ResNet v1 (ImageNet and CIFAR), pre-activation ResNet v2, Wide ResNet,
ResNeXt, SE-ResNet/SE-ResNeXt, and Fixup initialization of the v1 networks.

One :class:`ResNet` module builds them all from four blocks (:class:`BasicBlock`,
:class:`Bottleneck`, :class:`PreActBasicBlock`, :class:`PreActBottleneck`) and their Fixup versions, all built by three
mechanisms (post-activation, pre-activation, Fixup) over two branch shapes.
Stage ``i`` has ``num_filters * 2**i`` filters (times 4 at the output of a bottleneck); the first
stage keeps the resolution, each later one halves it in its first block. The bottleneck's inner
width is ``filters * width_per_group / 64 * groups`` (torchvision's rule), which covers ResNet
(``groups=1, width_per_group=64``), Wide ResNet-50-2 (``width_per_group=128``) and ResNeXt
(``groups=32, width_per_group=4``). Bottlenecks stride in the 3x3 convolution ("ResNet v1.5", as in
torchvision and the Flax ImageNet example), which is why ResNet-50 costs 4.1 GMACs, not 3.8.

References: He et al. 2015, "Deep Residual Learning for Image Recognition"; He et al. 2016,
"Identity Mappings in Deep Residual Networks"; Zagoruyko & Komodakis 2016, "Wide Residual
Networks"; Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural Networks"; Hu et
al. 2017, "Squeeze-and-Excitation Networks"; Zhang, Dauphin & Ma 2019, "Fixup Initialization:
Residual Learning Without Normalization".
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models._common import (CIFAR_INPUT, IMAGENET_INPUT, Published, check_nhwc, pooled_head,
                                   register_model)
from jaxcnn.nn.layers import ConvBNAct, Identity, ModuleDef, OpsModule, SqueezeExcite, choice

def fixup_scale(num_branches: int, branch_depth: int) -> float:
  """Fixup's factor ``L ** (-1 / (2m - 2))`` for the inner layers of each residual branch.

  ``num_branches`` is L, the number of residual branches; ``branch_depth`` is m, the number of
  weight layers in a branch (2 for basic blocks, 3 for bottlenecks). References: Zhang et al.
  2019, Section 3 ("Rescale").
  """
  if num_branches < 1 or branch_depth < 2:
    raise ValueError(f"fixup_scale needs num_branches >= 1 and branch_depth >= 2, got "
                     f"{num_branches} and {branch_depth}.")
  return float(num_branches) ** (-1.0 / (2 * branch_depth - 2))


def _scaled(init: Callable[..., jax.Array], factor: float) -> Callable[..., jax.Array]:
  def scaled_init(key, shape, dtype=jnp.float32):
    return factor * init(key, shape, dtype)

  return scaled_init


class _Block(OpsModule):
  """Fields and code shared by the residual blocks.

  ``features`` is the block's output width, ``width`` the inner width of a bottleneck (basic
  blocks use ``features``). ``shortcut`` is ``"projection"`` (1x1 convolution where the shape
  changes; He et al. 2015 option B) or ``"zero_pad"`` (subsample and pad channels with zeros;
  option A, parameter-free, used by the CIFAR ResNets). ``se_reduction > 0`` adds a
  squeeze-and-excitation gate on the branch; ``dropout_rate`` drops units before the branch's
  last convolution (Wide ResNet). Subclasses set ``expansion`` (1: two 3x3 convolutions; 4: the
  1x1-3x3-1x1 bottleneck, see :meth:`_branch`) and ``preact``.
  """

  features: int
  width: int = 0
  strides: int = 1
  groups: int = 1
  shortcut: str = "projection"
  se_reduction: int = 0
  dropout_rate: float = 0.0

  expansion = 1
  preact = False

  def _branch(self) -> tuple[tuple[int, int, int, int], ...]:
    """(features, kernel, strides, groups) of the branch's convolutions."""
    if self.expansion == 1:
      return ((self.features, 3, self.strides, 1), (self.features, 3, 1, 1))
    return ((self.width, 1, 1, 1), (self.width, 3, self.strides, self.groups),
            (self.features, 1, 1, 1))

  def _conv(self, ops, features, k, strides=1, groups=1, name=None, **kwargs):
    return ops.conv(features, (k, k), strides=(strides, strides), padding=ops.pad((k, k)),
                    feature_group_count=groups, use_bias=False, name=name, **kwargs)

  def _layer(self, ops, features, k, strides=1, groups=1, act=True, name=None):
    return ConvBNAct(features, (k, k), (strides, strides), groups=groups, activation=act,
                     ops=ops, name=name)

  def _needs_projection(self, x):
    return x.shape[-1] != self.features or self.strides != 1

  def _shortcut(self, ops, x, *, train, norm=True, **conv_kwargs):
    """The identity, or option A/B when the shape changes. Call inside a compact method."""
    if not self._needs_projection(x):
      return x
    if self.shortcut == "zero_pad":
      x = x[:, ::self.strides, ::self.strides]
      extra = self.features - x.shape[-1]
      if extra < 0:
        raise ValueError(f"zero_pad shortcut cannot reduce channels {x.shape[-1]} -> "
                         f"{self.features}; use shortcut='projection'.")
      return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra)))
    if self.shortcut != "projection":
      raise ValueError(f"Unknown shortcut {self.shortcut!r}; use 'projection' or 'zero_pad'.")
    if not norm:
      return self._conv(ops, self.features, 1, self.strides, name="shortcut", **conv_kwargs)(x)
    return self._layer(ops, self.features, 1, self.strides, act=False, name="shortcut")(
        x, train=train)

  def _se(self, ops, y):
    if self.se_reduction:
      y = SqueezeExcite(reduction=self.se_reduction, ops=ops, name="se")(y)
    return y

  def _dropout(self, y, train):
    return nn.Dropout(self.dropout_rate, deterministic=not train)(y) if self.dropout_rate else y


class _PostActBlock(_Block):
  """The v1 block: conv-norm-act for each branch layer (the last without act), the
  squeeze-excite gate if any, added to the shortcut, then act."""

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    branch = self._branch()
    y = x
    for i, (features, k, s, g) in enumerate(branch, 1):
      if i == len(branch):
        y = self._dropout(y, train)
      y = self._layer(ops, features, k, s, g, act=i < len(branch), name=f"conv{i}")(
          y, train=train)
    y = self._se(ops, y)
    return ops.activate(y + self._shortcut(ops, x, train=train))


class BasicBlock(_PostActBlock):
  """Two 3x3 convolutions (conv-norm-act, conv-norm), added to the shortcut, then act.

  References: He et al. 2015, Fig. 5 left.
  """

  expansion = 1


class Bottleneck(_PostActBlock):
  """1x1 reduce, 3x3 (strided, grouped for ResNeXt), 1x1 expand, added to the shortcut, then act.

  References: He et al. 2015, Fig. 5 right; Xie et al. 2017, Fig. 3(c) (grouped 3x3).
  """

  expansion = 4


class _PreActBlock(_Block):
  """The v2 block: (norm-act-conv) for each branch layer; the sum is left linear. A projection
  shortcut sees the pre-activated input and has no normalization."""

  preact = True

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    pre = ops.activate(ops.normalize(x, train=train, name="norm1"))
    shortcut = (self._shortcut(ops, pre, train=train, norm=False)
                if self._needs_projection(x) else x)
    branch = self._branch()
    y = pre
    for i, (features, k, s, g) in enumerate(branch, 1):
      if i > 1:
        y = ops.activate(ops.normalize(y, train=train, name=f"norm{i}"))
      if i == len(branch):
        y = self._dropout(y, train)
      y = self._conv(ops, features, k, s, g, name=f"conv{i}")(y)
    return self._se(ops, y) + shortcut


class PreActBasicBlock(_PreActBlock):
  """Norm-act-conv twice (3x3); the sum is left linear.

  References: He et al. 2016, Fig. 1(b); Zagoruyko & Komodakis 2016 (dropout between convs).
  """

  expansion = 1


class PreActBottleneck(_PreActBlock):
  """Pre-activation bottleneck: (norm-act-conv) with 1x1, 3x3, 1x1 kernels.

  References: He et al. 2016.
  """

  expansion = 4


class _FixupBlock(_Block):
  """A v1 block without normalization, initialized by Fixup.

  For branch layers ``1..m``: ``+ b_ia``, conv ``i``, then ``+ b_ib`` and act, except the last
  layer, whose kernel starts at zero and which is followed by ``* multiplier + b_mb``; the other
  kernels are the ``kernel_init`` ones times ``scale``. The sum with the shortcut (of
  ``x + b_1a``) is followed by act. The ``b`` are scalar biases (init 0), the multiplier a scalar
  (init 1), so at initialization the block is its shortcut followed by act.
  References: Zhang et al. 2019, Section 3 and Fig. 1.
  """

  scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    bias = lambda name: self.param(name, nn.initializers.zeros, ())  # noqa: E731
    init = _scaled(ops.kernel_init, self.scale)
    branch = self._branch()
    x = x + bias("bias1a")
    y = x
    for i, (features, k, s, g) in enumerate(branch, 1):
      last = i == len(branch)
      if last:
        y = self._dropout(y, train)
      if i > 1:
        y = y + bias(f"bias{i}a")
      y = self._conv(ops, features, k, s, g, name=f"conv{i}",
                     kernel_init=nn.initializers.zeros if last else init)(y)
      if last:
        y = y * self.param("multiplier", nn.initializers.ones, ()) + bias(f"bias{i}b")
      else:
        y = ops.activate(y + bias(f"bias{i}b"))
    return ops.activate(y + self._shortcut(ops, x, train=train, norm=False))


class FixupBasicBlock(_FixupBlock):
  """A basic block without normalization, initialized by Fixup (see :class:`_FixupBlock`)."""

  expansion = 1
  branch_depth = 2


class FixupBottleneck(_FixupBlock):
  """A bottleneck without normalization, initialized by Fixup (see :class:`_FixupBlock`)."""

  expansion = 4
  branch_depth = 3


_FIXUP = {BasicBlock: FixupBasicBlock, Bottleneck: FixupBottleneck}


class ResNet(OpsModule):
  """A residual network; every variant of the zoo is a registered partial of it.

  Attributes:
    stage_sizes: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
    block_cls: BasicBlock, Bottleneck, PreActBasicBlock or PreActBottleneck.
    num_filters: filters of the first stage (doubled per stage; x4 at a bottleneck's output).
    stem: ``"imagenet"`` (7x7/2 conv, norm, act, 3x3/2 max-pool) or ``"cifar"`` (3x3 conv; norm
      and act follow unless the blocks are pre-activation).
    stem_features: filters of the stem convolution.
    groups, width_per_group: bottleneck inner width ``filters * width_per_group / 64 * groups``.
    shortcut: ``"projection"`` (option B) or ``"zero_pad"`` (option A, parameter-free).
    se_reduction: > 0 adds a squeeze-and-excitation gate to every block (Hu et al. 2017: 16).
    dropout_rate: dropout between a block's convolutions (Wide ResNet: 0.3).
    fixup: build the v1 network without normalization and initialize it by Fixup (Zhang et al.
      2019): scalar biases and multipliers, the last layer of each branch and the classifier at
      zero, the other branch layers scaled by :func:`fixup_scale`; ``norm`` is ignored. The
      stem and the classifier get scalar biases.
    act, kernel_init, norm, conv, dtype, padding: the :class:`~jaxcnn.nn.layers.OpsModule`
      choices, used by every layer; ``padding`` defaults to ``"torch"`` (``k // 2``, as
      torchvision), ``"same"`` pads the stride-2 convolutions and the stem pool TF-style.
  """

  stage_sizes: Sequence[int]
  block_cls: ModuleDef = BasicBlock
  num_classes: int = 1000
  num_filters: int = 64
  stem: str = "imagenet"
  stem_features: int = 64
  groups: int = 1
  width_per_group: int = 64
  shortcut: str = "projection"
  se_reduction: int = 0
  dropout_rate: float = 0.0
  fixup: bool = False
  padding: Any = choice("torch")

  def _block_cls(self) -> ModuleDef:
    if not self.fixup:
      return self.block_cls
    if self.block_cls not in _FIXUP:
      raise ValueError(f"fixup=True needs BasicBlock or Bottleneck blocks, got "
                       f"{getattr(self.block_cls, '__name__', self.block_cls)}.")
    if self.se_reduction:
      raise ValueError("fixup=True does not support squeeze-and-excitation blocks.")
    block = _FIXUP[self.block_cls]
    return functools.partial(block, scale=fixup_scale(sum(self.stage_sizes), block.branch_depth))

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "ResNet")
    if self.block_cls.expansion == 1 and (self.groups != 1 or self.width_per_group != 64):
      raise ValueError("groups and width_per_group apply to bottleneck blocks only.")
    block_cls = self._block_cls()
    ops = self.get_ops()
    if self.fixup:
      ops = ops.replace(norm=Identity)
    scalar = lambda name: self.param(name, nn.initializers.zeros, ())  # noqa: E731

    if self.stem not in ("imagenet", "cifar"):
      raise ValueError(f"Unknown stem {self.stem!r}; use 'imagenet' or 'cifar'.")
    k, s = (7, 2) if self.stem == "imagenet" else (3, 1)
    x = ops.conv(self.stem_features, (k, k), strides=(s, s), padding=ops.pad((k, k)),
                 use_bias=False, name="stem_conv")(x)
    if self.fixup:
      x = ops.activate(x + scalar("stem_bias"), "stem_act")
    elif self.stem == "imagenet" or not self.block_cls.preact:
      x = ops.activate(ops.normalize(x, train=train, name="stem_norm"), "stem_act")
    if self.stem == "imagenet":
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=ops.pad((3, 3)))

    for i, num_blocks in enumerate(self.stage_sizes):
      filters = self.num_filters * 2**i
      for j in range(num_blocks):
        x = block_cls(
            features=filters * self.block_cls.expansion,
            width=int(filters * self.width_per_group / 64) * self.groups,
            strides=2 if i > 0 and j == 0 else 1, groups=self.groups, ops=ops,
            shortcut=self.shortcut, se_reduction=self.se_reduction,
            dropout_rate=self.dropout_rate, name=f"stage{i + 1}_block{j + 1}")(x, train=train)

    if self.block_cls.preact:
      x = ops.activate(ops.normalize(x, train=train, name="final_norm"), "final_act")
    if self.fixup:
      x = x.mean(axis=(1, 2)) + scalar("head_bias")
      return ops.dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(x)
    return pooled_head(x, ops, self.num_classes)


def _register(name: str, input_size=None, published: Published | None = None,
              **fields: Any) -> None:
  cifar = fields.get("stem") == "cifar"
  register_model(functools.partial(ResNet, **fields), name=name, published=published,
                 input_size=input_size or (CIFAR_INPUT if cifar else IMAGENET_INPUT))


def _tv(name: str, params: int, macs: float | None = None) -> Published:
  return Published(params=params, macs=macs,
                   source=f"torchvision {name} (macs: torchvision's GFLOPS column)")


def _paper(params: float, rounded_to: float, source: str) -> Published:
  return Published(params=params, params_tol=rounded_to / 2, source=source)


_CIFAR = "He et al. 2015, Table 6 (CIFAR-10, option A shortcuts), rounded to {}"
_V2 = ("the v1 {} count (torchvision): He et al. 2016 keep the v1 layers and move BatchNorm "
       "before the convolutions, which changes the count by <0.1%")

# depth: (stage sizes, bottleneck, torchvision params, torchvision GMACs)
_IMAGENET = {18: ((2, 2, 2, 2), False, 11_689_512, 1.81e9),
             34: ((3, 4, 6, 3), False, 21_797_672, 3.66e9),
             50: ((3, 4, 6, 3), True, 25_557_032, 4.09e9),
             101: ((3, 4, 23, 3), True, 44_549_160, 7.80e9),
             152: ((3, 8, 36, 3), True, 60_192_808, 11.51e9)}
for _depth, (_stages, _bottleneck, _params, _macs) in _IMAGENET.items():
  _register(f"resnet{_depth}", stage_sizes=_stages,
            block_cls=Bottleneck if _bottleneck else BasicBlock,
            published=_tv(f"resnet{_depth}", _params, _macs))
  _register(f"preact_resnet{_depth}", stage_sizes=_stages,
            block_cls=PreActBottleneck if _bottleneck else PreActBasicBlock,
            published=Published(params=_params, source=_V2.format(f"resnet{_depth}")))

# CIFAR ResNets: depth 6n + 2, 16/32/64 filters, option A shortcuts (He et al. 2015, Sec. 4.2).
for _depth, _params, _rounded in ((20, 0.27e6, 0.01e6), (32, 0.46e6, 0.01e6),
                                  (44, 0.66e6, 0.01e6), (56, 0.85e6, 0.01e6),
                                  (110, 1.7e6, 0.1e6)):
  _n = (_depth - 2) // 6
  _register(f"resnet{_depth}", stage_sizes=(_n, _n, _n), num_classes=10, num_filters=16,
            stem="cifar", stem_features=16, shortcut="zero_pad",
            published=_paper(_params, _rounded, _CIFAR.format(f"{_rounded / 1e6:g}M")))

# Wide ResNets for CIFAR: depth 6n + 4, widths 16k/32k/64k, pre-activation (Zagoruyko & Komodakis).
for _depth, _k, _params in ((28, 10, 36.5e6), (16, 8, 11.0e6)):
  _n = (_depth - 4) // 6
  _register(f"wrn{_depth}_{_k}", stage_sizes=(_n, _n, _n), block_cls=PreActBasicBlock,
            num_classes=10, num_filters=16 * _k, stem="cifar", stem_features=16,
            published=_paper(_params, 0.1e6, "Zagoruyko & Komodakis 2016, Table 4 (CIFAR-10)"))

_register("wide_resnet50_2", stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, width_per_group=128,
          published=_tv("wide_resnet50_2", 68_883_240, 11.40e9))
_register("resnext50_32x4d", stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, groups=32,
          width_per_group=4, published=_tv("resnext50_32x4d", 25_028_904, 4.23e9))
# ResNeXt-29 for CIFAR: 3 stages of 3 bottlenecks, 64-filter 3x3 stem (Xie et al. 2017, Sec. 5.3).
for _cardinality, _params in ((8, 34.4e6), (16, 68.1e6)):
  _register(f"resnext29_{_cardinality}x64d", stage_sizes=(3, 3, 3), block_cls=Bottleneck,
            num_classes=10, stem="cifar", groups=_cardinality, width_per_group=64,
            published=_paper(_params, 0.1e6, "Xie et al. 2017, Table 7 (CIFAR)"))
_register("seresnet50", stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, se_reduction=16,
          published=_paper(28.09e6, 0.01e6, "timm seresnet50"))
_register("seresnext50_32x4d", stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, groups=32,
          width_per_group=4, se_reduction=16,
          published=_paper(27.56e6, 0.01e6, "timm seresnext50_32x4d"))
