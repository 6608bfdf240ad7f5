"""The model registry and helpers shared by the model families."""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn

from jaxcnn.registry import Registry

MODELS = Registry("model", factory=True)


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
  """Registers a model constructor (usually a ``functools.partial`` of a Module class).

  ``resnet50 = register_model(partial(ResNet, stage_sizes=(3, 4, 6, 3)), name="resnet50")``
  """
  if fn is None:
    return functools.partial(register_model, name=name)
  return MODELS.register(fn, name=name)


def create_model(name: str, **overrides: Any) -> nn.Module:
  """Builds a registered model: ``create_model("resnet50", num_classes=10, act="elu")``.

  ``name`` may carry literal arguments (``"resnet20(num_classes=100)"``); ``overrides`` take
  precedence. Unknown names raise a ValueError listing the known models.
  """
  return MODELS.get(name, **overrides)


def list_models(pattern: str = "*") -> list[str]:
  """Registered model names matching a shell-style pattern, e.g. ``list_models("res*")``."""
  return MODELS.names(pattern)
