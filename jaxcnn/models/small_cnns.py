"""Small plain CNNs of the studies: no normalization by default, so the nonlinearity and the
initialization alone decide how signals and gradients flow.

* :class:`ActCNN` (``act_cnn``): conv-act-pool stages, one hidden dense layer, a linear
  classifier; ``features=(16, 32), hidden=64`` on 28x28 inputs is a four-layer network (two
  convolutions, two dense layers), the depth of Krizhevsky et al.'s Figure 1 network (the
  activation-function study).
* :class:`PlainCNN` (``plain_cnn``): the layer layout of a CIFAR ResNet (``6n + 2`` weight
  layers) without shortcuts or normalization (the initialization study).

References: Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep
Convolutional Neural Networks" (Figure 1); He et al. 2015, "Deep Residual Learning for Image
Recognition" (Sec. 4.2, the plain baselines of Fig. 6).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax

from jaxcnn.models._common import CIFAR_INPUT, check_nhwc, register_model
from jaxcnn.nn import initializers
from jaxcnn.nn.layers import Identity, OpsModule, choice

MNIST_INPUT = (28, 28, 1)


class ActCNN(OpsModule):
  """Conv-(norm)-act-pool stages, one hidden dense layer, a linear classifier named ``"head"``.

  Convolutions (``kernel_size`` square, ``SAME``) and the hidden dense layer have biases (zero
  init) unless normalized; 2x2 max pooling follows each stage while the feature map is at least
  2 pixels wide. Every nonlinearity is an ``Activation`` module, so learnable ones (PReLU,
  Maxout) get their own parameters. The head's kernel is ``lecun_normal``.

  Attributes:
    num_classes: outputs of the classifier.
    features: channels of each convolution stage.
    hidden: units of the hidden dense layer.
    kernel_size: side of every convolution kernel.
    act, norm, kernel_init, conv, dtype: the swappable choices; ``norm`` defaults to ``"none"``.
  """

  num_classes: int = 10
  features: Sequence[int] = (16, 32)
  hidden: int = 64
  kernel_size: int = 5
  norm: Any = choice("none")

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    check_nhwc(x, "ActCNN")
    ops = self.get_ops()
    use_bias = ops.norm is Identity
    k = int(self.kernel_size)
    for f in self.features:
      x = ops.conv(int(f), (k, k), use_bias=use_bias)(x)
      x = ops.activate(ops.normalize(x, train=train))
      if min(x.shape[1:3]) >= 2:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = ops.activate(ops.normalize(ops.dense(int(self.hidden), use_bias=use_bias)(x),
                                   train=train))
    return ops.dense(self.num_classes, kernel_init=initializers.get("lecun_normal"),
                     name="head")(x)


class PlainCNN(OpsModule):
  """A 3x3 stem convolution, ``len(stage_sizes)`` stages of ``2 * stage_sizes[i]`` 3x3
  convolutions with ``num_filters * 2**i`` filters (the first of each later stage has stride 2;
  padding 1), every convolution followed by (``norm`` and) ``act``; global average pooling and a
  Dense classifier. Every layer has a bias (zero init) unless normalized; every kernel, the
  head's too, from ``kernel_init``.

  Attributes:
    stage_sizes: blocks (pairs of convolutions) per stage; ``(n, n, n)`` has ``6n + 2`` weight
      layers.
    num_filters: channels of the stem and the first stage.
    num_classes: outputs of the classifier.
    act, norm, kernel_init, conv, dtype: the swappable choices; ``norm`` defaults to ``"none"``.
  """

  stage_sizes: Sequence[int] = (3, 3, 3)
  num_filters: int = 16
  num_classes: int = 10
  norm: Any = choice("none")
  padding: Any = choice("torch")

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    check_nhwc(x, "PlainCNN")
    ops = self.get_ops()
    use_bias = ops.norm is Identity

    def conv_act(x, features, stride):
      x = ops.conv(features, (3, 3), strides=(stride, stride), padding=ops.pad((3, 3)),
                   use_bias=use_bias)(x)
      return ops.activate(ops.normalize(x, train=train))

    x = conv_act(x, self.num_filters, 1)
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(2 * int(num_blocks)):
        x = conv_act(x, self.num_filters * 2**i, 2 if i > 0 and j == 0 else 1)
    return ops.dense(self.num_classes)(x.mean(axis=(1, 2)))


act_cnn = register_model(functools.partial(ActCNN), name="act_cnn", input_size=MNIST_INPUT)
plain_cnn = register_model(functools.partial(PlainCNN, stage_sizes=(3, 3, 3)), name="plain_cnn",
                           input_size=CIFAR_INPUT)
