"""The studies' networks as registered models: MLP variants, ActCNN, PlainCNN."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo_checks as zc
from jaxcnn.models import count_params, create_model, list_models
from jaxcnn.models._common import model_info
from jaxcnn.nn import activations

NAMES = ("deep_mlp", "mlp", "softmax_regression", "act_cnn", "plain_cnn")
SMALL = {"deep_mlp": dict(depth=3, width=16), "mlp": {}, "softmax_regression": {},
         "act_cnn": dict(features=(4, 8), hidden=12, kernel_size=3),
         "plain_cnn": dict(stage_sizes=(1, 1), num_filters=4)}
SHAPE = {"deep_mlp": (2, 8, 8, 1), "mlp": (2, 8, 8, 1), "softmax_regression": (2, 8, 8, 1),
         "act_cnn": (2, 8, 8, 1), "plain_cnn": (2, 8, 8, 3)}


def test_registered_with_input_size():
  assert set(NAMES) <= set(list_models())
  assert model_info("deep_mlp").input_size == (28, 28, 1)
  assert model_info("act_cnn").input_size == (28, 28, 1)
  assert model_info("plain_cnn").input_size == (32, 32, 3)
  assert model_info("softmax_regression").family == "mlp"


def _dense(n_in, n_out, bias=True):
  return n_in * n_out + (n_out if bias else 0)


@pytest.mark.parametrize("depth,width", [(0, 5), (1, 7), (4, 10)])
def test_deep_mlp_params_by_formula(depth, width):
  d, k = 64, 10
  plain = _dense(d, width) + (depth - 1) * _dense(width, width) + _dense(width, k) if depth \
      else _dense(d, k)
  assert count_params(create_model("deep_mlp", depth=depth, width=width), (1, 8, 8, 1)) == plain
  if depth:
    # BatchNorm: no hidden bias, a scale and an offset per unit instead.
    bn = create_model("deep_mlp", depth=depth, width=width, norm="batch")
    assert count_params(bn, (1, 8, 8, 1)) == plain + depth * width
    variables = zc.abstract_variables(bn, (1, 8, 8, 1))
    assert "bias" not in variables["params"]["Dense_0"]
    assert variables["params"][f"Dense_{depth}"]["bias"].shape == (k,)
    assert len(variables["batch_stats"]) == depth


def test_mlp_and_softmax_regression_params_and_names():
  v = zc.abstract_variables(create_model("mlp"), (1, 8, 8, 1))["params"]
  assert sorted(v) == ["Dense_0", "Dense_1", "Dense_2"]
  assert count_params(create_model("mlp"), (1, 8, 8, 1)) == (
      _dense(64, 32) + _dense(32, 32) + _dense(32, 10))
  v = zc.abstract_variables(create_model("softmax_regression"), (1, 8, 8, 1))["params"]
  assert sorted(v) == ["head"] and v["head"]["kernel"].shape == (64, 10)
  hidden = create_model("softmax_regression", widths=(20,), num_classes=3)
  v = zc.abstract_variables(hidden, (1, 12))["params"]  # vectors in (PCA output)
  assert sorted(v) == ["Dense_0", "head"]
  assert count_params(hidden, (1, 2, 2, 3)) == _dense(12, 20) + _dense(20, 3)


def test_head_inits():
  """mlp: every kernel from kernel_init; softmax_regression: a lecun_normal head (std
  1/sqrt(fan_in)) beside He-normal hidden kernels (std sqrt(2/fan_in))."""
  x = jnp.zeros((1, 400))
  v = create_model("mlp", widths=(400,), kernel_init="zeros").init(zc.key(0), x)["params"]
  assert not np.any(np.asarray(v["Dense_1"]["kernel"]))
  v = create_model("softmax_regression", widths=(400,)).init(zc.key(0), x)["params"]
  assert np.std(v["head"]["kernel"]) == pytest.approx(1 / 20, rel=0.1)
  assert np.std(v["Dense_0"]["kernel"]) == pytest.approx(np.sqrt(2 / 400), rel=0.05)


def test_act_cnn_params_by_formula():
  """Two 3x3 SAME convs with bias and 2x2 pools on 8x8 (-> 4x4 -> 2x2), dense 12, head 10."""
  n = (9 * 1 * 4 + 4) + (9 * 4 * 8 + 8) + _dense(2 * 2 * 8, 12) + _dense(12, 10)
  assert count_params(create_model("act_cnn", **SMALL["act_cnn"]), (1, 8, 8, 1)) == n
  # The default: 5x5 convs 16, 32 on 28x28 (-> 14 -> 7), dense 64.
  n = (25 * 16 + 16) + (25 * 16 * 32 + 32) + _dense(7 * 7 * 32, 64) + _dense(64, 10)
  assert count_params(create_model("act_cnn"), (1, 28, 28, 1)) == n
  # PReLU: one learned slope per channel of each of the three activations.
  assert count_params(create_model("act_cnn", act="prelu"), (1, 28, 28, 1)) == n + 16 + 32 + 64


def test_plain_cnn_params_by_formula():
  """6n + 2 weight layers: a stem and 2n 3x3 convs per stage (channels 16, 32, 64), a head."""
  n, c_in = 9 * 3 * 16 + 16, 16
  for i in range(3):
    for _ in range(2 * 3):
      c = 16 * 2**i
      n, c_in = n + 9 * c_in * c + c, c
  n += _dense(64, 10)
  assert count_params(create_model("plain_cnn"), (1, 32, 32, 3)) == n
  v = zc.abstract_variables(create_model("plain_cnn"), (1, 32, 32, 3))["params"]
  assert len([k for k in v if k.startswith("Conv_")]) == 6 * 3 + 1


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_jit_and_vmap_over_two_inits(name):
  model = create_model(name, num_classes=5, **SMALL[name])
  shape = SHAPE[name]
  assert zc.output_shape(model, shape).shape == (shape[0], 5)
  assert zc.output_shape(model, shape, train=True).shape == (shape[0], 5)
  y = zc.compiled_forward(model, shape)
  assert y.shape == (shape[0], 5)
  both = zc.vmap_two_inits(model, shape)
  assert both.shape == (2, shape[0], 5) and np.all(np.isfinite(both))
  assert not np.allclose(both[0], both[1])


@pytest.mark.parametrize("name", ["deep_mlp", "act_cnn", "plain_cnn"])
def test_act_swap(name):
  zc.check_act_swap(name, SHAPE[name], **SMALL[name])


@pytest.mark.parametrize("name", ["deep_mlp", "mlp", "plain_cnn"])
def test_kernel_init_swap(name):
  zc.check_kernel_init_swap(name, SHAPE[name], **SMALL[name])


def test_act_cnn_kernel_init_reaches_all_but_the_lecun_head():
  init = jax.nn.initializers.constant(0.125)
  _, calls = zc.trace(create_model("act_cnn", kernel_init=init, **SMALL["act_cnn"]), SHAPE["act_cnn"])
  layers = [m for m in calls if isinstance(m, (nn.Conv, nn.Dense))]
  assert [m.name for m in layers if m.kernel_init is not init] == ["head"]
  assert len(layers) == 4


@pytest.mark.parametrize("name", ["deep_mlp", "act_cnn", "plain_cnn"])
def test_norm_swap(name):
  """``norm="batch"``: a BatchNorm after every hidden layer, whose bias it replaces (a scale and
  an offset per unit instead of a bias: one more parameter per normalized unit)."""
  shape = SHAPE[name]
  none = zc.abstract_variables(create_model(name, **SMALL[name]), shape)
  bn, calls = zc.trace(create_model(name, norm="batch", **SMALL[name]), shape)
  assert "batch_stats" not in none
  units = sum(leaf.shape[0] for leaf in jax.tree.leaves(bn["batch_stats"])) // 2
  assert len(bn["batch_stats"]) == len([m for m in calls if isinstance(m, nn.BatchNorm)]) > 0
  count = lambda v: sum(leaf.size for leaf in jax.tree.leaves(v["params"]))  # noqa: E731
  assert count(bn) == count(none) + units
  assert zc.output_shape(create_model(name, norm="batch", **SMALL[name]), shape,
                         train=True).shape == (shape[0], 10)


def test_create_model_takes_names_for_choices():
  model = create_model("act_cnn", act="tanh", kernel_init="xavier_normal", **SMALL["act_cnn"])
  assert zc.called(model, (1, 8, 8, 1)) == [activations.get("tanh")] * 3
  model = create_model("deep_mlp(depth=2, width=4)", act="leaky_relu(negative_slope=0.1)")
  assert len(model.widths) == 2
  assert zc.compiled_forward(model, (2, 8, 8, 1)).shape == (2, 10)
  with pytest.raises(ValueError):
    create_model("deep_mlp", depth=-1)


def test_deep_mlp_batchnorm_train_mode_standardizes():
  """Train mode: every BatchNorm'd pre-activation has mean 0 and variance 1 over the batch."""
  model = create_model("deep_mlp", depth=2, width=6, norm="batch", act="identity")
  x = jax.random.normal(zc.key(0), (32, 8, 8, 1)) * 3 + 1
  variables = model.init(zc.key(1), x, train=False)
  y, state = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                         capture_intermediates=True)
  assert y.shape == (32, 10)
  for i in range(2):
    h = np.asarray(state["intermediates"][f"BatchNorm_{i}"]["__call__"][0])
    np.testing.assert_allclose(h.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(h.var(axis=0), 1.0, atol=1e-3)
