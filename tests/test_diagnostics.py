"""Tests for jaxcnn.diagnostics, checked against NumPy recomputations and closed forms.

Model inits and the reference computations (jax.grad, jax.hessian, capture_intermediates) run
under jax.jit: one compiled program each instead of dozens of op-by-op dispatches (the values are
the same; only the test's compile time drops)."""

import math

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from matplotlib.figure import Figure

from jaxcnn import diagnostics
from jaxcnn.nn import activations, initializers


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
  variables = jax.jit(model.init)(jax.random.key(1), x)
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
  variables = jax.jit(Net().init)(jax.random.key(0), x)
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
  grads = jax.jit(jax.grad(lambda p: loss_fn({"params": p}, x)))(variables["params"])
  expected = {m: np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in leaves.values()))
              for m, leaves in grads.items()}
  assert list(norms) == list(expected)
  for module, value in expected.items():
    np.testing.assert_allclose(norms[module], value, rtol=1e-5)


def test_gradient_norms_of_linear_regression_closed_form():
  x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
  target = np.arange(16, dtype=np.float32)[:, None]
  model = nn.Dense(1)
  variables = jax.jit(model.init)(jax.random.key(0), x)
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
  variables = jax.jit(model.init)(jax.random.key(1), x)
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


# ----------------------------------------------------------------------------------------------
# network_stats: against jax.grad and flax's capture_intermediates.


class DeepCNN(nn.Module):
  """``depth`` x (conv3x3 -> relu), global mean, dense 10; kernels from ``kernel_init``."""
  depth: int = 3
  kernel_init: str = "kaiming_normal"

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    init = initializers.get(self.kernel_init)
    for _ in range(self.depth):
      x = activations.Activation("relu")(nn.Conv(2, (3, 3), kernel_init=init)(x))
    return nn.Dense(10, kernel_init=init)(x.mean(axis=(1, 2)))


def _captured(model, variables, x, types):
  """Outputs of every module of ``types`` ({path: array}), via flax's capture_intermediates."""
  _, state = jax.jit(lambda v, x: model.apply(
      v, x, train=False, mutable=["intermediates"],
      capture_intermediates=lambda m, _: isinstance(m, types)))(variables, x)
  flat = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
  return {"/".join(str(k.key) for k in path[:-2]): np.asarray(v) for path, v in flat}


def _classification_batch(n=32, side=6, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(n, side, side, 1)), jnp.float32),
          jnp.asarray(rng.integers(0, 10, n), jnp.int32))


def test_network_stats_match_jax_grad_and_numpy_std():
  model = DeepCNN(depth=3)
  x, y = _classification_batch()
  variables = jax.jit(model.init)(jax.random.key(0), x)
  stats = diagnostics.network_stats(model, variables, x, y)
  assert stats["weight"] == ["Conv_0", "Conv_1", "Conv_2", "Dense_0"]
  assert stats["activation"] == ["Activation_0", "Activation_1", "Activation_2"]

  def loss(params):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  grads = jax.jit(jax.grad(loss))(variables["params"])
  expected = [np.linalg.norm(np.asarray(grads[n]["kernel"], np.float64)) for n in stats["weight"]]
  np.testing.assert_allclose(stats["grad_norm"], expected, rtol=1e-5)
  assert stats["loss"] == pytest.approx(float(jax.jit(loss)(variables["params"])), rel=1e-6)
  acts = _captured(model, variables, x, activations.Activation)
  np.testing.assert_allclose(stats["act_std"], [acts[n].std() for n in stats["activation"]],
                             rtol=1e-5)


def test_network_stats_of_tiny_activations_do_not_underflow():
  # 10 layers of normal(0.001): activations ~1e-23, whose squares underflow float32.
  model = DeepCNN(depth=10, kernel_init="normal(stddev=0.001)")
  x, y = _classification_batch(seed=1)
  variables = jax.jit(model.init)(jax.random.key(0), x)
  stats = diagnostics.network_stats(model, variables, x, y)
  acts = _captured(model, variables, x, activations.Activation)
  expected = [acts[n].astype(np.float64).std() for n in stats["activation"]]
  assert 0 < expected[-1] < 1e-18
  assert float(jnp.std(acts[stats["activation"][-1]])) == 0.0  # what a plain std would report
  np.testing.assert_allclose(stats["act_std"], expected, rtol=1e-4)
  assert np.all(stats["grad_norm"] > 0)


# ----------------------------------------------------------------------------------------------
# unit_stats: dead and saturated units of stacked models, against capture_intermediates.


