"""AlexNet, single-tower form.

The 2012 network was split over two GPUs; the single-tower form used by torchvision (64, 192, 384,
256, 256 filters; Krizhevsky 2014, "One weird trick for parallelizing convolutional neural
networks") has 61,100,840 parameters for 1000 classes. Local response normalization is left out,
as in torchvision; ``norm`` adds a normalization after every convolution if wanted.

References: Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional
Neural Networks"; Krizhevsky 2014, "One weird trick for parallelizing convolutional neural
networks".
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models._common import Published, check_nhwc, register_model
from jaxcnn.nn.layers import ConvBNAct, Ops, OpsModule, choice

def adaptive_avg_pool(x: jax.Array, output_size: Sequence[int]) -> jax.Array:
  """Averages NHWC ``x`` over a grid of ``output_size`` bins, as PyTorch's AdaptiveAvgPool2d.

  Bin ``i`` of an axis of length ``n`` covers ``[floor(i n / m), ceil((i + 1) n / m))``; maps
  smaller than the output repeat their pixels, so the classifier's input size is fixed for any image size.
  """
  if x.ndim != 4:
    raise ValueError(f"adaptive_avg_pool expects NHWC input, got shape {x.shape}.")
  (h, w), (oh, ow) = x.shape[1:3], tuple(output_size)
  if (h, w) == (oh, ow):
    return x

  def bins(n, m):
    return [(i * n // m, math.ceil((i + 1) * n / m)) for i in range(m)]

  rows = [x[:, a:b].mean(axis=1) for a, b in bins(h, oh)]  # each (N, W, C)
  rows = jnp.stack(rows, axis=1)  # (N, oh, W, C)
  cols = [rows[:, :, a:b].mean(axis=2) for a, b in bins(w, ow)]
  return jnp.stack(cols, axis=2)


def classifier(x: jax.Array, ops: Ops, *, hidden: int, num_classes: int, dropout_rate: float,
               train: bool, dropout_after: bool = False) -> jax.Array:
  """The AlexNet/VGG head, inside a compact method: flatten, (dropout, dense, act) twice, dense.

  ``dropout_after=True`` drops after each hidden layer instead (dense, act, dropout: VGG's
  order in the original Caffe model and torchvision; AlexNet's torchvision order is the default).
  """
  x = x.reshape(x.shape[0], -1)
  for i in range(2):
    if not dropout_after:
      x = nn.Dropout(dropout_rate, deterministic=not train)(x)
    x = ops.activate(ops.dense(hidden, name=f"fc{i + 1}")(x))
    if dropout_after:
      x = nn.Dropout(dropout_rate, deterministic=not train)(x)
  return ops.dense(num_classes, name="fc3")(x)


class AlexNet(OpsModule):
  """AlexNet (single tower): five convolutions, three dense layers, dropout 0.5.

  ``hidden_features`` is the width of the two hidden dense layers (4096 published). NHWC input of
  at least 63x63: features are average-pooled to the published 6x6 before the classifier.
  ``norm="none"`` by default (the published network); convolutions always carry a bias.
  References: Krizhevsky et al. 2012; Krizhevsky 2014 (single tower).
  """

  num_classes: int = 1000
  dropout_rate: float = 0.5
  hidden_features: int = 4096
  norm: Any = choice("none")
  padding: Any = choice("torch")

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "AlexNet")
    ops = self.get_ops()
    # (features, kernel, stride, padding, max-pool after)
    spec = [(64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
            (256, 3, 1, 1, False), (256, 3, 1, 1, True)]
    for i, (features, k, s, p, pool) in enumerate(spec):
      # conv1's padding 2 is the network's own; the others are same-style (k // 2, stride 1).
      padding = ((p, p), (p, p)) if i == 0 else None
      x = ConvBNAct(features, (k, k), (s, s), padding=padding, use_bias=True, ops=ops,
                    name=f"conv{i + 1}")(x, train=train)
      if pool:
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = adaptive_avg_pool(x, (6, 6))
    return classifier(x, ops, hidden=self.hidden_features, num_classes=self.num_classes,
                      dropout_rate=self.dropout_rate, train=train)


alexnet = register_model(
    AlexNet, name="alexnet",
    published=Published(params=61_100_840, macs=0.71e9,
                        source="torchvision alexnet (single tower, Krizhevsky 2014)"))
