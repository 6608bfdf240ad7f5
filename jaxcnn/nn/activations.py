"""Activation functions: pure functions, learnable modules, and a registry.

``get("elu(alpha=0.5)")`` returns a callable; ``get(jax.nn.silu)`` returns it unchanged.
Models hold an activation spec and apply it through :class:`Activation`, which builds learnable
activations (PReLU, Maxout, ...) as submodules and calls plain functions directly, so every
nonlinearity in a network is a module that diagnostics can intercept.

Learnable activations are flax Modules registered by name (``get("prelu")`` is the class,
``get("prelu(negative_slope_init=0.1)")`` a partial of it); they take no positional arguments
and are called as ``module(x)``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.nn import initializers
from jaxcnn.registry import Registry

REGISTRY = Registry("activation", factory=False)
register = REGISTRY.register
names = REGISTRY.names

# Klambauer et al. 2017, eq. (14): the fixed point (mean 0, variance 1) of SELU.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def get(spec: str | Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
  """Resolves an activation spec: a name, ``"name(arg=value)"``, or a callable."""
  return REGISTRY.get(spec, **kwargs)


def is_learnable(act: Any) -> bool:
  """True if ``act`` is a flax Module class (or a partial of one): it has parameters."""
  while isinstance(act, functools.partial):
    act = act.func
  return inspect.isclass(act) and issubclass(act, nn.Module)


class Activation(nn.Module):
  """Applies an activation spec; learnable ones become a child module with their own parameters."""

  fn: Any = "relu"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fn = get(self.fn)
    return fn()(x) if is_learnable(fn) else fn(x)


# ---------------------------------------------------------------------------------------------
# Pure functions.


@register
def identity(x: jax.Array) -> jax.Array:
  """The linear activation f(x) = x."""
  return x


@register
def sigmoid(x: jax.Array) -> jax.Array:
  """1 / (1 + exp(-x)), the logistic function. References: LeCun et al. 1998, "Efficient BackProp"."""
  return jax.nn.sigmoid(x)


@register
def tanh(x: jax.Array) -> jax.Array:
  """Hyperbolic tangent. References: LeCun et al. 1998, "Efficient BackProp"."""
  return jnp.tanh(x)


@register
def relu(x: jax.Array) -> jax.Array:
  """max(0, x), with derivative 0 at 0. References: Nair & Hinton 2010; Krizhevsky et al. 2012."""
  return jax.nn.relu(x)


@register
def relu6(x: jax.Array) -> jax.Array:
  """min(max(0, x), 6), the clipped ReLU of MobileNets. References: Krizhevsky 2010, "Convolutional
  Deep Belief Networks on CIFAR-10"; Howard et al. 2017; Sandler et al. 2018."""
  return jax.nn.relu6(x)


@register
def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
  """x for x >= 0, ``negative_slope * x`` otherwise. References: Maas et al. 2013,
  "Rectifier Nonlinearities Improve Neural Network Acoustic Models"."""
  return jnp.where(x >= 0, x, negative_slope * x)


@register
def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
  """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise. References: Clevert et al. 2016, "Fast and
  Accurate Deep Network Learning by Exponential Linear Units (ELUs)"."""
  # exp only sees x <= 0, so neither the value nor the gradient overflows for large x; a `where`
  # (not `minimum`, whose gradient splits ties) keeps the derivative at 0 equal to alpha.
  return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.where(x > 0, 0.0, x)))


@register
def selu(x: jax.Array) -> jax.Array:
  """``scale * elu(x, alpha)`` with the constants that make N(0, 1) its fixed point.

  References: Klambauer et al. 2017, "Self-Normalizing Neural Networks".
  """
  return SELU_SCALE * elu(x, SELU_ALPHA)


@register
def swish(x: jax.Array, beta: float = 1.0) -> jax.Array:
  """``x * sigmoid(beta * x)``; beta = 1 is SiLU. References: Ramachandran et al. 2017,
  "Searching for Activation Functions"; Elfwing et al. 2018 (SiLU)."""
  return x * jax.nn.sigmoid(beta * x)


@register
def gelu(x: jax.Array, approximate: bool = False) -> jax.Array:
  """``x * Phi(x)`` with Phi the standard normal CDF (exact erf form); ``approximate=True`` uses the
  tanh approximation. References: Hendrycks & Gimpel 2016, "Gaussian Error Linear Units"."""
  return jax.nn.gelu(x, approximate=approximate)


@register
def mish(x: jax.Array) -> jax.Array:
  """``x * tanh(softplus(x))``. References: Misra 2019, "Mish: A Self Regularized Non-Monotonic
  Activation Function"."""
  return x * jnp.tanh(jax.nn.softplus(x))


@register
def softplus(x: jax.Array) -> jax.Array:
  """log(1 + exp(x)), computed as logaddexp(x, 0). References: Dugas et al. 2001,
  "Incorporating Second-Order Functional Knowledge for Better Option Pricing"."""
  return jax.nn.softplus(x)


# ---------------------------------------------------------------------------------------------
# Learnable activations.


def _channel_shape(x: jax.Array, per_channel: bool, what: str) -> tuple[int, ...]:
  if not per_channel:
    return ()
  if x.ndim == 0:
    raise ValueError(f"A per-channel {what} needs an input with a channel axis, got a scalar.")
  return (x.shape[-1],)


@register(name="prelu")
class PReLU(nn.Module):
  """Leaky ReLU with a learned negative slope, one per channel (last axis) or one shared.

  References: He et al. 2015, "Delving Deep into Rectifiers: Surpassing Human-Level Performance on
  ImageNet Classification" (initial slope 0.25).
  """

  negative_slope_init: float = 0.25
  per_channel: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = _channel_shape(x, self.per_channel, "PReLU")
    slope = self.param("slope", nn.initializers.constant(self.negative_slope_init), shape)
    return leaky_relu(x, jnp.asarray(slope, x.dtype))


@register(name="learnable_swish")
class LearnableSwish(nn.Module):
  """Swish ``x * sigmoid(beta * x)`` with a learned beta, one per channel (last axis) or one shared.

  References: Ramachandran et al. 2017, "Searching for Activation Functions".
  """

  beta_init: float = 1.0
  per_channel: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = _channel_shape(x, self.per_channel, "LearnableSwish")
    beta = self.param("beta", nn.initializers.constant(self.beta_init), shape)
    return swish(x, jnp.asarray(beta, x.dtype))


@register(name="maxout")
class Maxout(nn.Module):
  """The maximum of ``k`` affine maps of the last axis: ``h_i = max_j (x W_ij + b_ij)``.

  The pieces come from one Dense layer with ``k * features`` outputs (a 1x1 convolution on
  ``(N, H, W, C)`` feature maps); ``features`` defaults to the input's channel count, giving
  ``C * k * features + k * features`` parameters. References: Goodfellow et al. 2013,
  "Maxout Networks".
  """

  k: int = 2
  features: int | None = None
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.k < 1:
      raise ValueError(f"Maxout needs k >= 1 pieces, got k={self.k}.")
    if x.ndim == 0:
      raise ValueError("Maxout needs an input with a feature axis, got a scalar.")
    features = self.features or x.shape[-1]
    pieces = nn.Dense(self.k * features, kernel_init=initializers.get(self.kernel_init),
                      name="pieces")(x)
    return pieces.reshape(*x.shape[:-1], self.k, features).max(axis=-2)