class ActNet(nn.Module):
  """conv3x3 (4) -> act -> global mean -> dense 6 -> act -> dense 3."""
  act: str = "relu"

  @nn.compact
  def __call__(self, x):
    x = activations.Activation(self.act)(nn.Conv(4, (3, 3))(x))
    x = activations.Activation(self.act)(nn.Dense(6)(x.mean(axis=(1, 2))))
    return nn.Dense(3)(x)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_unit_stats_bookkeeping(act):
  model = ActNet(act=act)
  x = jax.random.normal(jax.random.key(1), (16, 8, 8, 1))
  init = jax.jit(model.init)
  p0, p1 = (init(jax.random.key(k), x)["params"] for k in (2, 3))
  # Model 0: kill conv channels 0 and 1 and hidden units 0-2 with hugely negative biases.
  p0["Conv_0"]["bias"] = p0["Conv_0"]["bias"].at[:2].set(-1e3)
  p0["Dense_0"]["bias"] = p0["Dense_0"]["bias"].at[:3].set(-1e3)
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), p0, p1)
  stats = diagnostics.unit_stats(model, stacked, x, 2)
  assert stats["dead"].shape == stats["saturated"].shape == (2, 2)
  capture = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True,
                                             mutable=["intermediates"])[1])
  for m, p in enumerate((p0, p1)):
    state = capture({"params": p}, x)
    outs = [np.asarray(state["intermediates"][f"Activation_{i}"]["__call__"][0]) for i in (0, 1)]
    for layer, y in enumerate(outs):
      if act == "relu":
        expected = np.mean(np.all(y.reshape(-1, y.shape[-1]) == 0, axis=0))
        assert stats["dead"][m, layer] == pytest.approx(expected)
        assert np.isnan(stats["saturated"][m, layer])
      else:
        assert stats["saturated"][m, layer] == pytest.approx(np.mean(np.abs(y) > 0.99))
        assert np.isnan(stats["dead"][m, layer])
  if act == "relu":
    assert stats["dead"][0, 0] >= 0.5 and stats["dead"][0, 1] >= 0.5  # the killed units
  else:
    assert stats["saturated"][0, 0] >= 0.5  # tanh(-1e3 + ...) = -1 in the killed channels
  assert diagnostics.has_unit_stats("relu") and diagnostics.has_unit_stats("sigmoid")
  assert not diagnostics.has_unit_stats("elu")


# ----------------------------------------------------------------------------------------------
# Hessian eigenvalue, loss sensitivity, second moments: against eigvalsh and closed forms.


def _least_squares(w, x, y):
  return 0.5 * jnp.mean((x @ w["w"] - y) ** 2)


def test_power_iteration_matches_eigvalsh_on_least_squares():
  rng = np.random.default_rng(4)
  x = (rng.normal(size=(100, 5)) * [3.0, 1.0, 0.5, 0.2, 0.1] + 1.0).astype(np.float32)
  y = rng.normal(size=100).astype(np.float32)
  hessian = x.astype(np.float64).T @ x / len(x)  # of 0.5 mean (x.w - y)^2, any w
  lam, v = diagnostics.hessian_top_eigenvalue(_least_squares, {"w": jnp.zeros(5)}, x, y,
                                              key=jax.random.PRNGKey(0), num_iters=100)
  top = np.linalg.eigvalsh(hessian)[-1]
  assert float(lam) == pytest.approx(top, rel=1e-4)
  np.testing.assert_allclose(hessian @ np.asarray(v), top * np.asarray(v), atol=1e-3 * top)
  hv = diagnostics.hessian_vector_product(_least_squares, {"w": jnp.ones(5)},
                                          {"w": jnp.arange(5.0)}, x, y)
  np.testing.assert_allclose(np.asarray(hv["w"]), hessian @ np.arange(5.0), rtol=1e-4)


