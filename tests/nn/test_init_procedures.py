"""Tests for jaxcnn.nn.init_procedures: LSUV and Kraehenbuehl et al.'s within-layer init.

Layer outputs are read back independently of the code under test, with Flax's
``capture_intermediates``.
"""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.nn import init_procedures


class MLP(nn.Module):
  """Deep tanh MLP; biases drawn non-zero so LSUV needs more than one pass per layer."""
  depth: int = 8
  width: int = 32

  @nn.compact
  def __call__(self, x, train=False):
    for _ in range(self.depth):
      x = jnp.tanh(nn.Dense(self.width, bias_init=nn.initializers.normal(0.3))(x))
    return nn.Dense(5, use_bias=False)(x)


class CNN(nn.Module):
  """Small ReLU CNN."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(8, (3, 3))(x))
    x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2))(x))
    x = nn.relu(nn.Conv(16, (3, 3), use_bias=False)(x))
    return nn.Dense(10)(x.mean(axis=(1, 2)))


class Block(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Dense(16)(nn.relu(nn.Dense(24, name="inner")(x))))


class Nested(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = Block()(x)
    x = Block()(x)
    return nn.Dense(3)(x)


class BNNet(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    for features in (8, 8):
      x = nn.Conv(features, (3, 3), use_bias=False)(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    return nn.Dense(4)(x.mean(axis=(1, 2)))


def layer_outputs(model, variables, x):
  """{path: (N, units) outputs} of every Dense/Conv call, read with capture_intermediates."""
  capture = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=lambda m, name: (
      isinstance(m, (nn.Dense, nn.Conv)) and name == "__call__"), mutable=["intermediates"])[1])
  state = capture(variables, x)
  flat = flax.traverse_util.flatten_dict(state["intermediates"])
  return {k[:-1]: np.asarray(v[0]).reshape(-1, v[0].shape[-1]) for k, v in flat.items()}


def kernels(variables):
  flat = flax.traverse_util.flatten_dict(variables["params"])
  return {k[:-1]: np.asarray(v) for k, v in flat.items() if k[-1] == "kernel"}


def apply_fn(model):
  return lambda v, x: model.apply(v, x, train=False)


def key(seed):
  """RBG keys: their samplers compile several times faster on CPU than threefry's."""
  return jax.random.key(seed, impl="rbg")


def setup(model, shape, seed=0):
  k1, k2, k3 = jax.random.split(key(seed), 3)
  x, held_out = jax.random.normal(k1, shape), jax.random.normal(k2, shape)
  return x, held_out, jax.jit(model.init)(k3, x)


MODELS = {"mlp": (MLP(), (256, 16)), "cnn": (CNN(), (64, 8, 8, 3)), "nested": (Nested(), (256, 12))}


@pytest.fixture(scope="module", params=list(MODELS))
def lsuv_case(request):
  model, shape = MODELS[request.param]
  x, held_out, variables = setup(model, shape)
  original = jax.tree.map(np.array, variables)
  new = init_procedures.lsuv(apply_fn(model), variables, x, key=key(3))
  return request.param, model, x, held_out, variables, original, new


def test_lsuv_unit_std_on_batch(lsuv_case):
  name, model, x, _, _, _, new = lsuv_case
  outputs = layer_outputs(model, new, x)
  assert len(outputs) == {"mlp": 9, "cnn": 4, "nested": 5}[name]
  if name == "nested":
    assert {("Block_0", "inner"), ("Block_1", "Dense_0"), ("Dense_0",)} <= set(outputs)
  for path, y in outputs.items():
    assert abs(y.std() - 1.0) <= 0.01 + 1e-5, path


def test_lsuv_held_out_batch_roughly_unit_std(lsuv_case):
  _, model, _, held_out, _, _, new = lsuv_case
  for path, y in layer_outputs(model, new, held_out).items():
    assert 0.8 < y.std() < 1.25, path


def test_lsuv_kernels_are_scaled_orthogonal(lsuv_case):
  _, _, _, _, _, _, new = lsuv_case
  for path, w in kernels(new).items():
    w = w.reshape(-1, w.shape[-1])
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram / gram[0, 0], np.eye(len(gram)), atol=1e-4, err_msg=str(path))


def test_lsuv_returns_new_variables_without_mutating(lsuv_case):
  _, _, _, _, variables, original, new = lsuv_case
  jax.tree.map(np.testing.assert_array_equal, variables, original)
  assert type(new) is type(variables)
  assert jax.tree.structure(new) == jax.tree.structure(variables)
  old_kernels = kernels(original)
  for path, w in kernels(new).items():
    assert w.dtype == old_kernels[path].dtype and not np.allclose(w, old_kernels[path]), path


def test_lsuv_without_orthogonal_only_rescales():
  model, shape = MODELS["cnn"]
  x, _, variables = setup(model, shape, seed=1)
  new = init_procedures.lsuv(apply_fn(model), variables, x, orthogonal_first=False, target_std=2.0)
  for path, w in kernels(new).items():
    w0 = kernels(variables)[path]
    ratio = w / w0
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-4, err_msg=str(path))
  for path, y in layer_outputs(model, new, x).items():
    assert abs(y.std() - 2.0) <= 0.02 + 1e-5, path


