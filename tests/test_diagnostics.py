"""Tests for jaxcnn.diagnostics, checked against NumPy recomputations and closed forms."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from jaxcnn import diagnostics
from jaxcnn.nn import activations


class SmallCNN(nn.Module):
  """conv3x3 -> relu -> conv3x3 -> tanh -> global mean -> dense."""

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = activations.Activation("relu")(nn.Conv(4, (3, 3))(x))
    x = activations.Activation("tanh")(nn.Conv(3, (3, 3))(x))
    return nn.Dense(2)(x.mean(axis=(1, 2)))


def conv3x3_same(x, kernel, bias):
  """NumPy reference for a stride-1 SAME 3x3 convolution in NHWC."""
  h, w = x.shape[1:3]
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(padded[:, i:i + h, j:j + w, :] @ kernel[i, j]
             for i in range(3) for j in range(3)) + bias


def numpy_forward(params, x):
  """The two hidden layers of SmallCNN in NumPy: [(conv1, relu), (conv2, tanh)]."""
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  z1 = conv3x3_same(np.asarray(x, np.float64), p["Conv_0"]["kernel"], p["Conv_0"]["bias"])
  h1 = np.maximum(z1, 0)
  z2 = conv3x3_same(h1, p["Conv_1"]["kernel"], p["Conv_1"]["bias"])
  return z1, h1, z2, np.tanh(z2)


@pytest.fixture(scope="module")
def cnn():
  model = SmallCNN()
  x = jax.random.normal(jax.random.key(0), (8, 6, 6, 3))
  variables = model.init(jax.random.key(1), x)
  apply_fn = lambda v, x: model.apply(v, x, train=False)
  return apply_fn, variables, x


def with_param(variables, module, name, value):
  params = jax.tree_util.tree_map(lambda a: a, variables["params"])
  params[module] = {**params[module], name: value}
  return {**variables, "params": params}


def test_records_every_layer_in_forward_order(cnn):
  apply_fn, variables, x = cnn
  stats = diagnostics.activation_stats(apply_fn, variables, x)
  assert [(s.name, s.kind, s.op) for s in stats] == [
      ("Conv_0", "preactivation", "Conv"), ("Activation_0", "activation", "relu"),
      ("Conv_1", "preactivation", "Conv"), ("Activation_1", "activation", "tanh"),
      ("Dense_0", "preactivation", "Dense")]
  assert [s.shape for s in stats] == [(8, 6, 6, 4), (8, 6, 6, 4), (8, 6, 6, 3), (8, 6, 6, 3),
                                      (8, 2)]
  # Saturation only for bounded activations, dead units only for ReLU-family ones.
  assert [s.saturated is None for s in stats] == [True, True, True, False, True]
  assert [s.dead is None for s in stats] == [True, False, True, True, True]


def test_forward_pass_compiles_once_per_apply_fn(cnn):
  _, variables, x = cnn
  model, traces = SmallCNN(), []

  def apply_fn(v, x):
    traces.append(1)  # runs only while jax traces the forward pass
    return model.apply(v, x, train=False)

  first = diagnostics.activation_stats(apply_fn, variables, x)
  doubled = jax.tree_util.tree_map(lambda a: 2 * a, variables)
  second = diagnostics.activation_stats(apply_fn, doubled, x)
  assert len(traces) == 1
  assert [s.name for s in second] == [s.name for s in first]
  assert second[0].std == pytest.approx(2 * first[0].std, rel=1e-5)  # new values, same program


def test_stats_match_numpy_recomputation(cnn):
  apply_fn, variables, x = cnn
  stats = diagnostics.activation_stats(apply_fn, variables, x, bins=12)
  reference = numpy_forward(variables["params"], x)
  for s, y in zip(stats, reference):
    np.testing.assert_allclose(s.mean, y.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.std, y.std(), rtol=1e-4)
    counts, edges = np.histogram(y, bins=12)
    np.testing.assert_allclose(s.edges, edges, rtol=1e-4, atol=1e-5)
    assert s.counts.sum() == y.size
    assert np.abs(s.counts - counts).max() <= 2  # float32 vs float64 at bin edges
  assert stats[1].dead == 0.0
  np.testing.assert_allclose(stats[3].saturated, np.mean(np.abs(reference[3]) > 0.99), atol=1e-6)


def test_dead_fraction_detects_relu_units_with_large_negative_bias(cnn):
  apply_fn, variables, x = cnn
  bias = variables["params"]["Conv_0"]["bias"].at[jnp.array([0, 2])].set(-100.0)
  stats = diagnostics.activation_stats(apply_fn, with_param(variables, "Conv_0", "bias", bias), x)
  assert stats[1].dead == 0.5  # channels 0 and 2 of 4 never fire


def test_saturated_fraction_of_tanh_with_huge_weights(cnn):
  apply_fn, variables, x = cnn
  small = diagnostics.activation_stats(apply_fn, variables, x)[3].saturated
  kernel = 1000.0 * variables["params"]["Conv_1"]["kernel"]
  huge_vars = with_param(variables, "Conv_1", "kernel", kernel)
  huge = diagnostics.activation_stats(apply_fn, huge_vars, x)[3].saturated
  assert small < 0.2 and huge > 0.95
  reference = numpy_forward(huge_vars["params"], x)[3]
  np.testing.assert_allclose(huge, np.mean(np.abs(reference) > 0.99), atol=1e-6)


@pytest.mark.parametrize("spec", ["sigmoid", jax.nn.sigmoid])
def test_sigmoid_saturation_is_within_margin_of_zero_or_one(spec):
  class Gate(nn.Module):
    @nn.compact
    def __call__(self, x):
      return activations.Activation(spec)(x)

  # sigmoid: 4.5e-5, 0.018, 0.5, 0.982, 0.9910, 0.99995 -> three within 0.01 of 0 or 1.
  x = jnp.array([[-10.0, -4.0, 0.0, 4.0, 4.7, 10.0]])
  (stats,) = diagnostics.activation_stats(Gate().apply, {}, x)
  assert stats.op == "sigmoid" and stats.saturated == pytest.approx(0.5)
  (loose,) = diagnostics.activation_stats(Gate().apply, {}, x, saturation=0.98)
  assert loose.saturated == pytest.approx(5 / 6)  # 0.018 and 0.982 are within 0.02 of a bound


def test_learnable_activation_is_recorded_once_under_its_class_name():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      return activations.Activation("prelu")(nn.Dense(5)(x))

  x = jnp.ones((3, 4))
  variables = Net().init(jax.random.key(0), x)
  stats = diagnostics.activation_stats(Net().apply, variables, x)
  assert [(s.kind, s.op) for s in stats] == [("preactivation", "Dense"), ("activation", "PReLU")]


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="no Activation"):
    diagnostics.activation_stats(lambda v, x: 2 * x, {}, jnp.ones(3))
  with pytest.raises(ValueError, match="saturation"):
    diagnostics.activation_stats(lambda v, x: x, {}, jnp.ones(3), saturation=1.5)
  with pytest.raises(ValueError, match="params"):
    diagnostics.gradient_norms(lambda v, x: 0.0, {"batch_stats": {}}, jnp.ones(3))


def test_gradient_norms_match_jax_grad(cnn):
  apply_fn, variables, x = cnn
  loss_fn = lambda v, x: jnp.mean(apply_fn(v, x) ** 2)
  norms = diagnostics.gradient_norms(loss_fn, variables, x)
  grads = jax.grad(lambda p: loss_fn({"params": p}, x))(variables["params"])
  expected = {m: np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in leaves.values()))
              for m, leaves in grads.items()}
  assert list(norms) == list(expected)
  for module, value in expected.items():
    np.testing.assert_allclose(norms[module], value, rtol=1e-5)


def test_gradient_norms_of_linear_regression_closed_form():
  x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
  target = np.arange(16, dtype=np.float32)[:, None]
  model = nn.Dense(1)
  variables = model.init(jax.random.key(0), x)
  loss_fn = lambda v, x: 0.5 * jnp.mean((model.apply(v, x) - target) ** 2)
  (norm,) = diagnostics.gradient_norms(loss_fn, variables, x).values()
  w, b = (np.asarray(variables["params"][k], np.float64) for k in ("kernel", "bias"))
  residual = x @ w + b - target  # dL/dW = X^T r / N, dL/db = mean(r)
  expected = np.sqrt(np.sum((x.T @ residual / 16) ** 2) + np.sum(residual.mean(0) ** 2))
  np.testing.assert_allclose(norm, expected, rtol=1e-5)


def test_activation_gradient_norms_closed_form():
  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = activations.Activation("relu")(nn.Dense(5)(x))
      return nn.Dense(2)(x)

  model = MLP()
  x = jax.random.normal(jax.random.key(0), (7, 4))
  variables = model.init(jax.random.key(1), x)
  result = diagnostics.activation_gradient_norms(lambda v, x: model.apply(v, x).sum(), variables, x)
  assert [(name, kind) for name, kind, _ in result] == [
      ("Dense_0", "preactivation"), ("Activation_0", "activation"), ("Dense_1", "preactivation")]
  p = jax.tree_util.tree_map(np.asarray, variables["params"])
  z = np.asarray(x) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
  d_out = np.ones((7, 2))                                # d sum / d logits
  d_hidden = d_out @ p["Dense_1"]["kernel"].T            # through Dense_1
  d_pre = d_hidden * (z > 0)                             # through the ReLU
  expected = [np.linalg.norm(d_pre), np.linalg.norm(d_hidden), np.linalg.norm(d_out)]
  np.testing.assert_allclose([n for *_, n in result], expected, rtol=1e-5)


def test_plot_writes_png(cnn, tmp_path):
  apply_fn, variables, x = cnn
  stats = diagnostics.activation_stats(apply_fn, variables, x)
  path = tmp_path / "stats.png"
  fig = diagnostics.plot_activation_stats(stats, str(path), title="small CNN")
  assert isinstance(fig, Figure)
  assert len(fig.axes) == 2 + len(stats)  # mean, std, one histogram per layer
  data = path.read_bytes()
  assert data.startswith(b"\x89PNG") and len(data) > 5000
  with pytest.raises(ValueError, match="at least one"):
    diagnostics.plot_activation_stats([])
