"""The convolution of every model: ``flax.linen.Conv`` with its own gradients on CPU.

:func:`conv_general_dilated` is ``lax.conv_general_dilated`` with a ``custom_vjp`` on CPU. Its
forward pass is XLA's own. Both gradients are written as plain NHWC x HWIO convolutions of
explicitly materialised operands (the formulas of JAX's own transpose rules):

* the weight gradient transposes the activation once into ``(C, H, W, N)`` and the output
  gradient into ``(Ho, Wo, N, O)`` (batch and channel swapped, strides as kernel dilation,
  groups as ``batch_group_count``);
* the input gradient convolves the stride-dilated output gradient with the spatially flipped
  kernel whose in and out channels are swapped within each group.

Why: XLA's transpose rules leave those transposes to the convolutions' dimension labels
(``f01b_i01o->01bf``, ``b01f_01oi->b01f``). At the top level of a program XLA:CPU rewrites such
convolutions into its library kernels' form, but inside a loop body (``lax.scan``, ``lax.map``,
``fori_loop``) it does not, and runs them as generic loops: a ResNet-20 train step scanned over
3 steps took 22x the time of a Python loop of the same steps, and 0.85x with this convolution
(``benchmarks/scan_steps.py``, BENCHMARKS.md). At the top level the two compile to the same
kernels (the step speed is equal within the noise of the shared machine).

Values and gradients equal ``flax.linen.Conv``'s (``tests/nn/test_conv.py``), and the module has
its parameters (``kernel [kh, kw, in, out]``, ``bias``) and class name, so parameter trees and
checkpoints are unchanged. It is the default ``conv`` of every model (:class:`jaxcnn.nn.layers.Ops`);
``create_model(name, conv=flax.linen.Conv)`` gives XLA's gradients.

The custom gradients apply to 2-D NHWC convolutions without input dilation when the default
backend is CPU; anywhere else (GPU, TPU) this is XLA's convolution unchanged.
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


def _input_gradient(dy: jax.Array, kernel: jax.Array, x_shape: Sequence[int],
                    strides: Sequence[int], padding: Sequence[tuple[int, int]],
                    rhs_dilation: Sequence[int], groups: int, precision: Any) -> jax.Array:
  """``d loss / d x`` as one NHWC x HWIO convolution of ``dy`` (dilated by the strides) with the
  spatially flipped kernel, its in and out channels swapped within each group and materialised.

  XLA's own transpose rule leaves the swap to the convolution's dimension labels
  (``b01f_01oi->b01f``); inside a loop body (``lax.scan``, ``lax.map``) XLA:CPU does not bring
  such a convolution to its library kernels' form and runs a generic loop instead."""
  kh, kw, cin_g, cout = kernel.shape
  w = kernel[::-1, ::-1].reshape(kh, kw, cin_g, groups, cout // groups)
  w = jnp.transpose(w, (0, 1, 4, 3, 2)).reshape(kh, kw, cout // groups, groups * cin_g)
  pads = []
  for axis, (k, s, d, (lo, _)) in enumerate(zip((kh, kw), strides, rhs_dilation, padding)):
    size, out = x_shape[1 + axis], dy.shape[1 + axis]
    window = (k - 1) * d + 1
    before = window - 1 - lo
    pads.append((before, size + window - 1 - ((out - 1) * s + 1) - before))  # JAX's vjp_lhs
  return lax.conv_general_dilated(
      dy, w, window_strides=(1, 1), padding=pads, lhs_dilation=tuple(strides),
      rhs_dilation=tuple(rhs_dilation), dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=groups, precision=precision)


def _conv_bwd(strides, padding, rhs_dilation, groups, precision, residuals, dy):
  x, kernel = residuals
  dx = _input_gradient(dy, kernel.astype(dy.dtype), x.shape, strides, padding, rhs_dilation,
                       groups, precision).astype(x.dtype)
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
