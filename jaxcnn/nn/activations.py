"""Activation functions: pure functions, learnable modules, and a registry.

``get("elu(alpha=0.5)")`` returns a callable; ``get(jax.nn.silu)`` returns it unchanged.
Models hold an activation spec and apply it through :class:`Activation`, which builds learnable
activations (PReLU, Maxout, ...) as submodules and calls plain functions directly, so every
nonlinearity in a network is a module that diagnostics can intercept.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.registry import Registry

REGISTRY = Registry("activation", factory=False)
register = REGISTRY.register
names = REGISTRY.names


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


@register
def identity(x: jax.Array) -> jax.Array:
  """The linear activation f(x) = x."""
  return x


@register
def relu(x: jax.Array) -> jax.Array:
  """max(0, x). References: Nair & Hinton 2010; Krizhevsky et al. 2012."""
  return jnp.maximum(x, 0)


@register
def sigmoid(x: jax.Array) -> jax.Array:
  """1 / (1 + exp(-x))."""
  return jax.nn.sigmoid(x)
