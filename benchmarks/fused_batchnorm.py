"""Train-mode batch normalization whose backward pass is one fused pass (a ``custom_vjp``).

A benchmark-only module (issue 12): on the ResNet-20 CPU train step (batch 128) it was not
measurably faster than ``flax.linen.BatchNorm`` (best step 0.81x-1.07x, median 0.99x-1.06x in
four alternating runs at load 5-9; BENCHMARKS.md), so the registry's ``"batch"`` stays flax's. ``benchmarks/vs_torch.py``
(variant ``jax_fused_bn``) and ``benchmarks/profile_step.py --norm fused_batch`` use it.

Batch normalization (Ioffe and Szegedy 2015, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", section 3, algorithm 1) with the closed-form
gradient of its section 3: with ``xhat = (x - mean) * inv_std`` over the ``N`` reduced positions
of each channel,

  dbias = sum(dy),  dscale = sum(dy * xhat),
  dx = scale * inv_std / N * (N * dy - dbias - xhat * dscale),

that is two per-channel sums (one multi-output reduction) and one element-wise pass, where
``jax.grad`` of the plain formula differentiates the mean, the variance and the normalisation
separately. :class:`BatchNorm` is ``flax.linen.BatchNorm`` (same fields, same class name, the same
``params`` ``scale``/``bias`` and ``batch_stats`` ``mean``/``var``, the same running-average
update) whose training-mode output uses :func:`batch_norm_train`; evaluation mode, and options the
fused form does not cover (``axis_name``, ``mask``, a feature axis other than the last, no scale or
bias, ``use_fast_variance=False``, ``force_float32_reductions=False``), are flax's own code.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def _stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean and biased variance over all axes but the last, as flax's fast variance
  (``mean(x^2) - mean(x)^2``, clipped at 0)."""
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axes)
  var = jnp.maximum(0.0, jnp.mean(x * x, axes) - mean * mean)
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                     dtype: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Train-mode batch norm over all axes of ``x`` but the last.

  Args:
    x: the input, channels last.
    scale, bias: the per-channel affine parameters, shape ``(C,)``.
    epsilon: added to the variance.
    dtype: the output's dtype.

  Returns:
    ``(y, mean, var)``: the output (in ``dtype``) and the batch's per-channel mean and biased
    variance (computed in at least float32), for the running averages.
  """
  return _forward(x, scale, bias, epsilon, dtype)[0]


def _forward(x, scale, bias, epsilon, dtype):
  ct = jnp.promote_types(x.dtype, jnp.float32)
  xf = x.astype(ct)
  mean, var = _stats(xf)
  inv = lax.rsqrt(var + epsilon)
  y = (xf - mean) * (inv * scale) + bias
  return (y.astype(dtype), mean, var), (x, mean, inv, scale)


def _fwd(x, scale, bias, epsilon, dtype):
  out, res = _forward(x, scale, bias, epsilon, dtype)
  return out, (*res, bias)


def _bwd(epsilon, dtype, res, cotangents):
  """The closed form of the module docstring, plus the (usually zero) cotangents of the returned
  mean and variance: ``dmean / N + dvar * 2 (x - mean) / N``."""
  del epsilon, dtype
  x, mean, inv, scale, bias = res
  dy, dmean, dvar = cotangents
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  ct = mean.dtype
  centered = x.astype(ct) - mean
  xhat = centered * inv
  dyf = dy.astype(ct)
  dbias = jnp.sum(dyf, axes)
  dscale = jnp.sum(dyf * xhat, axes)
  dx = (scale * inv) * (dyf - (dbias + xhat * dscale) / n)
  dx = dx + (dmean + 2.0 * dvar * centered) / n
  return (dx.astype(x.dtype), dscale.astype(scale.dtype).reshape(scale.shape),
          dbias.astype(bias.dtype).reshape(bias.shape))


batch_norm_train.defvjp(_fwd, _bwd)


class BatchNorm(nn.BatchNorm):
  """``flax.linen.BatchNorm`` whose training-mode pass is :func:`batch_norm_train` (a one-pass
  backward); same fields, parameters, statistics and values
  (``tests/nn/test_fused_batchnorm.py``).
  """

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
               mask: jax.Array | None = None) -> jax.Array:
    call_arg = use_running_average
    use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                         use_running_average)
    axis = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
    last = tuple(a % x.ndim for a in axis) == (x.ndim - 1,)
    fused = (not use_running_average and mask is None and self.axis_name is None and last
             and self.use_scale and self.use_bias and self.use_fast_variance
             and self.force_float32_reductions)
    if not fused:
      return super().__call__(x, call_arg, mask=mask)
    features = (x.shape[-1],)
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), features)
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
    scale = self.param("scale", self.scale_init, features, self.param_dtype)
    bias = self.param("bias", self.bias_init, features, self.param_dtype)
    dtype = nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype)
    y, mean, var = batch_norm_train(x, scale, bias, self.epsilon, dtype)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y