def test_lsuv_batchnorm_model_keeps_batch_stats():
  model = BNNet()
  x, _, variables = setup(model, (16, 6, 6, 3))
  new = init_procedures.lsuv(apply_fn(model), variables, x, key=key(1))
  jax.tree.map(np.testing.assert_array_equal, new["batch_stats"], variables["batch_stats"])
  for path, y in layer_outputs(model, new, x).items():
    assert abs(y.std() - 1.0) <= 0.01 + 1e-5, path


def test_lsuv_on_root_dense_frozen_dict_deterministic():
  model = nn.Dense(7)
  x, _, variables = setup(model, (64, 5))
  new = init_procedures.lsuv(model.apply, flax.core.freeze(variables), x, key=key(5))
  assert isinstance(new, flax.core.FrozenDict)
  assert abs(float(model.apply(new, x).std()) - 1.0) <= 0.01 + 1e-5
  again = init_procedures.lsuv(model.apply, variables, x, key=key(5))
  other = init_procedures.lsuv(model.apply, variables, x, key=key(6))
  np.testing.assert_array_equal(again["params"]["kernel"], new["params"]["kernel"])
  assert not np.allclose(other["params"]["kernel"], new["params"]["kernel"])


def test_lsuv_warns_when_not_converging():
  model = nn.Dense(7)
  x, _, variables = setup(model, (64, 5))
  with pytest.warns(UserWarning, match="gave up after max_iters=2"):  # apply_fn ignores the kernel
    init_procedures.lsuv(lambda v, b: model.apply(variables, b), variables, x, max_iters=2,
                         orthogonal_first=False)
  with pytest.warns(UserWarning, match="layer <root> has output std 0, .* left unchanged"):
    new = init_procedures.lsuv(model.apply, variables, jnp.zeros_like(x), orthogonal_first=False)
  np.testing.assert_array_equal(new["params"]["kernel"], variables["params"]["kernel"])


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_kraehenbuehl_unit_mean_zero_std_one(name):
  model, shape = MODELS[name]
  x, held_out, variables = setup(model, shape, seed=2)
  original = jax.tree.map(np.array, variables)
  new = init_procedures.kraehenbuehl(apply_fn(model), variables, x)
  jax.tree.map(np.testing.assert_array_equal, variables, original)
  params = flax.traverse_util.flatten_dict(new["params"])
  for path, y in layer_outputs(model, new, x).items():
    np.testing.assert_allclose(y.std(0), 1.0, atol=1e-3, err_msg=str(path))
    if path + ("bias",) in params:
      np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-4, err_msg=str(path))
  for path, y in layer_outputs(model, new, held_out).items():  # statistics carry over, roughly
    sampling = 2 * (2 / len(y))**0.5  # ~2 sd of a difference of two batch means
    assert abs(y.std(0).mean() - 1.0) < 0.1 + sampling, path
    if path + ("bias",) in params:
      assert np.abs(y.mean(0)).mean() < 0.1 + sampling, path


def test_kraehenbuehl_scales_columns_and_shifts_bias():
  """Against the closed form on a single Dense layer: W_c / s_c, (b_c - m_c) / s_c."""
  model = nn.Dense(6, bias_init=nn.initializers.normal(1.0))
  x, _, variables = setup(model, (128, 4))
  y = np.asarray(model.apply(variables, x), np.float64)
  m, s = y.mean(0), y.std(0)
  new = init_procedures.kraehenbuehl(model.apply, variables, x, target_std=0.5)
  p, p0 = new["params"], variables["params"]
  np.testing.assert_allclose(p["kernel"], 0.5 * np.asarray(p0["kernel"]) / s, rtol=1e-5)
  np.testing.assert_allclose(p["bias"], 0.5 * (np.asarray(p0["bias"]) - m) / s, rtol=1e-4, atol=1e-6)
  # A unit that is constant on the batch is only shifted, not blown up.
  dead = {"params": {"kernel": p0["kernel"].at[:, 0].set(0.0), "bias": p0["bias"]}}
  new = init_procedures.kraehenbuehl(model.apply, dead, x)["params"]
  np.testing.assert_array_equal(new["kernel"][:, 0], 0.0)
  assert new["bias"][0] == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(new["kernel"][:, 1:], np.asarray(p0["kernel"][:, 1:]) / s[1:], rtol=1e-5)


def test_input_validation():
  model, shape = MODELS["mlp"]
  x, _, variables = setup(model, (4, 16))
  fn = apply_fn(model)
  with pytest.raises(ValueError, match="'params'"):
    init_procedures.lsuv(fn, {"batch_stats": {}}, x)
  with pytest.raises(TypeError, match="callable"):
    init_procedures.lsuv("model", variables, x)
  for kwargs in ({"target_std": 0.0}, {"tol": -1.0}, {"max_iters": 0}):
    with pytest.raises(ValueError, match="must be positive"):
      init_procedures.lsuv(fn, variables, x, **kwargs)
  with pytest.raises(ValueError, match="eps must be positive"):
    init_procedures.kraehenbuehl(fn, variables, x, eps=0.0)
  with pytest.raises(ValueError, match="No Dense or Conv layer"):
    init_procedures.lsuv(lambda v, b: b * 2, variables, x)
  with pytest.raises(ValueError, match="at least 2"):
    init_procedures.kraehenbuehl(fn, variables, x[:1])
  wrapped = lambda v, b: nn.Sequential([model]).apply({"params": {"layers_0": v["params"]}}, b)
  with pytest.raises(ValueError, match="layers_0/Dense_0 ran but .* no kernel"):
    init_procedures.lsuv(wrapped, variables, x)
