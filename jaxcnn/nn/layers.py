"""Building blocks shared by the model zoo.

Every block takes ``act``, ``norm``, ``conv`` and ``kernel_init`` as fields (names or callables) so
a study can swap them everywhere at once.

Normalization specs: ``"batch"`` (flax BatchNorm, momentum 0.9, epsilon 1e-5), ``"group"``
(32 groups), ``"layer"``, ``"none"``, a name with arguments (``"batch(momentum=0.99)"``) or a
callable returning a flax Module. :func:`normalize` applies one, passing
``use_running_average=not train`` to modules that have that field.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.nn import activations, initializers
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


def normalize(norm: Any, x: jax.Array, *, train: bool, name: str | None = None,
              **kwargs: Any) -> jax.Array:
  """Applies normalization spec ``norm`` to ``x`` inside a compact method."""
  norm = get_norm(norm)
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


class ConvBNAct(nn.Module):
  """Convolution, normalization, activation: the unit most CNNs are made of.

  ``act=None`` or ``"identity"`` leaves the output linear (before a residual addition, say).
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  groups: int = 1
  padding: Any = "SAME"
  use_bias: bool = False
  act: Any = "relu"
  norm: Any = "batch"
  conv: ModuleDef = nn.Conv
  kernel_init: Any = "kaiming_normal"
  norm_scale_init: Callable[..., Any] = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = self.conv(
        self.features,
        tuple(self.kernel_size),
        strides=tuple(self.strides),
        padding=self.padding,
        feature_group_count=self.groups,
        use_bias=self.use_bias,
        kernel_init=initializers.get(self.kernel_init),
    )(x)
    x = normalize(self.norm, x, train=train, scale_init=self.norm_scale_init)
    if self.act is not None:
      x = activations.Activation(self.act)(x)
    return x


class SqueezeExcite(nn.Module):
  """Channel attention: global pool, bottleneck MLP, sigmoid gate.

  ``reduced_features`` defaults to ``in_channels // reduction``. References: Hu et al. 2017,
  "Squeeze-and-Excitation Networks".
  """

  reduction: int = 16
  reduced_features: int | None = None
  act: Any = "relu"
  gate: Any = "sigmoid"
  kernel_init: Any = "kaiming_normal"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    hidden = self.reduced_features or max(1, channels // self.reduction)
    s = x.mean(axis=(1, 2), keepdims=True)
    s = nn.Conv(hidden, (1, 1), kernel_init=initializers.get(self.kernel_init))(s)
    s = activations.Activation(self.act)(s)
    s = nn.Conv(channels, (1, 1), kernel_init=initializers.get(self.kernel_init))(s)
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


class DepthwiseSeparable(nn.Module):
  """Depthwise ``k x k`` convolution then pointwise 1x1, each followed by norm and activation.

  The MobileNet v1 block: ``k*k*C_in + C_in*C_out`` weights instead of ``k*k*C_in*C_out``.
  References: Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile
  Vision Applications", Figure 3.
  """

  features: int
  strides: int = 1
  kernel_size: int = 3
  act: Any = "relu"
  norm: Any = "batch"
  conv: ModuleDef = nn.Conv
  kernel_init: Any = "kaiming_normal"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    block = functools.partial(ConvBNAct, act=self.act, norm=self.norm, conv=self.conv,
                              kernel_init=self.kernel_init)
    k, s = self.kernel_size, self.strides
    x = block(x.shape[-1], (k, k), (s, s), groups=x.shape[-1], name="depthwise")(x, train=train)
    return block(self.features, (1, 1), name="pointwise")(x, train=train)


class InvertedResidual(nn.Module):
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
  act: Any = "relu"
  norm: Any = "batch"
  conv: ModuleDef = nn.Conv
  kernel_init: Any = "kaiming_normal"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.strides not in (1, 2):
      raise ValueError(f"InvertedResidual strides must be 1 or 2, got {self.strides}.")
    block = functools.partial(ConvBNAct, act=self.act, norm=self.norm, conv=self.conv,
                              kernel_init=self.kernel_init)
    in_features = x.shape[-1]
    hidden = int(round(in_features * self.expand_ratio))
    k, s = self.kernel_size, self.strides
    y = x
    if hidden != in_features:
      y = block(hidden, (1, 1), name="expand")(y, train=train)
    y = block(hidden, (k, k), (s, s), groups=hidden, name="depthwise")(y, train=train)
    if self.se_ratio > 0:
      y = SqueezeExcite(reduced_features=max(1, int(in_features * self.se_ratio)), act=self.act,
                        kernel_init=self.kernel_init, name="se")(y)
    y = block(self.features, (1, 1), act=None, name="project")(y, train=train)
    if s == 1 and in_features == self.features:
      y = DropPath(self.drop_path_rate, name="drop_path")(y, train=train) + x
    return y
