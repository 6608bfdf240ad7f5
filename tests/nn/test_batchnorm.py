"""Batch normalization through jaxcnn.nn.layers (ConvBNAct, normalize), checked against NumPy.

References: Ioffe & Szegedy 2015, "Batch Normalization" (Algorithm 1 and 2).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.nn import layers

MOMENTUM, EPS = 0.9, 1e-5  # the "batch" spec's documented defaults


def conv_bn(**kwargs):
  # VALID padding: a shift of the input is then a per-channel shift of the convolution output.
  return layers.ConvBNAct(features=4, kernel_size=(3, 3), padding="VALID", act=None, **kwargs)


@pytest.fixture(scope="module")
def setup():
  x = 3.0 * jax.random.normal(jax.random.key(0), (4, 7, 7, 3)) + 2.0
  model = conv_bn()
  variables = model.init(jax.random.key(1), x, train=False)
  return model, variables, x


def conv_output(variables, x):
  """The convolution alone (no normalization): the input BatchNorm sees."""
  kernel = variables["params"]["Conv_0"]["kernel"]
  conv = nn.Conv(4, (3, 3), padding="VALID", use_bias=False)
  return np.asarray(conv.apply({"params": {"kernel": kernel}}, x), np.float64)


def train_apply(model, variables, x):
  return model.apply(variables, x, train=True, mutable=["batch_stats"])


def test_train_mode_normalizes_each_channel(setup):
  model, variables, x = setup
  y, _ = train_apply(model, variables, x)
  y = np.asarray(y, np.float64)
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, atol=1e-3)
  # Scaling and shifting the input leaves the output unchanged (up to epsilon).
  y_shifted, _ = train_apply(model, variables, 10.0 * x - 7.0)
  z = conv_output(variables, x)
  assert np.abs(z.mean(axis=(0, 1, 2))).max() > 0.1  # the input to BN really was off-center
  np.testing.assert_allclose(y_shifted, y, atol=1e-3)


def test_running_averages_follow_momentum_with_biased_variance(setup):
  model, variables, x = setup
  z = conv_output(variables, x)
  mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))  # ddof=0: biased batch variance
  old = variables["batch_stats"]["BatchNorm_0"]
  np.testing.assert_array_equal(old["mean"], 0.0)
  np.testing.assert_array_equal(old["var"], 1.0)
  _, updates = train_apply(model, variables, x)
  new = updates["batch_stats"]["BatchNorm_0"]
  np.testing.assert_allclose(new["mean"], MOMENTUM * 0.0 + (1 - MOMENTUM) * mean, rtol=1e-4)
  np.testing.assert_allclose(new["var"], MOMENTUM * 1.0 + (1 - MOMENTUM) * var, rtol=1e-5)
  unbiased = z.var(axis=(0, 1, 2), ddof=1)  # distinguishable: 100 values per channel
  assert not np.allclose(new["var"], MOMENTUM + (1 - MOMENTUM) * unbiased, rtol=1e-5)
  # A second step starts from the updated averages.
  _, updates2 = train_apply(model, {**variables, **updates}, x)
  np.testing.assert_allclose(updates2["batch_stats"]["BatchNorm_0"]["mean"],
                             MOMENTUM * new["mean"] + (1 - MOMENTUM) * mean, rtol=1e-4)


def test_eval_mode_uses_running_averages(setup):
  model, variables, x = setup
  rng = np.random.default_rng(0)
  stats = {"mean": rng.normal(size=4).astype(np.float32),
           "var": rng.uniform(0.5, 2.0, size=4).astype(np.float32)}
  scale = rng.uniform(0.5, 1.5, size=4).astype(np.float32)
  bias = rng.normal(size=4).astype(np.float32)
  params = {**variables["params"], "BatchNorm_0": {"scale": scale, "bias": bias}}
  v = {"params": params, "batch_stats": {"BatchNorm_0": stats}}
  y_eval = model.apply(v, x, train=False)
  z = conv_output(v, x)
  expected = (z - stats["mean"]) / np.sqrt(stats["var"] + EPS) * scale + bias
  np.testing.assert_allclose(y_eval, expected, rtol=1e-4, atol=1e-4)
  y_train, _ = train_apply(model, v, x)
  assert np.abs(np.asarray(y_train) - expected).max() > 0.1


def test_gamma_beta_at_batch_std_and_mean_recover_identity(setup):
  model, variables, x = setup
  z = conv_output(variables, x)
  mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
  params = {**variables["params"],
            "BatchNorm_0": {"scale": jnp.asarray(np.sqrt(var + EPS), jnp.float32),
                            "bias": jnp.asarray(mean, jnp.float32)}}
  y, _ = train_apply(model, {**variables, "params": params}, x)
  np.testing.assert_allclose(y, z, rtol=1e-4, atol=1e-4)


def test_works_under_jit(setup):
  model, variables, x = setup
  y, _ = jax.jit(lambda v, x: train_apply(model, v, x))(variables, x)
  y_ref, _ = train_apply(model, variables, x)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm, params, collections", [
    ("batch", {"Conv_0": {"kernel"}, "BatchNorm_0": {"scale", "bias"}}, {"params", "batch_stats"}),
    ("group", {"Conv_0": {"kernel"}, "GroupNorm_0": {"scale", "bias"}}, {"params"}),
    ("layer", {"Conv_0": {"kernel"}, "LayerNorm_0": {"scale", "bias"}}, {"params"}),
    ("none", {"Conv_0": {"kernel"}}, {"params"}),
])
def test_norm_swap_changes_parameters(norm, params, collections):
  x = jnp.ones((2, 4, 4, 3))
  variables = conv_bn(norm=norm).init(jax.random.key(0), x, train=False)
  assert set(variables) == collections
  assert {m: set(p) for m, p in variables["params"].items()} == params


def test_normalize_none_is_identity_and_batch_uses_running_average_in_eval():
  class Norm(nn.Module):
    norm: str

    @nn.compact
    def __call__(self, x, *, train):
      return layers.normalize(self.norm, x, train=train)

  x = jax.random.normal(jax.random.key(0), (6, 3)) * 4.0 + 1.0
  np.testing.assert_array_equal(Norm("none").apply({}, x, train=True), x)
  variables = Norm("batch").init(jax.random.key(0), x, train=False)
  # Fresh running averages (mean 0, var 1): eval mode is x / sqrt(1 + eps).
  np.testing.assert_allclose(Norm("batch").apply(variables, x, train=False),
                             np.asarray(x) / np.sqrt(1 + EPS), rtol=1e-6)
  with pytest.raises(ValueError, match="Unknown normalization"):
    Norm("bogus").init(jax.random.key(0), x, train=False)
