"""Residual networks: ResNet v1 (ImageNet and CIFAR), pre-activation ResNet v2, Wide ResNet,
ResNeXt, SE-ResNet/SE-ResNeXt, and Fixup initialization of the v1 networks.

One :class:`ResNet` module builds them all from four blocks (:class:`BasicBlock`,
:class:`Bottleneck`, :class:`PreActBasicBlock`, :class:`PreActBottleneck`) and two Fixup blocks.
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

from jaxcnn.models._common import register_model
from jaxcnn.nn import activations, initializers
from jaxcnn.nn.layers import ConvBNAct, ModuleDef, SqueezeExcite, normalize

_TV = "torchvision {} (macs: torchvision's GFLOPS column)"
_CIFAR = "He et al. 2015, Table 6 (CIFAR-10, option A shortcuts), rounded to 0.01M"
_V2 = ("the v1 {} count (torchvision): He et al. 2016 keep the v1 layers and move BatchNorm "
       "before the convolutions, which changes the count by <0.1%")
PUBLISHED = {
    "resnet18": {"params": 11_689_512, "macs": 1.81e9, "source": _TV.format("resnet18")},
    "resnet34": {"params": 21_797_672, "macs": 3.66e9, "source": _TV.format("resnet34")},
    "resnet50": {"params": 25_557_032, "macs": 4.09e9, "source": _TV.format("resnet50")},
    "resnet101": {"params": 44_549_160, "macs": 7.80e9, "source": _TV.format("resnet101")},
    "resnet152": {"params": 60_192_808, "macs": 11.51e9, "source": _TV.format("resnet152")},
    "preact_resnet18": {"params": 11_689_512, "source": _V2.format("resnet18")},
    "preact_resnet34": {"params": 21_797_672, "source": _V2.format("resnet34")},
    "preact_resnet50": {"params": 25_557_032, "source": _V2.format("resnet50")},
    "preact_resnet101": {"params": 44_549_160, "source": _V2.format("resnet101")},
    "preact_resnet152": {"params": 60_192_808, "source": _V2.format("resnet152")},
    "resnet20": {"params": 0.27e6, "rounded_to": 0.01e6, "input_size": 32, "source": _CIFAR},
    "resnet32": {"params": 0.46e6, "rounded_to": 0.01e6, "input_size": 32, "source": _CIFAR},
    "resnet44": {"params": 0.66e6, "rounded_to": 0.01e6, "input_size": 32, "source": _CIFAR},
    "resnet56": {"params": 0.85e6, "rounded_to": 0.01e6, "input_size": 32, "source": _CIFAR},
    "resnet110": {"params": 1.7e6, "rounded_to": 0.1e6, "input_size": 32,
                  "source": _CIFAR.replace("0.01M", "0.1M")},
    "wrn28_10": {"params": 36.5e6, "rounded_to": 0.1e6, "input_size": 32,
                 "source": "Zagoruyko & Komodakis 2016, Table 4 (CIFAR-10)"},
    "wrn16_8": {"params": 11.0e6, "rounded_to": 0.1e6, "input_size": 32,
                "source": "Zagoruyko & Komodakis 2016, Table 4 (CIFAR-10)"},
    "wide_resnet50_2": {"params": 68_883_240, "macs": 11.40e9,
                        "source": _TV.format("wide_resnet50_2")},
    "resnext50_32x4d": {"params": 25_028_904, "macs": 4.23e9,
                        "source": _TV.format("resnext50_32x4d")},
    "resnext29_8x64d": {"params": 34.4e6, "rounded_to": 0.1e6, "input_size": 32,
                        "source": "Xie et al. 2017, Table 7 (CIFAR)"},
    "resnext29_16x64d": {"params": 68.1e6, "rounded_to": 0.1e6, "input_size": 32,
                         "source": "Xie et al. 2017, Table 7 (CIFAR)"},
    "seresnet50": {"params": 28.09e6, "rounded_to": 0.01e6, "source": "timm seresnet50"},
    "seresnext50_32x4d": {"params": 27.56e6, "rounded_to": 0.01e6,
                          "source": "timm seresnext50_32x4d"},
}


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


def _pad(k: int) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((k // 2, k // 2), (k // 2, k // 2))


class _Block(nn.Module):
  """Fields shared by the residual blocks.

  ``features`` is the block's output width, ``width`` the inner width of a bottleneck (basic
  blocks use ``features``). ``shortcut`` is ``"projection"`` (1x1 convolution where the shape
  changes; He et al. 2015 option B) or ``"zero_pad"`` (subsample and pad channels with zeros;
  option A, parameter-free, used by the CIFAR ResNets). ``se_reduction > 0`` adds a
  squeeze-and-excitation gate on the branch; ``dropout_rate`` drops units between the branch's
  convolutions (Wide ResNet).
  """

  features: int
  width: int = 0
  strides: int = 1
  groups: int = 1
  act: Any = "relu"
  norm: Any = "batch"
  conv: ModuleDef = nn.Conv
  kernel_init: Any = "kaiming_normal"
  shortcut: str = "projection"
  se_reduction: int = 0
  dropout_rate: float = 0.0

  def _conv(self, features, k, strides=1, groups=1, init=None, name=None):
    return self.conv(features, (k, k), strides=(strides, strides), padding=_pad(k),
                     feature_group_count=groups, use_bias=False,
                     kernel_init=init or initializers.get(self.kernel_init), name=name)

  def _layer(self, features, k, strides=1, groups=1, act=True, name=None):
    return ConvBNAct(features, (k, k), (strides, strides), groups=groups, padding=_pad(k),
                     act=self.act if act else None, norm=self.norm, conv=self.conv,
                     kernel_init=self.kernel_init, name=name)

  def _needs_projection(self, x):
    return x.shape[-1] != self.features or self.strides != 1

  def _shortcut(self, x, *, train, norm=True, init=None):
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
      return self._conv(self.features, 1, self.strides, init=init, name="shortcut")(x)
    return self._layer(self.features, 1, self.strides, act=False, name="shortcut")(x, train=train)

  def _se(self, y):
    if self.se_reduction:
      y = SqueezeExcite(reduction=self.se_reduction, act=self.act, kernel_init=self.kernel_init,
                        name="se")(y)
    return y

  def _dropout(self, y, train):
    return nn.Dropout(self.dropout_rate, deterministic=not train)(y) if self.dropout_rate else y


class BasicBlock(_Block):
  """Two 3x3 convolutions (conv-norm-act, conv-norm), added to the shortcut, then act.

  References: He et al. 2015, Fig. 5 left.
  """

  expansion = 1
  preact = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = self._layer(self.features, 3, self.strides, name="conv1")(x, train=train)
    y = self._dropout(y, train)
    y = self._layer(self.features, 3, act=False, name="conv2")(y, train=train)
    y = self._se(y)
    return activations.Activation(self.act)(y + self._shortcut(x, train=train))


class Bottleneck(_Block):
  """1x1 reduce, 3x3 (strided, grouped for ResNeXt), 1x1 expand, added to the shortcut, then act.

  References: He et al. 2015, Fig. 5 right; Xie et al. 2017, Fig. 3(c) (grouped 3x3).
  """

  expansion = 4
  preact = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = self._layer(self.width, 1, name="conv1")(x, train=train)
    y = self._layer(self.width, 3, self.strides, self.groups, name="conv2")(y, train=train)
    y = self._dropout(y, train)
    y = self._layer(self.features, 1, act=False, name="conv3")(y, train=train)
    y = self._se(y)
    return activations.Activation(self.act)(y + self._shortcut(x, train=train))


class PreActBasicBlock(_Block):
  """Norm-act-conv twice; the sum is left linear. A projection shortcut sees the pre-activated
  input and has no normalization.

  References: He et al. 2016, Fig. 1(b); Zagoruyko & Komodakis 2016 (dropout between convs).
  """

  expansion = 1
  preact = True

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    pre = activations.Activation(self.act)(normalize(self.norm, x, train=train, name="norm1"))
    shortcut = self._shortcut(pre, train=train, norm=False) if self._needs_projection(x) else x
    y = self._conv(self.features, 3, self.strides, name="conv1")(pre)
    y = activations.Activation(self.act)(normalize(self.norm, y, train=train, name="norm2"))
    y = self._dropout(y, train)
    y = self._conv(self.features, 3, name="conv2")(y)
    return self._se(y) + shortcut


class PreActBottleneck(_Block):
  """Pre-activation bottleneck: (norm-act-conv) with 1x1, 3x3, 1x1 kernels.

  References: He et al. 2016.
  """

  expansion = 4
  preact = True

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    pre = activations.Activation(self.act)(normalize(self.norm, x, train=train, name="norm1"))
    shortcut = self._shortcut(pre, train=train, norm=False) if self._needs_projection(x) else x
    y = self._conv(self.width, 1, name="conv1")(pre)
    y = activations.Activation(self.act)(normalize(self.norm, y, train=train, name="norm2"))
    y = self._conv(self.width, 3, self.strides, self.groups, name="conv2")(y)
    y = activations.Activation(self.act)(normalize(self.norm, y, train=train, name="norm3"))
    y = self._dropout(y, train)
    y = self._conv(self.features, 1, name="conv3")(y)
    return self._se(y) + shortcut


class FixupBasicBlock(_Block):
  """A basic block without normalization, initialized by Fixup.

  ``x + b1a -> conv1 (init * scale) -> + b1b -> act -> + b2a -> conv2 (zeros) -> * m + b2b``,
  added to the shortcut of ``x + b1a``, then act. The ``b`` are scalar biases (init 0), ``m`` a
  scalar multiplier (init 1), so at initialization the block is its shortcut followed by act.
  References: Zhang et al. 2019, Section 3 and Fig. 1.
  """

  expansion = 1
  preact = False
  branch_depth = 2
  scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bias = lambda name: self.param(name, nn.initializers.zeros, ())  # noqa: E731
    act = lambda y: activations.Activation(self.act)(y)  # noqa: E731  (one module per use)
    init = _scaled(initializers.get(self.kernel_init), self.scale)
    x = x + bias("bias1a")
    y = act(self._conv(self.features, 3, self.strides, init=init, name="conv1")(x) + bias("bias1b"))
    y = self._dropout(y, train)
    y = self._conv(self.features, 3, init=nn.initializers.zeros, name="conv2")(y + bias("bias2a"))
    y = y * self.param("multiplier", nn.initializers.ones, ()) + bias("bias2b")
    return act(y + self._shortcut(x, train=train, norm=False))


class FixupBottleneck(_Block):
  """A bottleneck without normalization, initialized by Fixup (see :class:`FixupBasicBlock`).

  References: Zhang et al. 2019.
  """

  expansion = 4
  preact = False
  branch_depth = 3
  scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bias = lambda name: self.param(name, nn.initializers.zeros, ())  # noqa: E731
    act = lambda y: activations.Activation(self.act)(y)  # noqa: E731  (one module per use)
    init = _scaled(initializers.get(self.kernel_init), self.scale)
    x = x + bias("bias1a")
    y = act(self._conv(self.width, 1, init=init, name="conv1")(x) + bias("bias1b"))
    y = self._conv(self.width, 3, self.strides, self.groups, init=init, name="conv2")(
        y + bias("bias2a"))
    y = act(y + bias("bias2b"))
    y = self._dropout(y, train)
    y = self._conv(self.features, 1, init=nn.initializers.zeros, name="conv3")(y + bias("bias3a"))
    y = y * self.param("multiplier", nn.initializers.ones, ()) + bias("bias3b")
    return act(y + self._shortcut(x, train=train, norm=False))


_FIXUP = {BasicBlock: FixupBasicBlock, Bottleneck: FixupBottleneck}


class ResNet(nn.Module):
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
    act, kernel_init, norm, conv: names or callables, used by every layer.
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
  act: Any = "relu"
  kernel_init: Any = "kaiming_normal"
  norm: Any = "batch"
  conv: ModuleDef = nn.Conv

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
    if x.ndim != 4:
      raise ValueError(f"ResNet expects NHWC input, got shape {x.shape}.")
    if self.block_cls.expansion == 1 and (self.groups != 1 or self.width_per_group != 64):
      raise ValueError("groups and width_per_group apply to bottleneck blocks only.")
    block_cls = self._block_cls()
    norm = "none" if self.fixup else self.norm
    act = lambda y, name: activations.Activation(self.act, name=name)(y)  # noqa: E731
    scalar = lambda name: self.param(name, nn.initializers.zeros, ())  # noqa: E731

    if self.stem not in ("imagenet", "cifar"):
      raise ValueError(f"Unknown stem {self.stem!r}; use 'imagenet' or 'cifar'.")
    k, s = (7, 2) if self.stem == "imagenet" else (3, 1)
    x = self.conv(self.stem_features, (k, k), strides=(s, s), padding=_pad(k), use_bias=False,
                  kernel_init=initializers.get(self.kernel_init), name="stem_conv")(x)
    if self.fixup:
      x = act(x + scalar("stem_bias"), "stem_act")
    elif self.stem == "imagenet" or not self.block_cls.preact:
      x = act(normalize(norm, x, train=train, name="stem_norm"), "stem_act")
    if self.stem == "imagenet":
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    for i, num_blocks in enumerate(self.stage_sizes):
      filters = self.num_filters * 2**i
      for j in range(num_blocks):
        x = block_cls(
            features=filters * self.block_cls.expansion,
            width=int(filters * self.width_per_group / 64) * self.groups,
            strides=2 if i > 0 and j == 0 else 1, groups=self.groups, act=self.act, norm=norm,
            conv=self.conv, kernel_init=self.kernel_init, shortcut=self.shortcut,
            se_reduction=self.se_reduction, dropout_rate=self.dropout_rate,
            name=f"stage{i + 1}_block{j + 1}")(x, train=train)

    if self.block_cls.preact:
      x = act(normalize(norm, x, train=train, name="final_norm"), "final_act")
    x = x.mean(axis=(1, 2))
    if self.fixup:
      x = x + scalar("head_bias")
      return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(x)
    return nn.Dense(self.num_classes, kernel_init=initializers.get(self.kernel_init),
                    name="head")(x)


def _register(name: str, **fields: Any) -> None:
  register_model(functools.partial(ResNet, **fields), name=name)


_IMAGENET = {18: ((2, 2, 2, 2), False), 34: ((3, 4, 6, 3), False), 50: ((3, 4, 6, 3), True),
             101: ((3, 4, 23, 3), True), 152: ((3, 8, 36, 3), True)}
for _depth, (_stages, _bottleneck) in _IMAGENET.items():
  _register(f"resnet{_depth}", stage_sizes=_stages,
            block_cls=Bottleneck if _bottleneck else BasicBlock)
  _register(f"preact_resnet{_depth}", stage_sizes=_stages,
            block_cls=PreActBottleneck if _bottleneck else PreActBasicBlock)

# CIFAR ResNets: depth 6n + 2, 16/32/64 filters, option A shortcuts (He et al. 2015, Sec. 4.2).
for _depth in (20, 32, 44, 56, 110):
  _n = (_depth - 2) // 6
  _register(f"resnet{_depth}", stage_sizes=(_n, _n, _n), num_classes=10, num_filters=16,
            stem="cifar", stem_features=16, shortcut="zero_pad")

# Wide ResNets for CIFAR: depth 6n + 4, widths 16k/32k/64k, pre-activation (Zagoruyko & Komodakis).
for _depth, _k in ((28, 10), (16, 8)):
  _n = (_depth - 4) // 6
  _register(f"wrn{_depth}_{_k}", stage_sizes=(_n, _n, _n), block_cls=PreActBasicBlock,
            num_classes=10, num_filters=16 * _k, stem="cifar", stem_features=16)

_register("wide_resnet50_2", stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, width_per_group=128)
_register("resnext50_32x4d", stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, groups=32,
          width_per_group=4)
# ResNeXt-29 for CIFAR: 3 stages of 3 bottlenecks, 64-filter 3x3 stem (Xie et al. 2017, Sec. 5.3).
for _cardinality in (8, 16):
  _register(f"resnext29_{_cardinality}x64d", stage_sizes=(3, 3, 3), block_cls=Bottleneck,
            num_classes=10, stem="cifar", groups=_cardinality, width_per_group=64)
_register("seresnet50", stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, se_reduction=16)
_register("seresnext50_32x4d", stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, groups=32,
          width_per_group=4, se_reduction=16)
