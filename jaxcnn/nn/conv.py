"""The convolution of every model: ``flax.linen.Conv`` with its own gradients on CPU.

:func:`conv_general_dilated` is ``lax.conv_general_dilated`` with a ``custom_jvp`` on CPU: its
forward pass is XLA's own, and its tangent ``conv(dx, w) + conv(x, dw)`` is written with the
kernel materialised as ``(kh, kw, O, I)``, the activation as ``(C, H, W, N)`` and the kernel
tangent as ``(I, kh, kw, O)``, so that JAX's own transpose rules turn it into an input gradient
and a weight gradient that are plain NHWC x HWIO convolutions of materialised operands. Forward
mode (``jax.jvp``, Hessian-vector products) works as for any lax op.

Why: for the plain convolution the transpose rules leave those transposes to the dimension labels
(``f01b_i01o->01bf``, ``b01f_01oi->b01f``). At the top level of a program XLA:CPU rewrites such
convolutions into its library kernels' form, but inside a loop body (``lax.scan``, ``lax.map``,
``fori_loop``) it does not, and runs them as generic loops: a simple_cnn train step scanned over
3 steps took 39.5x the time of a Python loop of the same steps, and 0.93x with this convolution
(ResNet-20: 22x, and 0.85x with its first, ``custom_vjp`` form; ``benchmarks/scan_steps.py``,
BENCHMARKS.md). The activation's transpose for the weight gradient is materialised
(:func:`_materialised_transpose`), which XLA's own gradient cannot be told to do.

Values and gradients equal ``flax.linen.Conv``'s (``tests/nn/test_conv.py``), and the module has
its parameters (``kernel [kh, kw, in, out]``, ``bias``) and class name, so parameter trees and
checkpoints are unchanged. It is the default ``conv`` of every model
(:class:`jaxcnn.nn.layers.Ops`); ``create_model(name, conv=flax.linen.Conv)`` gives XLA's gradients.

Depthwise convolutions (one filter per channel: MobileNet, EfficientNet, NASNet's separable
convolutions) with at most :data:`DEPTHWISE_MAX_TAPS` taps (3x3) are computed on CPU as sums of
strided slices times the taps' weights, which XLA fuses into one loop; its grouped convolution
was 12-34x slower on the forward pass and 3-9x with the gradients at MobileNetV2's shapes
(batch 128, 8x8 to 32x32, 32 to 384 channels). Larger kernels stay XLA's: as slices a 5x5 would
run 2.7-4.5x faster with its gradients, but compile time grows with the taps.

On CPU the train and eval steps (and the search's compiled steps) are compiled by :func:`jit`,
which adds the compile option that sends convolutions to XLA's Eigen kernels instead of YNNPACK's
(``xla_cpu_experimental_ynn_fusion_type`` without individual convolutions; as ``XLA_FLAGS``:
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``): 1.2x on the ResNet-20 and
MobileNetV2 train steps here, with no flag for the user to set.

All of this applies to 2-D NHWC convolutions without input dilation when the default backend is
CPU; anywhere else (GPU, TPU) this is XLA's convolution unchanged.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

MODES = ("auto", "custom", "xla")
# Depthwise kernels of at most this many taps run as sums of slices (3x3: 9). Compile time grows
# with the taps (a tiny NASNet-A train step: 14 s with XLA's grouped convolutions, 17 s with
# 3x3 as slices, 32 s with 5x5 too, 50 s with 7x7 too), so larger kernels stay XLA's.
DEPTHWISE_MAX_TAPS = 9
# Every library fusion but individual convolutions: convolutions go to Eigen, not YNNPACK.
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def compiler_options() -> dict[str, str] | None:
  """The compile options :func:`jit` adds: on CPU the Eigen-convolution option (None where the
  backend is not CPU or this jaxlib does not know the option)."""
  if jax.default_backend() != "cpu":
    return None
  try:
    jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(1.0).compile()
  except Exception:  # an older or newer XLA without the option
    return None
  return dict(_CPU_OPTIONS)


def jit(fn: Any, **kwargs: Any) -> Any:
  """``jax.jit(fn, **kwargs)`` with :func:`compiler_options` (for programs of convolutions)."""
  return jax.jit(fn, compiler_options=compiler_options(), **kwargs)


def _pairs(padding: Any, lhs: jax.Array, rhs: jax.Array, strides: Sequence[int],
           rhs_dilation: Sequence[int]) -> tuple[tuple[int, int], ...]:
  """Explicit ``(low, high)`` padding of the spatial dims for a padding spec (string or pairs)."""
  if isinstance(padding, str):
    window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], rhs_dilation)]
    return tuple(lax.padtype_to_pads(lhs.shape[1:3], window, strides, padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


# Dimension numbers of the two tangent convolutions (lax.ConvDimensionNumbers: lhs (batch,
# feature, spatial...), rhs (out, in, spatial...), out (batch, feature, spatial...)), chosen so
# that JAX's transpose rules turn each into a plain NHWC x HWIO convolution.
_NHWC = (0, 3, 1, 2)
_INPUT_TANGENT = lax.ConvDimensionNumbers(_NHWC, (2, 3, 0, 1), _NHWC)  # kernel as (kh, kw, O, I)
# activation as (C, H, W, N), kernel tangent as (I, kh, kw, O), output as (Ho, Wo, N, O)
_KERNEL_TANGENT = lax.ConvDimensionNumbers((3, 0, 1, 2), (3, 0, 1, 2), (2, 3, 0, 1))


def _materialised_transpose(x: jax.Array, perm: tuple[int, ...]) -> jax.Array:
  """``jnp.transpose(x, perm)`` of ``x`` as computed, not recomputed inside the transpose.

  XLA:CPU fuses into a plain transpose the element-wise ops that produced ``x`` (the BatchNorm,
  ReLU and residual adds of up to four earlier layers) and evaluates them in the transposed,
  strided order; ``lax.optimization_barrier`` does not survive on XLA:CPU. A conditional's
  operand is a buffer, so the transpose inside a ``lax.cond`` whose two branches are equal reads
  ``x`` once computed. The predicate reads one element (not constant, so XLA cannot fold the
  conditional away); both branches give the same value. ResNet-20's train step (batch 128):
  1.47x, bitwise the same parameters after a step (BENCHMARKS.md).
  """
  transpose = lambda a: jnp.transpose(a, perm)  # noqa: E731
  if x.size == 0:  # nothing to read a predicate from (and nothing to recompute)
    return transpose(x)
  return lax.cond(jnp.isnan(x.reshape(-1)[0]), transpose, transpose, x)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
          padding: tuple[tuple[int, int], ...], rhs_dilation: tuple[int, ...], groups: int,
          precision: Any) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=rhs_dilation,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=groups, precision=precision)


def _conv_jvp(strides, padding, rhs_dilation, groups, precision, primals, tangents):
  """The convolution's tangent, ``conv(dx, w) + conv(x, dw)``, with its operands materialised in
  the layouts that make the transposes (the input and weight gradients) plain convolutions."""
  x, kernel = primals
  dx, dkernel = tangents
  y = _conv(x, kernel, strides, padding, rhs_dilation, groups, precision)
  common = dict(window_strides=strides, padding=padding, rhs_dilation=rhs_dilation,
                feature_group_count=groups, precision=precision)
  dy = None
  if not isinstance(dx, SymbolicZero):
    dy = lax.conv_general_dilated(dx, jnp.transpose(kernel, (0, 1, 3, 2)),
                                  dimension_numbers=_INPUT_TANGENT, **common)
  if not isinstance(dkernel, SymbolicZero):
    t = lax.conv_general_dilated(_materialised_transpose(x, (3, 1, 2, 0)),
                                 jnp.transpose(dkernel, (2, 0, 1, 3)),
                                 dimension_numbers=_KERNEL_TANGENT, **common)
    t = jnp.transpose(t, (2, 0, 1, 3))
    dy = t if dy is None else dy + t
  if dy is None:
    dy = jnp.zeros_like(y)
  return y, dy


_conv.defjvp(_conv_jvp, symbolic_zeros=True)


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
  if int(feature_group_count) == lhs.shape[-1] == rhs.shape[-1] > 1 and (
      rhs.shape[0] * rhs.shape[1] <= DEPTHWISE_MAX_TAPS):
    return _depthwise(lhs, rhs, strides, pads, rhs_dil)
  return _conv(lhs, rhs, strides, pads, rhs_dil, int(feature_group_count), precision)


def _depthwise(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
               padding: Sequence[tuple[int, int]], rhs_dilation: Sequence[int]) -> jax.Array:
  """A depthwise convolution (one filter per channel) as the sum over the kernel's taps of
  strided slices of the padded input times the tap's weights: element-wise work that XLA:CPU
  fuses into one loop, where its grouped convolution is slow (measured 12-34x on the forward
  pass, 3-9x with the gradients, at MobileNetV2's shapes). Accumulates in float32."""
  kh, kw = kernel.shape[:2]
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  out_hw = [(xp.shape[1 + a] - ((k - 1) * d + 1)) // s + 1
            for a, (k, s, d) in enumerate(zip((kh, kw), strides, rhs_dilation))]
  total = None
  for i in range(kh):
    for j in range(kw):
      start = (0, i * rhs_dilation[0], j * rhs_dilation[1], 0)
      limit = (x.shape[0], start[1] + (out_hw[0] - 1) * strides[0] + 1,
               start[2] + (out_hw[1] - 1) * strides[1] + 1, x.shape[3])
      tap = lax.slice(xp, start, limit, (1, *strides, 1)).astype(dtype)
      tap = tap * kernel[i, j, 0].astype(dtype)
      total = tap if total is None else total + tap
  return total.astype(jnp.result_type(x.dtype, kernel.dtype))


_CPU_CONV = conv_general_dilated


class Conv(nn.Conv):
  """``flax.linen.Conv`` (same fields, same ``kernel [kh, kw, in, out]`` and ``bias``
  parameters) whose convolution is :func:`conv_general_dilated`: XLA's own forward pass and input
  gradient, and on CPU a weight gradient without XLA's activation transposes.

  ``Conv(..., conv_general_dilated=functools.partial(conv_general_dilated, mode="custom"))``
  forces the custom gradient on any backend (``mode="xla"``: never).
  """

  conv_general_dilated: Any = _CPU_CONV
