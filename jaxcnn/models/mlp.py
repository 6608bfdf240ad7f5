"""Fully connected networks: one configurable MLP for the studies' dense networks.

:class:`MLP` flattens its input (images or vectors), applies ``Dense -> norm -> act`` per hidden
width and a linear classifier. The registered variants reproduce the studies' networks:

* ``deep_mlp(depth=50, width=100)``: the deep ReLU MLP of the batch-normalization study;
  ``norm="batch"`` puts BatchNorm after every hidden Dense, which then has no bias. Every kernel,
  the head's too, from ``kernel_init``.
* ``mlp``: hidden widths ``(32, 32)``, every kernel from ``kernel_init`` (the initialization
  study's symmetry-breaking MLP).
* ``softmax_regression``: no hidden layer (``widths=()``), a ``lecun_normal`` head named
  ``"head"``; with ``widths=(h, ...)`` it is the preprocessing study's classifier (He-normal
  hidden kernels).

References: Rosenblatt 1958 / Rumelhart, Hinton & Williams 1986 (the multilayer perceptron);
Ioffe & Szegedy 2015 (BatchNorm after the affine map, before the nonlinearity).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax

from jaxcnn.models._common import DIGITS_INPUT, register_model
from jaxcnn.nn import initializers
from jaxcnn.nn.layers import Identity, OpsModule, choice

MNIST_INPUT = (28, 28, 1)


class MLP(OpsModule):
  """Flatten, ``Dense -> norm -> act`` per hidden width, a Dense classifier.

  With a normalization other than ``"none"`` the hidden Dense layers have no bias (the
  normalization's offset takes its place). Parameter names follow flax's defaults (``Dense_0``,
  ``BatchNorm_0``, ``Activation_0`` for learnable activations, ...), the head is ``Dense_{n}``
  unless ``head_name`` is given.

  Attributes:
    num_classes: outputs of the classifier.
    widths: units per hidden layer; ``()`` is softmax regression.
    head_init: initializer spec of the head's kernel (None: ``kernel_init``).
    head_name: the head's module name (None: flax's automatic ``Dense_{len(widths)}``).
    act, norm, kernel_init, dtype: the swappable choices (:class:`~jaxcnn.nn.layers.OpsModule`);
      ``norm`` defaults to ``"none"``.
  """

  num_classes: int = 10
  widths: Sequence[int] = (32, 32)
  head_init: Any = None
  head_name: str | None = None
  norm: Any = choice("none")

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    ops = self.get_ops()
    x = x.reshape(x.shape[0], -1)
    use_bias = ops.norm is Identity
    for width in self.widths:
      x = ops.dense(int(width), use_bias=use_bias)(x)
      x = ops.normalize(x, train=train)
      x = ops.activate(x)
    head = {} if self.head_init is None else {"kernel_init": initializers.get(self.head_init)}
    return ops.dense(self.num_classes, name=self.head_name, **head)(x)


@register_model(name="deep_mlp", input_size=MNIST_INPUT)
def deep_mlp(depth: int = 50, width: int = 100, **kwargs: Any) -> MLP:
  """``depth`` hidden layers of ``width`` units (``norm="batch"``: with BatchNorm)."""
  if int(depth) < 0 or int(width) < 1:
    raise ValueError(f"deep_mlp needs depth >= 0 and width >= 1, got {depth} and {width}.")
  return MLP(widths=(int(width),) * int(depth), **kwargs)


mlp = register_model(functools.partial(MLP, widths=(32, 32)), name="mlp",
                     input_size=DIGITS_INPUT)
softmax_regression = register_model(
    functools.partial(MLP, widths=(), head_init="lecun_normal", head_name="head"),
    name="softmax_regression", input_size=DIGITS_INPUT)
