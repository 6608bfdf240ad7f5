"""A drop-in ``flax.linen.Conv`` with its own weight gradient on CPU.

On CPU, XLA's weight-gradient (``dw``) convolutions and the activation transposes that feed them
were half of a ResNet-20 train step in a profile on one core (27% and 25%).
:func:`conv_general_dilated` is ``lax.conv_general_dilated`` with a ``custom_vjp``: its forward
pass and its input gradient are XLA's own; its weight gradient transposes the activation once
into ``(C, H, W, N)`` and the output gradient into ``(Ho, Wo, N, O)``, so that the ``dw``
convolution is a plain NHWC x HWIO one (batch and channel swapped, strides as kernel dilation,
groups as ``batch_group_count``: the formula of JAX's own transpose rule). Values and both
gradients equal the plain convolution's (tested against ``jax.grad`` of ``flax.linen.Conv``;
bitwise equal on jaxlib 0.10.2).

Measured on jaxlib 0.10.2 (2 shared CPU cores, load 8 to 14, ResNet-20, batch 128, variants
compiled side by side in one process and their steps alternated, ``benchmarks/conv_ab.py``):
custom over plain 0.96x to 1.03x, with XLA's default (YNNPACK) convolutions and with Eigen's
(``xla_cpu_experimental_ynn_fusion_type`` without individual convolutions, reported elsewhere
at 1.43x by itself; 1.04x here in the same A/B). The optimized HLO of XLA's own weight gradient
already has the same two transposes and the same ``b01f_01io->b01f`` convolution, so on this
jaxlib this gradient gains nothing measurable.
The module stays the one place for a backend-specific convolution: a model takes it as its
``conv`` field.

The custom gradient applies to 2-D NHWC convolutions without input dilation when the default
backend is CPU; anywhere else this is XLA's convolution unchanged.

  model = create_model("resnet20", conv=jaxcnn.nn.conv.Conv)   # same parameters as nn.Conv
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

MODES = ("auto", "custom", "xla")


def _pairs(padding: Any, lhs: jax.Array, rhs: jax.Array, strides: Sequence[int],
           rhs_dilation: Sequence[int]) -> tuple[tuple[int, int], ...]:
  """Explicit ``(low, high)`` padding of the spatial dims for a padding spec (string or pairs)."""
  if isinstance(padding, str):
    window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], rhs_dilation)]
    return tuple(lax.padtype_to_pads(lhs.shape[1:3], window, strides, padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _weight_gradient(x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int],
                     strides: Sequence[int], padding: Sequence[tuple[int, int]],
                     rhs_dilation: Sequence[int], groups: int, precision: Any) -> jax.Array:
  """``d loss / d kernel`` of an NHWC x HWIO convolution from its input ``x`` and output
  gradient ``dy``, as one NHWC x HWIO convolution of explicitly transposed operands."""
  kh, kw = kernel_shape[:2]
  lhs = jnp.transpose(x, (3, 1, 2, 0)).astype(dy.dtype)  # (C, H, W, N): C is the "batch"
  rhs = jnp.transpose(dy, (1, 2, 0, 3))  # (Ho, Wo, N, O): the "kernel"
  pads = []
  for axis, (k, s, d, (lo, _)) in enumerate(zip((kh, kw), strides, rhs_dilation, padding)):
    size, out = x.shape[1 + axis], dy.shape[1 + axis]
    pads.append((lo, (out - 1) * s + (k - 1) * d + 1 - size - lo))  # JAX's vjp_rhs padding
  dw = lax.conv_general_dilated(
      lhs, rhs, window_strides=tuple(rhs_dilation), padding=pads, rhs_dilation=tuple(strides),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), batch_group_count=groups,
      precision=precision)  # (C / groups, kh, kw, O)
  return jnp.transpose(dw, (1, 2, 0, 3))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
          padding: tuple[tuple[int, int], ...], rhs_dilation: tuple[int, ...], groups: int,
          precision: Any) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=rhs_dilation,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=groups, precision=precision)


def _conv_fwd(x, kernel, strides, padding, rhs_dilation, groups, precision):
  return _conv(x, kernel, strides, padding, rhs_dilation, groups, precision), (x, kernel)


def _conv_bwd(strides, padding, rhs_dilation, groups, precision, residuals, dy):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: lax.conv_general_dilated(
      x, kernel, strides, padding, rhs_dilation=rhs_dilation,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
      precision=precision), x)
  (dx,) = input_vjp(dy)  # XLA's own input gradient
  dw = _weight_gradient(x, dy, kernel.shape, strides, padding, rhs_dilation, groups, precision)
  return dx, dw.astype(kernel.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _is_nhwc(dimension_numbers: Any, ndim: int) -> bool:
  if ndim != 4:
    return False
  if dimension_numbers is None:
    return False  # lax's default is NCHW
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
  return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: Any, lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None, dimension_numbers: Any = None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision: Any = None, preferred_element_type: Any = None, *,
                         mode: str = "auto") -> jax.Array:
  """``lax.conv_general_dilated`` with the CPU weight gradient of the module docstring.

  Args:
    lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count, precision, preferred_element_type: as
      ``lax.conv_general_dilated``.
    mode: ``"auto"`` (the custom gradient where it applies and the default backend is CPU),
      ``"custom"`` (wherever it applies, any backend) or ``"xla"`` (never).
  """
  if mode not in MODES:
    raise ValueError(f"Unknown conv mode {mode!r}; known: {', '.join(MODES)}.")
  strides = tuple(int(s) for s in window_strides)
  rhs_dil = tuple(int(d) for d in (rhs_dilation or (1,) * len(strides)))
  applies = (mode == "custom" or (mode == "auto" and jax.default_backend() == "cpu"))
  applies = (applies and _is_nhwc(dimension_numbers, lhs.ndim) and batch_group_count == 1
             and all(int(d) == 1 for d in (lhs_dilation or (1, 1)))
             and preferred_element_type is None
             and (not isinstance(padding, str) or padding in ("SAME", "VALID", "SAME_LOWER")))
  if not applies:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  pads = _pairs(padding, lhs, rhs, strides, rhs_dil)
  return _conv(lhs, rhs, strides, pads, rhs_dil, int(feature_group_count), precision)


_CPU_CONV = conv_general_dilated


class Conv(nn.Conv):
  """``flax.linen.Conv`` (same fields, same ``kernel [kh, kw, in, out]`` and ``bias``
  parameters) whose convolution is :func:`conv_general_dilated`: XLA's own forward pass and input
  gradient, and on CPU a weight gradient without XLA's activation transposes.

  ``Conv(..., conv_general_dilated=functools.partial(conv_general_dilated, mode="custom"))``
  forces the custom gradient on any backend (``mode="xla"``: never).
  """

  conv_general_dilated: Any = _CPU_CONV
