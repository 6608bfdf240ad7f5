"""Tests for jaxcnn.nn.activations against NumPy closed forms, jax.grad, and the papers' facts."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.nn import activations

# Negative, zero and large-magnitude points; float64 closed forms below do not overflow on it.
GRID = np.array([-50.0, -20.0, -5.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 2.0, 5.0, 20.0, 50.0])
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _elu(x, alpha=1.0):
  return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))


def _softplus(x):
  return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def _phi(x):  # standard normal density
  return np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def _Phi(x):  # standard normal CDF
  return 0.5 * (1 + _erf(x / math.sqrt(2)))


def _swish_grad(x, beta):
  s, sw = _sigmoid(beta * x), x * _sigmoid(beta * x)
  return beta * sw + s * (1 - beta * sw)


def _mish_grad(x):
  t = np.tanh(_softplus(x))
  return t + x * _sigmoid(x) * (1 - t**2)


# name/spec -> (NumPy closed form, NumPy closed-form derivative)
CASES = {
    "identity": (lambda x: x, np.ones_like),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "relu6": (lambda x: np.clip(x, 0, 6), lambda x: ((x > 0) & (x < 6)).astype(float)),
    "leaky_relu": (lambda x: np.where(x >= 0, x, 0.01 * x), lambda x: np.where(x >= 0, 1.0, 0.01)),
    "leaky_relu(negative_slope=0.2)": (
        lambda x: np.where(x >= 0, x, 0.2 * x), lambda x: np.where(x >= 0, 1.0, 0.2)),
    "elu": (_elu, lambda x: np.where(x > 0, 1.0, _elu(x) + 1.0)),
    "elu(alpha=0.5)": (
        lambda x: _elu(x, 0.5), lambda x: np.where(x > 0, 1.0, _elu(x, 0.5) + 0.5)),
    "selu": (
        lambda x: SELU_SCALE * _elu(x, SELU_ALPHA),
        lambda x: SELU_SCALE * np.where(x > 0, 1.0, _elu(x, SELU_ALPHA) + SELU_ALPHA)),
    "swish": (lambda x: x * _sigmoid(x), lambda x: _swish_grad(x, 1.0)),
    "swish(beta=2.0)": (lambda x: x * _sigmoid(2 * x), lambda x: _swish_grad(x, 2.0)),
    "gelu": (lambda x: x * _Phi(x), lambda x: _Phi(x) + x * _phi(x)),
    "mish": (lambda x: x * np.tanh(_softplus(x)), _mish_grad),
    "softplus": (_softplus, _sigmoid),
}


@pytest.mark.parametrize("spec", CASES)
def test_values_match_closed_form(spec):
  f, _ = CASES[spec]
  y = activations.get(spec)(jnp.asarray(GRID, jnp.float32))
  assert y.dtype == jnp.float32
  np.testing.assert_allclose(y, f(GRID), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", CASES)
def test_derivatives_match_closed_form(spec):
  _, df = CASES[spec]
  fn = activations.get(spec)
  x = jnp.asarray(GRID, jnp.float32)
  per_point = jax.vmap(jax.grad(fn))(x)
  np.testing.assert_allclose(per_point, df(GRID), rtol=1e-5, atol=1e-6)
  # Elementwise: the gradient of the sum is the vector of derivatives.
  np.testing.assert_allclose(jax.grad(lambda v: fn(v).sum())(x), per_point, rtol=1e-6, atol=0)


def test_gelu_approximate_is_the_tanh_form():
  x = jnp.asarray(GRID, jnp.float32)
  ref = 0.5 * GRID * (1 + np.tanh(math.sqrt(2 / math.pi) * (GRID + 0.044715 * GRID**3)))
  np.testing.assert_allclose(activations.gelu(x, approximate=True), ref, rtol=1e-5, atol=1e-6)
  # The exact and approximate forms differ by up to ~1e-3 near |x| = 2.
  assert np.abs(activations.gelu(x) - activations.gelu(x, approximate=True)).max() > 1e-4


@pytest.mark.parametrize("name", [n for n in activations.names()
                                  if not activations.is_learnable(activations.get(n))])
def test_stable_at_extreme_inputs(name):
  fn = activations.get(name)
  x = jnp.array([-1e4, -100.0, 100.0, 1e4], jnp.float32)
  y, g = fn(x), jax.vmap(jax.grad(fn))(x)
  assert np.all(np.isfinite(y)) and np.all(np.isfinite(g)), (y, g)


def test_selu_constants_are_the_papers():
  assert activations.SELU_ALPHA == SELU_ALPHA and activations.SELU_SCALE == SELU_SCALE


def test_selu_self_normalizing_fixed_point():
  # For x ~ N(0, 1), selu(x) has mean 0 and variance 1 (Klambauer et al. 2017); Monte Carlo with
  # 400k samples has standard errors ~2e-3, far below the tolerance. ELU fails it (mean ~0.16).
  x = jax.random.normal(jax.random.key(0), (400_000,))
  y = np.asarray(activations.selu(x), np.float64)
  assert abs(y.mean()) < 0.01 and abs(y.var() - 1) < 0.01
  assert abs(np.asarray(activations.elu(x)).mean()) > 0.1


# --- registry ------------------------------------------------------------------------------------


def test_names_lists_everything_sorted():
  expected = {"identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "swish", "gelu",
              "mish", "softplus", "prelu", "learnable_swish", "maxout"}
  assert expected <= set(activations.names())
  assert activations.names() == sorted(activations.names())
  assert activations.names("*_relu") == ["leaky_relu"]


def test_get_names_args_and_callables():
  assert activations.get("relu") is activations.relu
  leaky = activations.get("leaky_relu(negative_slope=0.2)")
  assert float(leaky(jnp.float32(-1.0))) == pytest.approx(-0.2)
  assert float(activations.get("elu", alpha=2.0)(jnp.float32(-50.0))) == pytest.approx(-2.0)
  assert activations.get(jax.nn.silu) is jax.nn.silu
  assert activations.get("prelu") is activations.PReLU
  prelu = activations.get("prelu(negative_slope_init=0.1)")
  assert isinstance(prelu, functools.partial) and prelu.keywords == {"negative_slope_init": 0.1}
  assert activations.is_learnable(prelu) and activations.is_learnable(activations.Maxout)
  assert not activations.is_learnable(activations.relu)
  assert not activations.is_learnable(activations.get("elu(alpha=0.5)"))


def test_unknown_name_lists_known_ones():
  with pytest.raises(ValueError, match="Unknown activation 'relu7'") as e:
    activations.get("relu7")
  assert "leaky_relu" in str(e.value) and "maxout" in str(e.value)


# --- learnable modules ---------------------------------------------------------------------------


def _x(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def test_prelu_per_channel_slope_and_init():
  x = 3 * _x((4, 5, 5, 3))
  model = activations.PReLU()
  params = model.init(jax.random.key(0), x)["params"]
  assert jax.tree.map(jnp.shape, params) == {"slope": (3,)}
  np.testing.assert_allclose(params["slope"], np.full(3, 0.25))
  np.testing.assert_allclose(model.apply({"params": params}, x),
                             np.where(x >= 0, x, 0.25 * np.asarray(x)), rtol=1e-6)
  # Channel-shared variant and a custom initial slope through a spec.
  shared = activations.get("prelu(negative_slope_init=0.1, per_channel=False)")()
  v = shared.init(jax.random.key(0), x)
  assert v["params"]["slope"].shape == ()
  np.testing.assert_allclose(shared.apply(v, x), np.where(x >= 0, x, 0.1 * np.asarray(x)),
                             rtol=1e-6)


def test_prelu_slope_gradient():
  # d/da_c sum(g * prelu(x)) = sum over non-channel axes of g * min(x, 0).
  x, g = _x((4, 5, 5, 3), 0), _x((4, 5, 5, 3), 1)
  model = activations.PReLU()
  params = model.init(jax.random.key(0), x)
  grads = jax.grad(lambda p: (g * model.apply(p, x)).sum())(params)
  expected = (np.asarray(g) * np.minimum(np.asarray(x), 0)).sum(axis=(0, 1, 2))
  np.testing.assert_allclose(grads["params"]["slope"], expected, rtol=1e-5, atol=1e-5)


def test_learnable_swish():
  x = 4 * _x((6, 5))
  model = activations.LearnableSwish()
  params = model.init(jax.random.key(0), x)
  assert params["params"]["beta"].shape == (5,)
  np.testing.assert_allclose(model.apply(params, x), jax.nn.silu(x), rtol=1e-6, atol=1e-7)
  scalar = activations.LearnableSwish(beta_init=2.0, per_channel=False)
  v = scalar.init(jax.random.key(0), x)
  assert v["params"]["beta"].shape == ()
  np.testing.assert_allclose(scalar.apply(v, x), x * _sigmoid(2 * np.asarray(x)), rtol=1e-5)
  # d/dbeta_c sum(x * sigmoid(beta_c x)) = sum_n x^2 sigmoid(x) (1 - sigmoid(x)) at beta = 1.
  grads = jax.grad(lambda p: model.apply(p, x).sum())(params)
  s = _sigmoid(np.asarray(x, np.float64))
  np.testing.assert_allclose(grads["params"]["beta"], (np.asarray(x) ** 2 * s * (1 - s)).sum(0),
                             rtol=1e-5)


def _maxout_reference(params, x, k, features):
  kernel, bias = (np.asarray(params["pieces"][n], np.float64) for n in ("kernel", "bias"))
  pieces = np.einsum("...c,cf->...f", np.asarray(x, np.float64), kernel) + bias
  return pieces.reshape(*x.shape[:-1], k, features).max(axis=-2)


@pytest.mark.parametrize("shape", [(8, 6), (2, 5, 5, 6)])
@pytest.mark.parametrize("k", [2, 3])
def test_maxout_shape_params_and_pieces(shape, k):
  x, c = _x(shape), shape[-1]
  model = activations.get("maxout")(k=k)
  params = model.init(jax.random.key(1), x)["params"]
  assert sum(p.size for p in jax.tree.leaves(params)) == c * k * c + k * c
  y = model.apply({"params": params}, x)
  assert y.shape == shape
  np.testing.assert_allclose(y, _maxout_reference(params, x, k, c), rtol=1e-5, atol=1e-5)


def test_maxout_features_and_bad_k():
  x = _x((4, 6))
  model = activations.Maxout(k=3, features=2)
  params = model.init(jax.random.key(0), x)["params"]
  assert model.apply({"params": params}, x).shape == (4, 2)
  assert params["pieces"]["kernel"].shape == (6, 6)
  np.testing.assert_allclose(model.apply({"params": params}, x),
                             _maxout_reference(params, x, 3, 2), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="k >= 1"):
    activations.Maxout(k=0).init(jax.random.key(0), x)


# --- Activation wrapper, jit, vmap ---------------------------------------------------------------


class _Net(nn.Module):
  act: object

  @nn.compact
  def __call__(self, x):
    return activations.Activation(self.act)(nn.Dense(4)(x))


def test_activation_wrapper_plain_and_learnable():
  x = _x((3, 5))
  plain = activations.Activation("elu(alpha=0.5)")
  v = plain.init(jax.random.key(0), x)
  assert jax.tree.leaves(v) == []
  np.testing.assert_allclose(plain.apply(v, x), _elu(np.asarray(x), 0.5), rtol=1e-6, atol=1e-7)
  assert activations.Activation(jax.nn.silu).apply({}, x).shape == x.shape

  learnable = activations.Activation("prelu")
  v = learnable.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, v["params"]) == {"PReLU_0": {"slope": (5,)}}
  np.testing.assert_allclose(learnable.apply(v, x), np.where(x >= 0, x, 0.25 * np.asarray(x)),
                             rtol=1e-6)

  net = _Net("maxout(k=3)")
  v = net.init(jax.random.key(0), x)
  kernel = v["params"]["Activation_0"]["Maxout_0"]["pieces"]["kernel"]
  assert kernel.shape == (4, 12) and net.apply(v, x).shape == (3, 4)


@pytest.mark.parametrize("spec", CASES)
def test_functions_under_jit_and_vmap(spec):
  fn = activations.get(spec)
  x = jnp.asarray(GRID, jnp.float32).reshape(2, 7)
  np.testing.assert_allclose(jax.jit(fn)(x), fn(x), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jax.vmap(fn)(x), fn(x), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(fn)))(x[0]),
                             jax.vmap(jax.grad(fn))(x[0]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spec", ["prelu", "learnable_swish", "maxout"])
def test_modules_under_jit_and_vmap(spec):
  x = _x((2, 4, 4, 3))
  net = activations.Activation(spec)
  keys = jax.random.split(jax.random.key(0), 3)
  # Many models at once: vmap init over keys and apply over the stacked parameters.
  stacked = jax.jit(jax.vmap(lambda k: net.init(k, x)))(keys)
  ys = jax.jit(jax.vmap(lambda v: net.apply(v, x)))(stacked)
  assert ys.shape == (3, *x.shape)
  for i in range(3):
    v = jax.tree.map(lambda a: a[i], stacked)
    np.testing.assert_allclose(ys[i], net.apply(v, x), rtol=1e-5, atol=1e-6)
  # vmap over the batch axis of the input with shared parameters.
  v = net.init(keys[0], x)
  np.testing.assert_allclose(jax.vmap(lambda xi: net.apply(v, xi))(x), net.apply(v, x),
                             rtol=1e-5, atol=1e-6)
