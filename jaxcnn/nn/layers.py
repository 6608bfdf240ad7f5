"""Building blocks shared by the model zoo.

The swappable choices (``act``, ``norm``, ``conv``, ``kernel_init``, ``dtype``) are declared once,
on :class:`OpsModule`, and resolved once into :class:`Ops`, which a model hands to all its blocks;
so a study swaps them everywhere at once, and a new choice is one field and one line.

Normalization specs: ``"batch"`` (flax BatchNorm, momentum 0.9, epsilon 1e-5), ``"group"``
(32 groups), ``"layer"``, ``"none"``, a name with arguments (``"batch(momentum=0.99)"``) or a
callable returning a flax Module. :func:`normalize` applies one, passing
``use_running_average=not train`` to modules that have that field.

Padding conventions (``padding=`` on every model): ``"same"`` is TensorFlow's SAME (output
``ceil(n / s)``; a stride-2 convolution on an even map pads ``(k // 2 - 1, k // 2)``), the one the
TF-born families (MobileNet, EfficientNet, GoogLeNet here) default to; ``"torch"`` pads ``k // 2``
on both sides, as torchvision and timm's non-``tf_`` models do. For odd kernels both give the same
output size and differ only in where a strided window starts (:func:`resolve_padding`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.nn import activations, initializers
from jaxcnn.nn.conv import Conv
from jaxcnn.registry import Registry

ModuleDef = Any


class Identity(nn.Module):
  """The "no normalization" choice: returns its input."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return x


NORMS = Registry("normalization", factory=False)
NORMS.register(functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5), name="batch")
NORMS.register(functools.partial(nn.GroupNorm, num_groups=32), name="group")
NORMS.register(nn.LayerNorm, name="layer")
NORMS.register(Identity, name="none")


def get_norm(spec: str | Callable[..., nn.Module] | None) -> Callable[..., nn.Module]:
  """Resolves a normalization spec; ``None`` means no normalization."""
  return Identity if spec is None else NORMS.get(spec)


def _has_field(module_def: Callable[..., nn.Module], field: str) -> bool:
  cls = module_def
  while isinstance(cls, functools.partial):
    cls = cls.func
  return field in getattr(cls, "__dataclass_fields__", {})


def _apply_norm(norm: Callable[..., nn.Module], x: jax.Array, *, train: bool,
                name: str | None = None, **kwargs: Any) -> jax.Array:
  """Applies a resolved normalization ModuleDef (see :func:`normalize`)."""
  if norm is Identity:
    return x
  if _has_field(norm, "use_running_average"):
    kwargs["use_running_average"] = not train
  if _has_field(norm, "num_groups"):  # GroupNorm: fall back to fewer groups for thin layers
    groups = norm.keywords.get("num_groups", 32) if isinstance(norm, functools.partial) else 32
    while x.shape[-1] % groups:
      groups //= 2
    kwargs["num_groups"] = groups
  return norm(name=name, **kwargs)(x)


def normalize(norm: Any, x: jax.Array, *, train: bool, name: str | None = None,
              **kwargs: Any) -> jax.Array:
  """Applies normalization spec ``norm`` to ``x`` inside a compact method."""
  return _apply_norm(get_norm(norm), x, train=train, name=name, **kwargs)


PADDINGS = ("same", "torch")


