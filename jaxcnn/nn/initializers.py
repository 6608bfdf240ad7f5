"""Weight initializers: factories returning ``init(key, shape, dtype)`` callables (Flax ``kernel_init``).

Kernel layouts follow Flax: Dense ``(in, out)``, Conv ``(kh, kw, in, out)``. Fan-in of a conv
kernel is ``kh * kw * in``; fan-out is ``kh * kw * out``. Every factory is registered by name, so
``get("kaiming_normal(nonlinearity='tanh')")`` or ``get("normal(stddev=1.0)")`` builds one.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from jaxcnn.registry import Registry

Initializer = Callable[..., jax.Array]

REGISTRY = Registry("initializer", factory=True)
register = REGISTRY.register
names = REGISTRY.names


def get(spec: str | Callable[..., Any], **kwargs: Any) -> Initializer:
  """Resolves an initializer spec: ``"kaiming_normal(nonlinearity='relu')"``, a name, or a callable.

  A callable is taken to be an initializer already and is returned unchanged.
  """
  return REGISTRY.get(spec, **kwargs)


def fans(shape: Sequence[int]) -> tuple[int, int]:
  """(fan_in, fan_out) of a Dense ``(in, out)`` or Conv ``(*window, in, out)`` kernel."""
  if len(shape) < 2:
    raise ValueError(f"fans needs a kernel of rank >= 2, got shape {tuple(shape)}.")
  receptive = math.prod(shape[:-2])
  return shape[-2] * receptive, shape[-1] * receptive


_GAINS = {
    "linear": lambda s: 1.0,
    "identity": lambda s: 1.0,
    "conv": lambda s: 1.0,
    "sigmoid": lambda s: 1.0,
    "tanh": lambda s: 5.0 / 3.0,
    "relu": lambda s: math.sqrt(2.0),
    "leaky_relu": lambda s: math.sqrt(2.0 / (1.0 + s**2)),
    "selu": lambda s: 0.75,
}


def gain(nonlinearity: str, negative_slope: float = 0.01) -> float:
  """Recommended std gain for a nonlinearity, as PyTorch's ``calculate_gain``.

  linear/identity/conv/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + slope^2)),
  selu 3/4. References: He et al. 2015, "Delving Deep into Rectifiers".
  """
  if nonlinearity not in _GAINS:
    raise ValueError(f"Unknown nonlinearity {nonlinearity!r} for gain. "
                     f"Known nonlinearities: {', '.join(sorted(_GAINS))}.")
  return _GAINS[nonlinearity](negative_slope)


def _fan(shape: Sequence[int], mode: str) -> int:
  fan_in, fan_out = fans(shape)
  if mode == "fan_in":
    return fan_in
  if mode == "fan_out":
    return fan_out
  if mode == "fan_avg":
    return (fan_in + fan_out) / 2
  raise ValueError(f"Unknown fan mode {mode!r}; use 'fan_in', 'fan_out' or 'fan_avg'.")


def _normal(std_of_shape: Callable[[Sequence[int]], float], mean: float = 0.0) -> Initializer:
  def init(key, shape, dtype=jnp.float32):
    return mean + std_of_shape(shape) * jax.random.normal(key, shape, dtype)
  return init


def _uniform(bound_of_shape: Callable[[Sequence[int]], float]) -> Initializer:
  def init(key, shape, dtype=jnp.float32):
    bound = bound_of_shape(shape)
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


@register
def constant(value: float) -> Initializer:
  """Every weight equal to ``value``."""
  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.full(shape, value, dtype)
  return init


@register
def zeros() -> Initializer:
  """All zeros (the usual bias init; for weights it makes every unit identical)."""
  return constant(0.0)


@register
def ones() -> Initializer:
  """All ones."""
  return constant(1.0)


@register
def normal(stddev: float = 0.01, mean: float = 0.0) -> Initializer:
  """N(mean, stddev^2), independent of the shape.

  The default 0.01 is the "small random numbers" of the CS231n lectures (activations vanish in deep
  nets); ``stddev=1.0`` is their "large" case (tanh units saturate).
  """
  return _normal(lambda shape: stddev, mean)


@register
def uniform(scale: float = 0.05) -> Initializer:
  """U(-scale, scale), independent of the shape (default 0.05 as Keras' ``RandomUniform``)."""
  return _uniform(lambda shape: scale)


@register
def lecun_normal() -> Initializer:
  """N(0, 1 / fan_in); the form CS231n calls "Xavier". References: LeCun et al. 1998, "Efficient BackProp"."""
  return _normal(lambda shape: 1.0 / math.sqrt(_fan(shape, "fan_in")))


@register
def xavier_normal(gain: float = 1.0) -> Initializer:
  """N(0, gain^2 * 2 / (fan_in + fan_out)).

  References: Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward
  neural networks".
  """
  return _normal(lambda shape: gain / math.sqrt(_fan(shape, "fan_avg")))


@register
def xavier_uniform(gain: float = 1.0) -> Initializer:
  """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)). References: Glorot & Bengio 2010."""
  return _uniform(lambda shape: gain * math.sqrt(3.0 / _fan(shape, "fan_avg")))


def _check_mode(mode: str) -> None:
  if mode not in ("fan_in", "fan_out"):
    raise ValueError(f"Unknown fan mode {mode!r}; use 'fan_in' or 'fan_out'.")


@register
def kaiming_normal(nonlinearity: str = "relu", negative_slope: float = 0.01,
                   mode: str = "fan_in") -> Initializer:
  """N(0, gain^2 / fan), gain from :func:`gain` (sqrt(2) for ReLU).

  References: He et al. 2015, "Delving Deep into Rectifiers".
  """
  g = gain(nonlinearity, negative_slope)
  _check_mode(mode)
  return _normal(lambda shape: g / math.sqrt(_fan(shape, mode)))


@register
def kaiming_uniform(nonlinearity: str = "relu", negative_slope: float = 0.01,
                    mode: str = "fan_in") -> Initializer:
  """U(-a, a) with a = gain * sqrt(3 / fan), i.e. std gain / sqrt(fan). References: He et al. 2015."""
  g = gain(nonlinearity, negative_slope)
  _check_mode(mode)
  return _uniform(lambda shape: g * math.sqrt(3.0 / _fan(shape, mode)))


def _orthogonal_matrix(key: jax.Array, rows: int, cols: int, dtype) -> jax.Array:
  """A (rows, cols) matrix with orthonormal columns (rows >= cols) or rows (rows < cols), Haar-random."""
  a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.promote_types(dtype, jnp.float32))
  q, r = jnp.linalg.qr(a)
  q = q * jnp.where(jnp.diag(r) < 0, -1.0, 1.0)  # sign fix makes the distribution uniform
  return (q if rows >= cols else q.T).astype(dtype)


