"""benchmarks/fused_batchnorm.py (a one-pass BatchNorm backward) against jax.grad of the plain
formula and flax's BatchNorm."""

import functools
import importlib.util
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "fused_batchnorm.py"
_SPEC = importlib.util.spec_from_file_location("fused_batchnorm", _PATH)
fused_batchnorm = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fused_batchnorm)
BatchNorm, batch_norm_train = fused_batchnorm.BatchNorm, fused_batchnorm.batch_norm_train


def _plain(x, scale, bias, eps):
  """Ioffe and Szegedy (2015), algorithm 1, written out (two-pass variance)."""
  mean = jnp.mean(x, (0, 1, 2))
  var = jnp.mean((x - mean) ** 2, (0, 1, 2))
  return (x - mean) / jnp.sqrt(var + eps) * scale + bias, mean, var


def test_gradients_match_jax_grad_of_the_formula_in_float64():
  with jax.enable_x64():
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    x = jax.random.normal(k[0], (4, 3, 5, 6), jnp.float64) * 3 + 1
    scale = jax.random.normal(k[1], (6,), jnp.float64)
    bias = jax.random.normal(k[2], (6,), jnp.float64)
    w = jax.random.normal(k[3], x.shape, jnp.float64)
    v = jax.random.normal(k[4], (2, 6), jnp.float64)

    def loss(fn, x, scale, bias):  # weights the mean and variance too
      y, mean, var = fn(x, scale, bias)
      return jnp.sum(w * jnp.tanh(y)) + jnp.sum(v[0] * mean) + jnp.sum(v[1] * var)

    fused = lambda x, s, b: batch_norm_train(x, s, b, 1e-3, jnp.float64)
    plain = lambda x, s, b: _plain(x, s, b, 1e-3)
    np.testing.assert_allclose(fused(x, scale, bias)[0], plain(x, scale, bias)[0], rtol=1e-10,
                               atol=1e-10)
    got = jax.grad(functools.partial(loss, fused), argnums=(0, 1, 2))(x, scale, bias)
    want = jax.grad(functools.partial(loss, plain), argnums=(0, 1, 2))(x, scale, bias)
    for g, e in zip(got, want):
      np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("train", [True, False])
def test_module_equals_flax_batchnorm(train):
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 4, 4, 5)) * 2 + 0.5
  ours = BatchNorm(momentum=0.9, epsilon=1e-5)
  flax_bn = nn.BatchNorm(momentum=0.9, epsilon=1e-5)
  variables = flax_bn.init(jax.random.PRNGKey(2), x, use_running_average=False)
  ours_init = ours.init(jax.random.PRNGKey(2), x, use_running_average=False)
  assert jax.tree.map(jnp.shape, ours_init) == jax.tree.map(jnp.shape, variables)
  variables = {"params": {"scale": jnp.linspace(0.5, 1.5, 5), "bias": jnp.linspace(-1, 1, 5)},
               "batch_stats": {"mean": jnp.full(5, 0.3), "var": jnp.full(5, 2.0)}}
  w = jax.random.normal(jax.random.PRNGKey(3), x.shape)

  def run(module, variables, x):
    y, new = module.apply(variables, x, use_running_average=not train, mutable=["batch_stats"])
    return jnp.sum(w * jnp.sin(y)), (y, new)

  (_, (y1, s1)), g1 = jax.value_and_grad(lambda v, x: run(ours, v, x), (0, 1), has_aux=True)(
      variables, x)
  (_, (y2, s2)), g2 = jax.value_and_grad(lambda v, x: run(flax_bn, v, x), (0, 1), has_aux=True)(
      variables, x)
  np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves((s1, g1)), jax.tree.leaves((s2, g2))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bfloat16_input_gives_flax_dtype_and_float32_stats():
  x = jax.random.normal(jax.random.PRNGKey(4), (4, 2, 2, 3)).astype(jnp.bfloat16)
  module = BatchNorm(momentum=0.9, epsilon=1e-5, use_running_average=False)
  variables = module.init(jax.random.PRNGKey(0), x)
  y, new = module.apply(variables, x, mutable=["batch_stats"])
  want, want_new = nn.BatchNorm(momentum=0.9, epsilon=1e-5, use_running_average=False).apply(
      variables, x, mutable=["batch_stats"])
  assert y.dtype == want.dtype and new["batch_stats"]["mean"].dtype == jnp.float32
  np.testing.assert_allclose(new["batch_stats"]["var"], want_new["batch_stats"]["var"], rtol=1e-5)