def resolve_padding(padding: Any, kernel_size: Sequence[int]) -> Any:
  """The ``padding`` argument of ``nn.Conv`` (or a pool) for a convention or an explicit spec.

  ``"same"`` (or ``"SAME"``) gives flax's "SAME"; ``"torch"`` gives ``k // 2`` on both sides of
  every spatial axis (PyTorch's ``padding=k // 2``); anything else (``"VALID"``, explicit pairs)
  is returned unchanged.
  """
  if isinstance(padding, str) and padding.lower() == "same":
    return "SAME"
  if isinstance(padding, str) and padding.lower() == "torch":
    return tuple((k // 2, k // 2) for k in kernel_size)
  return padding


def _check_convention(padding: Any) -> str:
  if not isinstance(padding, str) or padding.lower() not in PADDINGS:
    raise ValueError(f"Unknown padding convention {padding!r}; use one of {PADDINGS} "
                     "('same': TensorFlow SAME; 'torch': k // 2 on both sides).")
  return padding.lower()


def _bind(module_def: ModuleDef, **fields: Any) -> ModuleDef:
  """``partial(module_def, **fields)``, leaving out the fields that are None."""
  fields = {k: v for k, v in fields.items() if v is not None}
  return functools.partial(module_def, **fields) if fields else module_def


@dataclasses.dataclass(frozen=True)
class Ops:
  """The swappable operations of a network, resolved once and handed to every block.

  A top-level model builds one from its fields (``self.get_ops()``, see :class:`OpsModule`) and
  passes it down as the ``ops`` field of its blocks, which then call ``ops.conv(...)``,
  ``ops.dense(...)``, ``ops.normalize(x, train=train)`` and ``ops.activate(x)`` instead of
  resolving spec strings at every layer (the Flax ImageNet example's
  ``conv = partial(self.conv, use_bias=False, dtype=self.dtype)``). Adding a swappable choice is
  one field of :class:`OpsModule` (named in :data:`CHOICES`) and its resolution in
  :meth:`create`; no model changes.

  Attributes:
    act: the activation, a function or a learnable flax Module class (``activations.get``).
    norm: the normalization ModuleDef (``get_norm``; :class:`Identity` for none).
    conv: the convolution ModuleDef with ``kernel_init`` (and ``dtype``) bound.
    dense: ``nn.Dense`` with ``kernel_init`` (and ``dtype``) bound.
    kernel_init: the resolved kernel initializer, for layers that scale or replace it.
    dtype: computation dtype of every conv, dense and norm layer (None: flax's default).
    padding: the padding convention of "same-style" convolutions and pools, ``"same"`` or
      ``"torch"`` (see :func:`resolve_padding` and :meth:`pad`).
  """

  act: Callable[..., Any]
  norm: ModuleDef
  conv: ModuleDef
  dense: ModuleDef
  kernel_init: Callable[..., Any]
  dtype: Any = None
  padding: str = "same"

  @classmethod
  def create(cls, act: Any = "relu", norm: Any = "batch", conv: ModuleDef = Conv,
             kernel_init: Any = "kaiming_normal", dtype: Any = None,
             padding: str | None = None) -> "Ops":
    """Resolves the specs (names, ``"name(args)"`` or callables) into ready operations.

    ``padding`` is a convention, ``"same"`` (the default, also for None) or ``"torch"``.
    """
    padding = "same" if padding is None else _check_convention(padding)
    init = initializers.get(kernel_init)
    act = activations.get("identity" if act is None else act)
    norm = get_norm(norm)
    if norm is not Identity and _has_field(norm, "dtype"):
      norm = _bind(norm, dtype=dtype)
    return cls(act=act, norm=norm,
               conv=_bind(conv, kernel_init=init, dtype=dtype),
               dense=_bind(nn.Dense, kernel_init=init, dtype=dtype), kernel_init=init,
               dtype=dtype, padding=padding)

  def replace(self, **changes: Any) -> "Ops":
    """A copy with some operations replaced (``ops.replace(norm=Identity)``)."""
    return dataclasses.replace(self, **changes)

  def pad(self, kernel_size: Sequence[int]) -> Any:
    """The ``padding`` argument of a same-style convolution or pool under this convention."""
    return resolve_padding(self.padding, kernel_size)

  def normalize(self, x: jax.Array, *, train: bool, name: str | None = None,
                **kwargs: Any) -> jax.Array:
    """Applies ``norm`` (inside a compact method); the identity for no normalization."""
    return _apply_norm(self.norm, x, train=train, name=name, **kwargs)

  def activate(self, x: jax.Array, name: str | None = None) -> jax.Array:
    """Applies ``act`` through an :class:`~jaxcnn.nn.activations.Activation` module."""
    return activations.Activation(self.act, name=name)(x)


# The choice fields of OpsModule, each an argument of Ops.create.
CHOICES = ("act", "norm", "conv", "kernel_init", "dtype", "padding")


def choice(default: Any) -> Any:
  """A keyword-only field for a swappable choice; redeclare one to change its default:
  ``act: Any = choice("relu6")``."""
  return dataclasses.field(default=default, kw_only=True)


class OpsModule(nn.Module):
  """Base of the zoo's modules: the swappable choices, declared once as keyword-only fields.

  ``act``, ``norm``, ``kernel_init`` take names, names with arguments or callables; ``conv`` is a
  ModuleDef; ``dtype`` the computation dtype; ``padding`` the padding convention (``"same"`` or
  ``"torch"``; None: the family's default, ``"same"`` unless a model redeclares it). A model
  resolves them once with :meth:`get_ops` and hands the result to its blocks as ``ops=``; a block
  given ``ops`` ignores its own choice fields, so it still works standalone
  (``ConvBNAct(16, act="elu")``). The exception is ``padding`` on :class:`ConvBNAct`, a property
  of that one layer: when given, it wins over the convention.
  """

  act: Any = choice("relu")
  norm: Any = choice("batch")
  conv: ModuleDef = choice(Conv)
  kernel_init: Any = choice("kaiming_normal")
  dtype: Any = choice(None)
  padding: Any = choice(None)
  ops: Ops | None = choice(None)

  _layer_padding = False  # True where ``padding`` may also be one layer's explicit padding

  def get_ops(self) -> Ops:
    """``ops`` if given, else the operations resolved from this module's choice fields."""
    if self.ops is not None:
      return self.ops
    choices = {name: getattr(self, name) for name in CHOICES}
    padding = choices["padding"]
    if self._layer_padding and not (isinstance(padding, str) and padding.lower() in PADDINGS):
      choices["padding"] = None  # an explicit padding of this one layer, not a convention
    return Ops.create(**choices)


class ConvBNAct(OpsModule):
  """Convolution, normalization, activation: the unit most CNNs are made of.

  ``activation=False`` (or ``act=None``) leaves the output linear (before a residual addition,
  say). ``padding`` (keyword-only) is a convention (``"same"``, ``"torch"``) or anything
  ``nn.Conv`` accepts (``"VALID"``, explicit pairs); None follows the convention of ``ops``
  (``"same"`` standalone).
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  groups: int = 1
  use_bias: bool = False
  activation: bool = True

  _layer_padding = True
  norm_scale_init: Callable[..., Any] = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    padding = ops.pad(self.kernel_size) if self.padding is None else resolve_padding(
        self.padding, self.kernel_size)
    x = ops.conv(self.features, tuple(self.kernel_size), strides=tuple(self.strides),
                 padding=padding, feature_group_count=self.groups,
                 use_bias=self.use_bias)(x)
    x = ops.normalize(x, train=train, scale_init=self.norm_scale_init)
    if self.activation and self.act is not None:
      x = ops.activate(x)
    return x


class SqueezeExcite(OpsModule):
  """Channel attention: global pool, bottleneck MLP, sigmoid gate.

  ``reduced_features`` defaults to ``in_channels // reduction``. References: Hu et al. 2017,
  "Squeeze-and-Excitation Networks".
  """

  reduction: int = 16
  reduced_features: int | None = None
  gate: Any = "sigmoid"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ops = self.get_ops()
    channels = x.shape[-1]
    hidden = self.reduced_features or max(1, channels // self.reduction)
    s = x.mean(axis=(1, 2), keepdims=True)
    s = ops.activate(ops.conv(hidden, (1, 1))(s))
    s = ops.conv(channels, (1, 1))(s)
    return x * activations.get(self.gate)(s)


class DropPath(nn.Module):
  """Stochastic depth: drops a whole residual branch per example with probability ``rate``.

  Survivors are scaled by ``1 / (1 - rate)`` so the expectation is unchanged. Needs the
  ``"dropout"`` rng when ``train`` is True. References: Huang et al. 2016, "Deep Networks with
  Stochastic Depth".
  """

  rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class DepthwiseSeparable(OpsModule):
  """Depthwise ``k x k`` convolution then pointwise 1x1, each followed by norm and activation.

  The MobileNet v1 block: ``k*k*C_in + C_in*C_out`` weights instead of ``k*k*C_in*C_out``.
  References: Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile
  Vision Applications", Figure 3.
  """

  features: int
  strides: int = 1
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    block = functools.partial(ConvBNAct, ops=self.get_ops())
    k, s = self.kernel_size, self.strides
    x = block(x.shape[-1], (k, k), (s, s), groups=x.shape[-1], name="depthwise")(x, train=train)
    return block(self.features, (1, 1), name="pointwise")(x, train=train)


class InvertedResidual(OpsModule):
  """Expand 1x1, depthwise ``k x k``, optional squeeze-excite, linear project 1x1, residual.

  The MobileNet v2 block, and with ``se_ratio > 0`` and stochastic depth the EfficientNet MBConv.
  The expansion is skipped when ``expand_ratio == 1``. The squeeze-excite bottleneck has
  ``max(1, int(C_in * se_ratio))`` channels, ``C_in`` being the *block input* channels (as in
  EfficientNet). The residual connection (with :class:`DropPath` at ``drop_path_rate``) is used
  when the stride is 1 and ``C_in == features``.

  References: Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks";
  Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks".
  """

  features: int
  strides: int = 1
  expand_ratio: float = 6
  kernel_size: int = 3
  se_ratio: float = 0.0
  drop_path_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.strides not in (1, 2):
      raise ValueError(f"InvertedResidual strides must be 1 or 2, got {self.strides}.")
    ops = self.get_ops()
    block = functools.partial(ConvBNAct, ops=ops)
    in_features = x.shape[-1]
    hidden = int(round(in_features * self.expand_ratio))
    k, s = self.kernel_size, self.strides
    y = x
    if hidden != in_features:
      y = block(hidden, (1, 1), name="expand")(y, train=train)
    y = block(hidden, (k, k), (s, s), groups=hidden, name="depthwise")(y, train=train)
    if self.se_ratio > 0:
      y = SqueezeExcite(reduced_features=max(1, int(in_features * self.se_ratio)), ops=ops,
                        name="se")(y)
    y = block(self.features, (1, 1), activation=False, name="project")(y, train=train)
    if s == 1 and in_features == self.features:
      y = DropPath(self.drop_path_rate, name="drop_path")(y, train=train) + x
    return y


def make_divisible(value: float, divisor: int = 8) -> int:
  """Rounds ``value`` to the nearest multiple of ``divisor``, never going below 90% of it.

  The channel rounding of the MobileNet v2 and EfficientNet reference implementations.
  """
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return int(rounded + divisor if rounded < 0.9 * value else rounded)
