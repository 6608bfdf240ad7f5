"""Weight initializers: factories returning ``init(key, shape, dtype)`` callables (Flax ``kernel_init``).

Kernel layouts follow Flax: Dense ``(in, out)``, Conv ``(kh, kw, in, out)``. Fan-in of a conv
kernel is ``kh * kw * in``; fan-out is ``kh * kw * out``.
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
  if callable(spec) and not isinstance(spec, str) and not kwargs:
    return spec
  return REGISTRY.get(spec, **kwargs)


def fans(shape: Sequence[int]) -> tuple[int, int]:
  """(fan_in, fan_out) of a Dense ``(in, out)`` or Conv ``(*window, in, out)`` kernel."""
  if len(shape) < 2:
    raise ValueError(f"fans needs a kernel of rank >= 2, got shape {tuple(shape)}.")
  receptive = math.prod(shape[:-2])
  return shape[-2] * receptive, shape[-1] * receptive


@register
def kaiming_normal(nonlinearity: str = "relu", negative_slope: float = 0.01,
                   mode: str = "fan_in") -> Initializer:
  """N(0, gain^2 / fan) with gain sqrt(2) for ReLU. References: He et al. 2015."""
  gain = math.sqrt(2.0 / (1 + negative_slope**2)) if nonlinearity == "leaky_relu" else (
      math.sqrt(2.0) if nonlinearity == "relu" else 1.0)

  def init(key, shape, dtype=jnp.float32):
    fan_in, fan_out = fans(shape)
    std = gain / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    return std * jax.random.normal(key, shape, dtype)

  return init
