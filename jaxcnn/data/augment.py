"""On-device data augmentation: pure, jit-able ops on NHWC batches (uint8 or float).

Every op has the signature ``op(key, images, **options) -> images`` with the same shape and
dtype, and draws one independent transformation per example. Ops are registered by name, so a
config names its augmentation as a list of specs::

  augment_fn = make_augment(["crop(padding=4)", "flip"])   # the standard CIFAR recipe
  images = jax.jit(augment_fn)(key, images)                # uint8 in, uint8 out

Keeping small datasets on the accelerator as uint8 and augmenting them there means the input
pipeline costs a few fused kernels per step instead of host work.

References: Krizhevsky et al. 2012, "ImageNet Classification with Deep Convolutional Neural
Networks" (random crops, horizontal flips); He et al. 2016, "Deep Residual Learning for Image
Recognition" (4-pixel padding and 32x32 crops on CIFAR); DeVries & Taylor 2017, "Improved
Regularization of Convolutional Neural Networks with Cutout".
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from jaxcnn.registry import Registry

AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]

REGISTRY = Registry("augmentation", factory=False)
register = REGISTRY.register
names = REGISTRY.names

PAD_MODES = ("constant", "reflect", "edge")


def get(spec: str | Callable[..., Any], **kwargs: Any) -> AugmentFn:
  """Resolves an augmentation spec: ``"crop(padding=4)"``, ``"flip"``, or a callable."""
  return REGISTRY.get(spec, **kwargs)


def make_augment(specs: str | Callable[..., Any] | Sequence[str | Callable[..., Any]]) -> AugmentFn:
  """Composes augmentation specs, applied in order, into one ``fn(key, images) -> images``.

  Each op gets its own key (``jax.random.split``); an empty list gives the identity.
  """
  if isinstance(specs, str) or callable(specs):
    specs = [specs]
  ops = [get(s) for s in specs]

  def augment(key: jax.Array, images: jax.Array) -> jax.Array:
    _check_images(images)
    if not ops:
      return images
    for op, k in zip(ops, jax.random.split(key, len(ops))):
      images = op(k, images)
    return images

  return augment


def _check_images(images: jax.Array) -> None:
  if images.ndim != 4:
    raise ValueError(f"Augmentations take NHWC batches of rank 4, got shape {images.shape}.")


def pad_and_crop(images: jax.Array, offsets: jax.Array, *, padding: int,
                 mode: str = "constant") -> jax.Array:
  """Pads every image by ``padding`` pixels per side, then crops the original size back out.

  Args:
    images: ``(N, H, W, C)`` batch.
    offsets: ``(N, 2)`` integer (row, column) of each crop's top-left corner in the padded image,
      in ``[0, 2 * padding]``; ``(padding, padding)`` returns the image unchanged.
    padding: pixels added on each side.
    mode: ``"constant"`` (zeros), ``"reflect"`` (mirror without repeating the edge) or
      ``"edge"`` (repeat the border pixel), as ``jnp.pad``.
  """
  _check_images(images)
  if mode not in PAD_MODES:
    raise ValueError(f"Unknown pad mode {mode!r}; known modes: {', '.join(PAD_MODES)}.")
  if padding < 0:
    raise ValueError(f"padding must be >= 0, got {padding}.")
  n, h, w, c = images.shape
  if offsets.shape != (n, 2):
    raise ValueError(f"offsets must have shape ({n}, 2), got {offsets.shape}.")
  if mode == "reflect" and padding >= min(h, w):
    raise ValueError(f"reflect padding needs padding < image size, got {padding} for {h}x{w}.")
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode=mode)
  zero = jnp.zeros((), offsets.dtype)
  crop_one = lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], zero), (h, w, c))
  return jax.vmap(crop_one)(padded, offsets)


@register(name="crop")
def random_crop(key: jax.Array, images: jax.Array, padding: int = 4,
                mode: str = "constant") -> jax.Array:
  """Random translation: pad by ``padding`` pixels, crop a random window of the original size.

  Every example gets its own offset, uniform over the ``(2 * padding + 1) ** 2`` windows.
  References: He et al. 2016, "Deep Residual Learning for Image Recognition", sec. 4.2.
  """
  _check_images(images)
  offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * padding + 1)
  return pad_and_crop(images, offsets, padding=padding, mode=mode)


@register(name="flip")
def random_flip(key: jax.Array, images: jax.Array, prob: float = 0.5) -> jax.Array:
  """Mirrors each example left-right with probability ``prob``.

  References: Krizhevsky et al. 2012, "ImageNet Classification with Deep Convolutional Neural
  Networks", sec. 4.1.
  """
  _check_images(images)
  flip = jax.random.bernoulli(key, prob, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


@register(name="cutout")
def cutout(key: jax.Array, images: jax.Array, size: int = 8) -> jax.Array:
  """Zeroes a ``size`` x ``size`` square at a uniformly random center in every example.

  The square may extend past the border (then less is cut), as in the paper.
  References: DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks
  with Cutout".
  """
  _check_images(images)
  if size < 0:
    raise ValueError(f"cutout size must be >= 0, got {size}.")
  n, h, w, _ = images.shape
  ky, kx = jax.random.split(key)
  top = jax.random.randint(ky, (n, 1, 1), 0, h) - size // 2
  left = jax.random.randint(kx, (n, 1, 1), 0, w) - size // 2
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
  return jnp.where(inside[..., None], jnp.zeros((), images.dtype), images)