@register
def orthogonal(gain: float = 1.0) -> Initializer:
  """``gain`` times a random orthogonal matrix.

  The kernel is viewed as a ``(prod(shape[:-1]), out)`` matrix (``(kh*kw*in, out)`` for a conv);
  its columns are orthonormal when it has at least as many rows as columns (W^T W = gain^2 I),
  its rows otherwise (W W^T = gain^2 I). References: Saxe et al. 2013, "Exact solutions to the
  nonlinear dynamics of learning in deep linear neural networks".
  """
  def init(key, shape, dtype=jnp.float32):
    if len(shape) < 2:
      raise ValueError(f"orthogonal needs a kernel of rank >= 2, got shape {tuple(shape)}.")
    rows = math.prod(shape[:-1])
    return (gain * _orthogonal_matrix(key, rows, shape[-1], dtype)).reshape(shape).astype(dtype)
  return init


@register
def delta_orthogonal(gain: float = 1.0) -> Initializer:
  """Conv kernel that is zero except at the spatial centre, where it is ``gain`` times an
  ``(in, out)`` matrix with orthonormal rows; needs ``in <= out``.

  The centre is index ``k // 2`` along each window axis (for even ``k``, the lower-right of the
  middle four). References: Xiao et al. 2018, "Dynamical Isometry and a Mean Field Theory of CNNs:
  How to Train 10,000-Layer Vanilla Convolutional Neural Networks" (Algorithm 2).
  """
  def init(key, shape, dtype=jnp.float32):
    if len(shape) < 3:
      raise ValueError(f"delta_orthogonal needs a conv kernel (*window, in, out), got {tuple(shape)}.")
    c_in, c_out = shape[-2], shape[-1]
    if c_in > c_out:
      raise ValueError(f"delta_orthogonal needs in <= out channels, got in={c_in}, out={c_out}.")
    centre = tuple(k // 2 for k in shape[:-2])
    h = gain * _orthogonal_matrix(key, c_in, c_out, dtype)
    return jnp.zeros(shape, dtype).at[centre].set(h)
  return init
