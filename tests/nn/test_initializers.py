"""Tests for jaxcnn.nn.initializers: sample statistics against the closed-form formulas."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.nn import initializers

DENSE = (400, 300)      # fan_in 400, fan_out 300
CONV = (3, 3, 64, 96)   # fan_in 576, fan_out 864
KEY = jax.random.key(0)


def sample(spec, shape):
  return np.asarray(initializers.get(spec)(KEY, shape), np.float64)


@pytest.mark.parametrize("shape,expected", [
    ((5, 7), (5, 7)), ((3, 3, 4, 8), (36, 72)), ((5, 2, 6), (10, 30)), ((1, 1, 16, 32), (16, 32)),
])
def test_fans(shape, expected):
  assert initializers.fans(shape) == expected


@pytest.mark.parametrize("shape", [(), (7,)])
def test_fans_rejects_rank_below_two(shape):
  with pytest.raises(ValueError, match="rank >= 2"):
    initializers.fans(shape)


@pytest.mark.parametrize("nonlinearity,slope,expected", [
    ("linear", 0.01, 1.0), ("conv", 0.01, 1.0), ("sigmoid", 0.01, 1.0), ("tanh", 0.01, 5 / 3),
    ("relu", 0.01, 2**0.5), ("leaky_relu", 0.2, (2 / 1.04)**0.5), ("leaky_relu", 0.01, (2 / 1.0001)**0.5),
    ("selu", 0.01, 0.75),
])
def test_gain(nonlinearity, slope, expected):
  assert initializers.gain(nonlinearity, slope) == pytest.approx(expected, rel=1e-12)


def test_gain_unknown_nonlinearity_lists_known():
  with pytest.raises(ValueError, match="Unknown nonlinearity 'swoosh'.*relu.*tanh"):
    initializers.gain("swoosh")
  with pytest.raises(ValueError, match="Unknown nonlinearity"):
    initializers.get("kaiming_normal(nonlinearity='swoosh')")


def _std_cases():
  cases = []
  for shape in (DENSE, CONV):
    fan_in, fan_out = math.prod(shape[:-1]), math.prod(shape[:-2]) * shape[-1]
    cases += [
        ("normal", shape, 0.01),
        ("normal(stddev=1.0)", shape, 1.0),
        ("uniform(scale=0.3)", shape, 0.3 / 3**0.5),
        ("lecun_normal", shape, 1 / fan_in**0.5),
        ("xavier_normal", shape, (2 / (fan_in + fan_out))**0.5),
        ("xavier_normal(gain=2.0)", shape, 2 * (2 / (fan_in + fan_out))**0.5),
        ("xavier_uniform", shape, (2 / (fan_in + fan_out))**0.5),
        ("kaiming_normal", shape, (2 / fan_in)**0.5),
        ("kaiming_normal(nonlinearity='tanh', mode='fan_out')", shape, 5 / 3 / fan_out**0.5),
        ("kaiming_normal(nonlinearity='leaky_relu', negative_slope=0.2)", shape,
         (2 / 1.04 / fan_in)**0.5),
        ("kaiming_uniform", shape, (2 / fan_in)**0.5),
        ("kaiming_uniform(nonlinearity='linear', mode='fan_out')", shape, 1 / fan_out**0.5),
        ("orthogonal(gain=3.0)", shape, 3 / fan_in**0.5),  # columns are unit vectors of length fan_in
    ]
  return cases


@pytest.mark.parametrize("spec,shape,std", _std_cases())
def test_empirical_std_matches_formula(spec, shape, std):
  w = sample(spec, shape)
  assert w.shape == shape
  assert abs(w.mean()) < 0.02 * std
  assert w.std() == pytest.approx(std, rel=0.02)


@pytest.mark.parametrize("spec,bound", [
    ("uniform(scale=0.3)", 0.3),
    ("xavier_uniform(gain=1.5)", 1.5 * (6 / (576 + 864))**0.5),
    ("kaiming_uniform(nonlinearity='selu')", 0.75 * (3 / 576)**0.5),
])
def test_uniform_bounds(spec, bound):
  w = sample(spec, CONV)
  assert np.abs(w).max() <= bound * (1 + 1e-6)
  assert np.abs(w).max() > 0.999 * bound
  hist, _ = np.histogram(w, bins=10, range=(-bound, bound))
  np.testing.assert_allclose(hist / w.size, 0.1, atol=0.01)


def test_normal_mean_and_constants():
  w = sample("normal(stddev=0.5, mean=3.0)", DENSE)
  assert w.mean() == pytest.approx(3.0, abs=0.01) and w.std() == pytest.approx(0.5, rel=0.02)
  np.testing.assert_array_equal(sample("constant(0.25)", (2, 3)), np.full((2, 3), 0.25))
  np.testing.assert_array_equal(sample("zeros", CONV), np.zeros(CONV))
  np.testing.assert_array_equal(sample("ones", (4, 5)), np.ones((4, 5)))


def test_kaiming_bad_mode():
  with pytest.raises(ValueError, match="fan mode 'fan_sideways'"):
    initializers.kaiming_normal(mode="fan_sideways")
  with pytest.raises(ValueError, match="fan mode"):
    initializers.kaiming_uniform(mode="fan_avg")


@pytest.mark.parametrize("shape,gain", [((64, 32), 1.0), ((16, 64), 2.0), ((3, 3, 8, 16), 1.5),
                                        ((1, 1, 8, 32), 1.0), ((24, 24), 0.5)])
def test_orthogonal(shape, gain):
  w = sample(f"orthogonal(gain={gain})", shape).reshape(-1, shape[-1])
  gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
  np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-5 * gain**2)


def test_orthogonal_rejects_vectors():
  with pytest.raises(ValueError, match="rank >= 2"):
    initializers.orthogonal()(KEY, (5,))


@pytest.mark.parametrize("shape", [(3, 3, 8, 16), (5, 5, 12, 12), (3, 8, 8), (4, 4, 3, 6)])
def test_delta_orthogonal(shape):
  w = sample("delta_orthogonal(gain=2.0)", shape)
  centre = tuple(k // 2 for k in shape[:-2])
  h = w[centre]
  np.testing.assert_allclose(h @ h.T, 4.0 * np.eye(shape[-2]), atol=1e-5)
  rest = w.copy()
  rest[centre] = 0
  assert not rest.any()


def test_delta_orthogonal_rejects_bad_shapes():
  with pytest.raises(ValueError, match="in <= out"):
    initializers.delta_orthogonal()(KEY, (3, 3, 16, 8))
  with pytest.raises(ValueError, match="conv kernel"):
    initializers.delta_orthogonal()(KEY, (16, 16))


def test_delta_orthogonal_conv_is_isometric_on_interior():
  """A delta-orthogonal conv maps each pixel's channel vector by an isometry (Xiao et al. 2018)."""
  conv = nn.Conv(12, (3, 3), padding="SAME", use_bias=False,
                 kernel_init=initializers.get("delta_orthogonal"))
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 5))
  y, _ = conv.init_with_output(KEY, x)
  np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)


