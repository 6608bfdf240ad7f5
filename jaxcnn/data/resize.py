"""Resizing in-memory images: one resolution per compiled program.

EfficientNet's compound scaling changes the input resolution with the network (Tan & Le 2019,
section 3.3), and an :class:`~jaxcnn.data.sources.InMemory` source holds its images at one fixed
size. Since each resolution is a separate compiled program anyway, the images are resized once,
on the host side of the source, before the source is built::

  splits = resize.resize_splits(sources.subsets("digits", {"train": 1200, "val": 300}), 16)
  source = sources.InMemory(splits)

:func:`resize` is bilinear and antialiased (a triangle filter widened by the scale factor when
shrinking, as PIL's ``Image.resize(..., BILINEAR)``), with half-pixel sample centres.

References: Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks"; ``jax.image.resize``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Size = int | Sequence[int]


def _hw(size: Size) -> tuple[int, int]:
  hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
  if len(hw) != 2 or any(int(s) != s or int(s) < 1 for s in hw):
    raise ValueError(f"size must be a positive int or (height, width), got {size!r}.")
  return int(hw[0]), int(hw[1])


def resize(images: Any, size: Size, *, method: str = "linear", antialias: bool = True
           ) -> jax.Array:
  """Images resized to ``size``: ``(N, H, W, C)`` or ``(N, H, W)`` in, float32 out.

  Values keep their range (uint8 in gives floats in [0, 255], not rescaled).

  Args:
    images: uint8 or float images, NHWC or NHW.
    size: the output ``(height, width)``, or one int for a square.
    method: a ``jax.image.resize`` method (default bilinear, ``"linear"``).
    antialias: widen the filter when shrinking (no effect when enlarging).
  """
  images = jnp.asarray(images)
  if images.ndim not in (3, 4):
    raise ValueError(f"resize needs images (N, H, W, C) or (N, H, W), got shape {images.shape}.")
  if not (jnp.issubdtype(images.dtype, jnp.integer) or jnp.issubdtype(images.dtype, jnp.floating)):
    raise ValueError(f"resize needs integer or float images, got dtype {images.dtype}.")
  h, w = _hw(size)
  shape = (images.shape[0], h, w) + images.shape[3:]
  return jax.image.resize(images.astype(jnp.float32), shape, method=method, antialias=antialias)


def resize_uint8(images: Any, size: Size, *, batch_size: int = 1024) -> np.ndarray:
  """:func:`resize` rounded and clipped back to uint8 on the host (for an ``InMemory`` source).

  Works through the images ``batch_size`` at a time so that large sets fit in memory.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(f"resize_uint8 needs uint8 images, got {images.dtype}.")
  h, w = _hw(size)
  if images.ndim >= 3 and images.shape[1:3] == (h, w):
    return images
  fn = jax.jit(lambda x: jnp.clip(jnp.round(resize(x, (h, w))), 0, 255).astype(jnp.uint8))
  parts = [np.asarray(fn(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
  return np.concatenate(parts) if parts else images.reshape((0, h, w) + images.shape[3:])


def resize_splits(splits: Mapping[str, Mapping[str, Any]], size: Size
                  ) -> dict[str, dict[str, np.ndarray]]:
  """Every split's ``"image"`` resized to ``size`` (uint8, :func:`resize_uint8`); other fields
  (``"label"``) are passed through."""
  out = {}
  for name, split in splits.items():
    if "image" not in split:
      raise ValueError(f"Split {name!r} has no 'image' field (fields: {sorted(split)}).")
    out[name] = dict(split, image=resize_uint8(split["image"], size))
  return out
