"""The model registry with each variant's metadata, and helpers shared by the model families.

A family module registers each variant with its metadata (timm's ``register_model`` and
``default_cfgs`` in one call)::

  register_model(partial(ResNet, stage_sizes=(2, 2, 2, 2)), name="resnet18",
                 published=Published(params=11_689_512, macs=1.81e9, source="torchvision"))

and ``model_info("resnet18")`` reads it back: family, default input size, default number of
classes and the published figures.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax

from jaxcnn.nn.layers import Ops
from jaxcnn.registry import Registry, parse_spec

MODELS = Registry("model", factory=True)

IMAGENET_INPUT = (224, 224, 3)
CIFAR_INPUT = (32, 32, 3)
DIGITS_INPUT = (8, 8, 1)  # the offline default data set (jaxcnn.data, "digits")


@dataclasses.dataclass(frozen=True)
class Published:
  """Figures published for a model variant, and how to build the configuration they describe.

  Attributes:
    source: where the figures come from.
    params: trainable parameters (the ``"params"`` collection), or None.
    params_tol: half a unit of the last published digit (0.5: an exact count).
    macs: multiply-adds per image at the variant's default input size, or None.
    paper_params: the paper's (rounded) count where ``params`` comes from elsewhere.
    overrides: ``create_model`` overrides giving the published configuration.
  """

  source: str
  params: float | None = None
  params_tol: float = 0.5
  macs: float | None = None
  paper_params: float | None = None
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """A registered model's metadata (:func:`model_info`).

  Attributes:
    name: the registered name.
    family: e.g. ``"resnet"`` (by default the name of the module that registers it).
    input_size: the default ``(height, width, channels)`` of one input image.
    num_classes: the default number of classes of the registered constructor.
    published: the published figures, or None.
  """

  name: str
  family: str
  input_size: tuple[int, int, int]
  num_classes: int | None
  published: Published | None


def _module_name(fn: Callable[..., Any]) -> str:
  while isinstance(fn, functools.partial):
    fn = fn.func
  return getattr(fn, "__module__", "").rsplit(".", 1)[-1]


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None,
                   family: str | None = None, input_size: tuple[int, int, int] = IMAGENET_INPUT,
                   published: Published | None = None):
  """Registers a model constructor (usually a ``functools.partial`` of a Module) with metadata.

  Args:
    fn: the constructor; without it, returns a decorator.
    name: registered name (default ``fn.__name__``).
    family: the model's family (default: the last component of ``fn``'s module name).
    input_size: default ``(height, width, channels)`` of an input image.
    published: published figures of this variant.
  """
  if fn is None:
    return functools.partial(register_model, name=name, family=family, input_size=input_size,
                             published=published)
  if len(tuple(input_size)) != 3:
    raise ValueError(f"input_size must be (height, width, channels), got {input_size}.")
  metadata = {"family": family or _module_name(fn),
              "input_size": tuple(int(d) for d in input_size), "published": published}
  return MODELS.register(fn, name=name, metadata=metadata)


def create_model(name: str, **overrides: Any) -> nn.Module:
  """Builds a registered model: ``create_model("resnet50", num_classes=10, act="elu")``.

  ``name`` may carry literal arguments (``"resnet20(num_classes=100)"``); ``overrides`` take
  precedence. Unknown names raise a ValueError listing the known models.
  """
  return MODELS.get(name, **overrides)


def list_models(pattern: str = "*") -> list[str]:
  """Registered model names matching a shell-style pattern, e.g. ``list_models("res*")``."""
  return MODELS.names(pattern)


def model_info(name: str) -> ModelInfo:
  """The metadata of a registered model; ``name`` may be a spec (``"resnet20(num_classes=100)"``).

  Unknown names raise a ValueError listing the known models.
  """
  key = parse_spec(name)[0] if isinstance(name, str) else name
  meta = MODELS.metadata(key)
  model = create_model(name)
  return ModelInfo(name=key, family=meta.get("family", ""),
                   input_size=tuple(meta.get("input_size", IMAGENET_INPUT)),
                   num_classes=getattr(model, "num_classes", None),
                   published=meta.get("published"))


def check_nhwc(x: jax.Array, model: str) -> None:
  """Raises a ValueError unless ``x`` is a 4-d (NHWC) batch."""
  if x.ndim != 4:
    raise ValueError(f"{model} expects NHWC images, got shape {x.shape}.")


def pooled_head(x: jax.Array, ops: Ops, num_classes: int, *, dropout_rate: float = 0.0,
                train: bool = False, name: str = "head", **dense_kwargs: Any) -> jax.Array:
  """Global average pool, dropout (if any), dense classifier; call inside a compact method."""
  x = x.mean(axis=(1, 2))
  if dropout_rate:
    x = nn.Dropout(dropout_rate, deterministic=not train)(x)
  return ops.dense(num_classes, name=name, **dense_kwargs)(x)
