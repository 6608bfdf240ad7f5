"""NASNet-A (mobile, 4 @ 1056): parameter count and multiply-adds against Keras applications and
Zoph et al. 2018, closed-form cell sizes, the factorized reduction against NumPy, forward passes,
a training step, vmap over initializations, and swapping act/norm/kernel_init."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo_checks as zc
from jaxcnn.models import count_params, create_model, list_models, model_info
from jaxcnn.models.nasnet import Adjust, Cell, NASNetA

TINY = NASNetA(num_cells=1, penultimate_filters=192, stem_features=8, num_classes=3)



def test_registered_names():
  assert list_models("nasnet*") == ["nasnet_a_mobile"]


def test_params_and_macs_match_published():
  zc.check_published("nasnet_a_mobile")
  count = count_params(create_model("nasnet_a_mobile"))
  assert abs(count - model_info("nasnet_a_mobile").published.paper_params) < 0.05e6  # "5.3M"


def test_jit_forward_small_input():
  model = create_model("nasnet_a_mobile", num_classes=7)
  zc.check_small_forward(model)


def test_cell_structure():
  # 2 stem cells, 3 x 4 normal cells, 2 reductions; normal cells output 6 x filters channels,
  # the last one 1056 = 6 x 176; filters double at each reduction (44, 88, 176).
  _, v = zc.abstract_init(create_model("nasnet_a_mobile"), (1, 224, 224, 3))
  names = set(v["params"])
  assert {f"cell{i}" for i in range(12)} | {"stem_cell1", "stem_cell2", "reduction1",
                                            "reduction2"} <= names
  assert v["params"]["head"]["kernel"].shape == (1056, 1000)
  for i, filters in ((0, 44), (4, 88), (8, 176)):
    assert v["params"][f"cell{i}"]["Conv_0"]["kernel"].shape[-1] == filters


def _sep_params(k, f):
  # Two (depthwise k x k, pointwise f -> f, norm) rounds on an f-channel input.
  return 2 * (k * k * f + f * f + 2 * f)


@pytest.mark.parametrize("reduction", [False, True])
def test_cell_param_count_closed_form(reduction):
  c_h, f = 24, 16
  h = jnp.ones((1, 8, 8, c_h))
  p = jnp.ones((1, 8, 8, f))  # already f channels at h's size: no adjustment
  cell = Cell(f, reduction)
  (out, variables) = jax.eval_shape(
      lambda k: cell.init_with_output(k, h, p, train=False), jax.random.key(0))
  expected = c_h * f + 2 * f  # 1x1 on h + norm
  if reduction:  # Zoph et al. 2018, Figure 4 right: sep 5x5 x2, sep 7x7 x2, sep 3x3 x1
    expected += 2 * _sep_params(5, f) + 2 * _sep_params(7, f) + _sep_params(3, f)
    assert out.shape == (1, 4, 4, 4 * f)
  else:  # Figure 4 left: sep 5x5 x2, sep 3x3 x3
    expected += 2 * _sep_params(5, f) + 3 * _sep_params(3, f)
    assert out.shape == (1, 8, 8, 6 * f)
  assert sum(math.prod(a.shape) for a in jax.tree.leaves(variables["params"])) == expected


@pytest.mark.parametrize("size", [8, 7])
def test_factorized_reduction_matches_numpy(size):
  p = np.asarray(jax.random.normal(jax.random.key(0), (2, size, size, 6)))
  half = (size + 1) // 2
  adjust = Adjust(10, norm="none", act="identity")
  variables = adjust.init(jax.random.key(1), p, (2, half, half, 3), train=False)
  out = adjust.apply(variables, p, (2, half, half, 3), train=False)
  w1 = np.asarray(variables["params"]["Conv_0"]["kernel"])[0, 0]
  w2 = np.asarray(variables["params"]["Conv_1"]["kernel"])[0, 0]
  shifted = np.pad(p[:, 1:, 1:], ((0, 0), (0, 1), (0, 1), (0, 0)))  # Zoph et al.: shift by one
  expected = np.concatenate([p[:, ::2, ::2] @ w1, shifted[:, ::2, ::2] @ w2], axis=-1)
  assert out.shape == (2, half, half, 10)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_bad_configuration_raises():
  with pytest.raises(ValueError, match="penultimate_filters"):
    zc.abstract_init(NASNetA(penultimate_filters=100), (1, 32, 32, 3))
  with pytest.raises(ValueError, match="NHWC"):
    zc.abstract_init(TINY, (32, 32, 3))


@pytest.fixture(scope="module")
def two_inits():
  """Two initializations of TINY from one jitted, vmapped init (compiled once for the module)."""
  return zc.stacked_inits(TINY)


def test_train_step_loss_decreases(two_inits):
  zc.check_trains(TINY, two_inits, (8, 32, 32, 3), 3)


def test_vmap_over_two_initializations(two_inits):
  zc.check_vmap_over_inits(TINY, two_inits)


def test_swapping_act_changes_every_activation_and_nothing_else():
  n = len(zc.called(TINY))
  assert n > 20 and zc.called(TINY.clone(act="elu")) == [zc.act("elu")] * n
  assert zc.called(TINY) == [zc.act("relu")] * n
  shapes = lambda m: jax.tree.map(jnp.shape, zc.abstract_init(m, (1, 32, 32, 3))[1])
  assert shapes(TINY.clone(act="elu")) == shapes(TINY)


def test_swapping_norm_and_kernel_init():
  zc.check_norm_and_kernel_init_counts(TINY)