def _softmax_loss(params, x, labels):
  logits = nn.Dense(4).apply({"params": params}, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_power_iteration_matches_softmax_hessian_at_zero_weights():
  # Linear softmax classifier with bias at W = 0: H = E[x~ x~^T] kron (I - 11^T/K) / K.
  rng = np.random.default_rng(5)
  k, n = 4, 200
  x = rng.uniform(0, 1, size=(n, 6)).astype(np.float32)
  labels = rng.integers(0, k, n).astype(np.int32)
  shapes = jax.eval_shape(nn.Dense(k).init, jax.random.PRNGKey(0), x[:1])["params"]
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  exact = jax.jit(jax.hessian(lambda v: _softmax_loss(unravel(v), x, labels)))(flat)
  eig_exact = np.linalg.eigvalsh(np.asarray(exact, np.float64))
  xa = np.concatenate([x, np.ones((n, 1))], 1).astype(np.float64)
  eig_closed = np.linalg.eigvalsh(np.kron(xa.T @ xa / n, (np.eye(k) - 1.0 / k) / k))
  np.testing.assert_allclose(np.sort(eig_exact), np.sort(eig_closed), atol=1e-5)
  lam, _ = diagnostics.hessian_top_eigenvalue(_softmax_loss, params, x, labels,
                                              key=jax.random.PRNGKey(1), num_iters=200)
  assert float(lam) == pytest.approx(eig_exact[-1], rel=1e-3)
  assert diagnostics.second_moment_eigenvalues(x)[0] / k == pytest.approx(eig_exact[-1], rel=1e-5)
  no_bias = diagnostics.second_moment_eigenvalues(x, bias=False)
  np.testing.assert_allclose(no_bias, np.linalg.eigvalsh(x.astype(np.float64).T @ x / n)[::-1],
                             rtol=1e-10)


def _quadratic(p, c):
  return c + 0.5 * jnp.sum(p["a"] ** 2) + 0.5 * jnp.sum(p["b"] ** 2)


def test_loss_sensitivity_bookkeeping():
  params = {"a": jnp.zeros((3, 4)), "b": jnp.zeros(5)}  # P = 17
  eps, c = 0.1, 2.0
  rel = diagnostics.loss_sensitivity(_quadratic, params, jnp.float32(c),
                                     key=jax.random.PRNGKey(0), eps=eps, num_samples=6)
  # ||d|| = eps sqrt(P) for every sample, so L(d) - L(0) = 0.5 eps^2 P exactly.
  assert rel.shape == (6,)
  np.testing.assert_allclose(np.asarray(rel), 0.5 * eps**2 * 17 / c, rtol=1e-5)
  # Linear loss c + g.p: |g.d| / c with d uniform on the sphere of radius eps sqrt(P);
  # E|g.u| = ||g|| * E|u_1| over the unit sphere, checked against a NumPy Monte Carlo.
  g = jnp.arange(1.0, 18.0)
  linear = lambda p, c: c + jnp.dot(g, jax.flatten_util.ravel_pytree(p)[0])
  rel = diagnostics.loss_sensitivity(linear, params, jnp.float32(c), key=jax.random.PRNGKey(1),
                                     eps=eps, num_samples=4000)
  u = np.random.default_rng(0).normal(size=(200_000, 17))
  u /= np.linalg.norm(u, axis=1, keepdims=True)
  expected = eps * math.sqrt(17) * np.mean(np.abs(u @ np.arange(1.0, 18.0))) / c
  assert float(jnp.mean(rel)) == pytest.approx(expected, rel=0.05)


def test_steps_to_target_by_hand():
  steps = [10, 20, 30, 40]
  assert int(diagnostics.steps_to_target([2.0, 1.0, 0.4, 0.3], 0.5, steps=steps)) == 30
  assert int(diagnostics.steps_to_target([2.0, np.nan, np.inf, 0.6], 0.5, steps=steps)) == -1
  # Two models; default steps 1..T; a window of 2: means (1.5, 0.7, 0.35) -> first <= 0.5 ends
  # at step 4 for model 0; model 1 (0.2 everywhere) reaches it with the first full window.
  curves = np.array([[2.0, 0.2], [1.0, 0.2], [0.4, 0.2], [0.3, 0.2]])
  np.testing.assert_array_equal(diagnostics.steps_to_target(curves, 0.5, window=2), [4, 2])
  with pytest.raises(ValueError, match="differ in length"):
    diagnostics.steps_to_target([1.0], 0.5, steps=steps)


def test_moving_average_matches_numpy_convolution():
  x = np.random.default_rng(0).random(50)
  np.testing.assert_allclose(diagnostics.moving_average(x, 7), np.convolve(x, np.ones(7) / 7, "valid"))
  for bad in (0, 51):
    with pytest.raises(ValueError, match="window"):
      diagnostics.moving_average(x, bad)


def test_steps_to_target_on_a_linear_curve():
  # e_t = 1 - t / 1000 at step t = 1..1000; the mean of the last w steps ending at T is
  # 1 - (T - (w - 1) / 2) / 1000, which first drops to <= 0.2505 at T = 749.5 + (w - 1) / 2.
  t = np.arange(1, 1001)
  errors = 1.0 - t / 1000.0
  for w in (1, 11, 50):
    expected = math.ceil(749.5 + (w - 1) / 2)
    assert int(diagnostics.steps_to_target(errors, 0.2505, window=w)) == expected
  # Two models: the second plateaus at 0.5 and never reaches the target.
  both = np.stack([errors, np.maximum(errors, 0.5)], axis=1)
  np.testing.assert_array_equal(diagnostics.steps_to_target(both, 0.2505, window=11), [755, -1])


def test_steps_to_target_uses_the_running_mean_not_single_batches():
  errors = np.full(100, 0.9)
  errors[10] = 0.0  # one lucky batch
  errors[60:] = 0.05
  assert int(diagnostics.steps_to_target(errors, 0.1, window=1)) == 11
  # Window 20: the first window with mean <= 0.1 holds one 0.9 (step 60) and nineteen 0.05
  # (steps 61-79): (0.9 + 19 * 0.05) / 20 = 0.0925, so 79 iterations.
  expected = next(k for k in range(20, 101) if errors[k - 20:k].mean() <= 0.1)
  assert int(diagnostics.steps_to_target(errors, 0.1, window=20)) == expected == 79
