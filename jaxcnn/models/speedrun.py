"""The CIFAR-10 speed-run network of airbench94: 94% test accuracy in about ten epochs.

A frozen 2x2 whitening convolution (3 -> 24 channels: the eigenvectors of the covariance of the
training set's 2x2 patches, scaled by ``1 / sqrt(eigenvalue + eps)``, and their negatives), GELU,
then three blocks of ``[conv3x3, maxpool2, BN, GELU, conv3x3, BN, GELU]`` with widths
64/256/256, a 3x3 max pool, a bias-free linear classifier and logits scaled by 1/9. BatchNorm has
no learnable scale (bias only, momentum 0.6 in flax's convention, epsilon 1e-12); every 3x3
convolution starts from PyTorch's default uniform init with its first ``in_channels`` filters set
to the identity (Dirac). Evaluation averages the logits over test-time augmentations (mirror, and
mirror plus 1-pixel translations).

The whitening filters are a statistic of the training data, like BatchNorm's running averages, so
they live in the ``batch_stats`` collection, where no optimizer touches them (frozen, as in the
paper). The first training step fits them to its own batch unless :func:`set_whitening` has set
them already (airbench94 fits them to the first 5000 training images). The BatchNorm biases are
``sqrt(bias_lr_scale) * theta`` with ``theta`` the parameter: under SGD this is airbench's 64x
learning rate on those biases, exactly, without a second parameter group in the optimizer.

The training recipe (label smoothing 0.2, flip and 2-pixel translation, batch 1024, Nesterov SGD
with a warmup and linear decay, 9.9 epochs) is ``experiments/configs/cifar10_speedrun.py``.

References: Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (airbench94);
Page 2018, "How to train your ResNet" (the lineage of this network).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models._common import CIFAR_INPUT, Published, check_nhwc, register_model
from jaxcnn.nn import initializers
from jaxcnn.nn.layers import OpsModule, choice

TTA_LEVELS = ("none", "flip", "flip_translate")

# PyTorch's default convolution and linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_init = initializers.kaiming_uniform(nonlinearity="leaky_relu",
                                                  negative_slope=math.sqrt(5.0))


def partial_dirac(init: Any) -> Any:
  """``init`` with the first ``min(in, out)`` output filters of a ``[kh, kw, in, out]`` kernel set
  to the identity (PyTorch's ``dirac_(weight[:in_channels])``)."""

  def dirac_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    kernel = init(key, shape, dtype)
    kh, kw, cin, cout = shape
    d = min(cin, cout)
    ident = jnp.zeros((kh, kw, cin, d), dtype).at[kh // 2, kw // 2, :d].set(jnp.eye(d, dtype=dtype))
    return kernel.at[..., :d].set(ident)

  return dirac_init


def patches(images: jax.Array, patch_size: int) -> jax.Array:
  """Every ``patch_size`` x ``patch_size`` window (stride 1, no padding) of NHWC ``images`` as a
  row ``(kh, kw, c)``-flattened, the order of a flax kernel ``[kh, kw, c, out]``."""
  n, h, w, c = images.shape
  p = int(patch_size)
  if p < 1 or p > min(h, w):
    raise ValueError(f"patch_size must be in 1..{min(h, w)}, got {patch_size}.")
  windows = [images[:, i:h - p + 1 + i, j:w - p + 1 + j, :] for i in range(p) for j in range(p)]
  return jnp.stack(windows, axis=3).reshape(-1, p * p * c)


def whitening_kernel(images: jax.Array, *, patch_size: int = 2, eps: float = 5e-4) -> jax.Array:
  """The whitening filters ``[p, p, C, 2 * p * p * C]`` of airbench94 for (preprocessed) images.

  With ``S = P^T P / n`` the (uncentered) covariance of the ``p x p`` patches and
  ``S = V diag(lambda) V^T``, filter ``k`` (eigenvalues descending) is ``V[:, k] / sqrt(lambda_k +
  eps)``, and filter ``p * p * C + k`` its negative: the responses of the first half have
  covariance ``diag(lambda / (lambda + eps))``, about the identity.
  """
  check_nhwc(images, "whitening_kernel")
  c = images.shape[-1]
  x = patches(jnp.asarray(images, jnp.float32), patch_size)
  cov = x.T @ x / x.shape[0]
  eigenvalues, eigenvectors = jnp.linalg.eigh(cov)
  eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]  # descending
  filters = eigenvectors / jnp.sqrt(eigenvalues + eps)  # column k is filter k
  filters = filters.reshape(patch_size, patch_size, c, -1)
  return jnp.concatenate([filters, -filters], axis=-1)


def set_whitening(variables: Any, images: jax.Array, *, patch_size: int = 2,
                  eps: float = 5e-4) -> dict[str, Any]:
  """``variables`` of a :class:`SpeedrunNet` with the whitening fitted to ``images`` (the model's
  inputs, i.e. after preprocessing) and marked as set, so training does not refit it."""
  variables = jax.tree.map(lambda a: a, dict(variables))  # a copy
  stats = dict(variables["batch_stats"])
  whiten = dict(stats["whiten"])
  p, c = int(patch_size), images.shape[-1]
  shape = (p, p, c, 2 * p * p * c)
  if shape != tuple(whiten["kernel"].shape):
    raise ValueError(f"Whitening of shape {shape} for a model whose whitening is "
                     f"{tuple(whiten['kernel'].shape)}: patch_size or channels differ.")
  kernel = whitening_kernel(images, patch_size=patch_size, eps=eps)
  whiten["kernel"] = kernel.astype(whiten["kernel"].dtype)
  whiten["fitted"] = jnp.ones_like(whiten["fitted"])
  stats["whiten"] = whiten
  variables["batch_stats"] = stats
  return variables


class Whitening(nn.Module):
  """The frozen ``patch_size`` x ``patch_size`` whitening convolution (VALID) with a learnable bias.

  Attributes:
    patch_size: side of the patches (airbench94: 2).
    eps: added to the eigenvalues before the inverse square root.
  """

  patch_size: int = 2
  eps: float = 5e-4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    p, c = int(self.patch_size), x.shape[-1]
    features = 2 * p * p * c
    kernel = self.variable("batch_stats", "kernel", jnp.zeros, (p, p, c, features), jnp.float32)
    fitted = self.variable("batch_stats", "fitted", lambda: jnp.zeros((), jnp.bool_))
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    if train and not self.is_initializing():
      kernel.value = jax.lax.cond(
          fitted.value, lambda: kernel.value,
          lambda: whitening_kernel(jax.lax.stop_gradient(x), patch_size=p,
                                   eps=self.eps).astype(kernel.value.dtype))
      fitted.value = jnp.ones((), jnp.bool_)
    w = jax.lax.stop_gradient(kernel.value).astype(x.dtype)
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(x.dtype)


class ConvGroup(OpsModule):
  """``conv3x3, maxpool2, BN, act, conv3x3, BN, act``; each BN followed by its scaled bias."""

  features: int = 64
  bias_lr_scale: float = 64.0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    scale = math.sqrt(self.bias_lr_scale)
    for i in range(2):
      x = ops.conv(self.features, (3, 3), padding="SAME", use_bias=False, name=f"conv{i}")(x)
      if i == 0:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      x = ops.normalize(x, train=train, name=f"norm{i}")
      theta = self.param(f"norm{i}_bias", nn.initializers.zeros, (self.features,), jnp.float32)
      x = ops.activate(x + (scale * theta).astype(x.dtype))
    return x


class SpeedrunNet(OpsModule):
  """airbench94's network (module docstring).

  Attributes:
    num_classes: outputs of the classifier.
    widths: channels of the three blocks.
    whiten_patch_size, whiten_eps: the whitening convolution's patch side and eigenvalue offset.
    bias_lr_scale: the BatchNorm biases' learning-rate multiplier under SGD (airbench94: 64).
    logit_scale: multiplies the logits (airbench94: 1/9).
    tta: test-time augmentation at ``train=False``: ``"none"``, ``"flip"`` (mean of the logits of
      the image and its mirror) or ``"flip_translate"`` (half that, plus a quarter each of the same
      for the image shifted by one pixel up-left and down-right, reflect-padded; airbench94's
      level 2).
    act, norm, conv, kernel_init, dtype: the swappable choices (GELU, scale-free BatchNorm,
      PyTorch's default init with the Dirac identity on the 3x3 convolutions).
  """

  num_classes: int = 10
  widths: Sequence[int] = (64, 256, 256)
  whiten_patch_size: int = 2
  whiten_eps: float = 5e-4
  bias_lr_scale: float = 64.0
  logit_scale: float = 1.0 / 9.0
  tta: str = "flip_translate"
  act: Any = choice("gelu")
  norm: Any = choice(functools.partial(nn.BatchNorm, use_scale=False, use_bias=False,
                                       momentum=0.6, epsilon=1e-12))
  kernel_init: Any = choice(torch_default_init)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    check_nhwc(x, "SpeedrunNet")
    if self.tta not in TTA_LEVELS:
      raise ValueError(f"Unknown tta {self.tta!r}; known: {', '.join(TTA_LEVELS)}.")
    ops = self.get_ops()
    conv_ops = ops.replace(conv=functools.partial(ops.conv, kernel_init=partial_dirac(
        ops.kernel_init)))
    whiten = Whitening(self.whiten_patch_size, self.whiten_eps, name="whiten")
    blocks = [ConvGroup(int(f), self.bias_lr_scale, ops=conv_ops, name=f"block{i}")
              for i, f in enumerate(self.widths)]
    head = ops.dense(self.num_classes, use_bias=False, kernel_init=ops.kernel_init, name="head")

    def net(images: jax.Array) -> jax.Array:
      y = ops.activate(whiten(images, train=train))
      for block in blocks:
        y = block(y, train=train)
      y = y.max(axis=(1, 2))  # airbench's MaxPool2d(3) of the 3x3 map that CIFAR leaves
      return head(y) * self.logit_scale

    if train or self.tta == "none":
      return net(x)
    n = x.shape[0]
    views = [x, x[:, :, ::-1]]
    if self.tta == "flip_translate":
      padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
      h, w = x.shape[1:3]
      for shifted in (padded[:, :h, :w], padded[:, 2:, 2:]):
        views += [shifted, shifted[:, :, ::-1]]
    logits = net(jnp.concatenate(views)).reshape(len(views), n, -1)
    if self.tta == "flip":
      return logits.mean(0)
    return 0.5 * logits[:2].mean(0) + 0.5 * logits[2:].mean(0)


airbench94 = register_model(
    SpeedrunNet, name="airbench94", family="speedrun", input_size=CIFAR_INPUT,
    published=Published(source="Jordan 2024, airbench94 (94.01% CIFAR-10 test accuracy in 3.29 s "
                               "on one A100)"))