def test_unknown_initializer_lists_known():
  with pytest.raises(ValueError, match="Unknown initializer 'glorious'.*kaiming_normal.*xavier_uniform"):
    initializers.get("glorious")


def test_get_passes_callables_and_overrides():
  fn = jax.nn.initializers.zeros
  assert initializers.get(fn) is fn
  w = np.asarray(initializers.get("kaiming_normal", nonlinearity="linear")(KEY, DENSE))
  assert w.std() == pytest.approx(1 / 400**0.5, rel=0.02)


def test_registry_names():
  assert set(initializers.names()) >= {
      "constant", "zeros", "ones", "normal", "uniform", "lecun_normal", "xavier_normal",
      "xavier_uniform", "kaiming_normal", "kaiming_uniform", "orthogonal", "delta_orthogonal"}


SPECS = ["constant(0.5)", "zeros", "ones", "normal", "uniform", "lecun_normal", "xavier_normal",
         "xavier_uniform", "kaiming_normal", "kaiming_uniform", "orthogonal", "delta_orthogonal"]


@pytest.mark.parametrize("spec", SPECS)
def test_flax_kernel_init_determinism_and_dtype(spec):
  init = initializers.get(spec)
  a, b, c = init(KEY, CONV), init(KEY, CONV), init(jax.random.key(1), CONV)
  np.testing.assert_array_equal(a, b)
  if spec not in ("constant(0.5)", "zeros", "ones"):
    assert not np.array_equal(a, c)
  x = jnp.ones((1, 3, 3, CONV[2]))
  conv = nn.Conv(CONV[3], CONV[:2], kernel_init=init, param_dtype=jnp.bfloat16)
  params = conv.init(KEY, x)["params"]
  assert params["kernel"].shape == CONV and params["kernel"].dtype == jnp.bfloat16
  assert conv.apply({"params": params}, x).shape == (1, 3, 3, CONV[3])
  if spec != "delta_orthogonal":
    kernel = nn.Dense(DENSE[1], kernel_init=init).init(KEY, jnp.ones((1, DENSE[0])))["params"]["kernel"]
    assert kernel.shape == DENSE and kernel.dtype == jnp.float32


@pytest.mark.parametrize("spec", ["kaiming_normal", "orthogonal", "delta_orthogonal"])
def test_jit_and_vmap_over_keys(spec):
  init, key = initializers.get(spec), KEY
  np.testing.assert_allclose(jax.jit(init, static_argnums=1)(key, CONV), init(key, CONV),
                             rtol=1e-5, atol=1e-6)
  keys = jax.random.split(key, 2)
  batch = jax.vmap(lambda k: init(k, CONV))(keys)
  np.testing.assert_allclose(batch[1], init(keys[1], CONV), rtol=1e-5, atol=1e-6)
