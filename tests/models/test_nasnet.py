"""NASNet-A (mobile, 4 @ 1056): parameter count and multiply-adds against Keras applications and
Zoph et al. 2018, the genotype cells against the hard-coded cells they replaced (a fixture),
closed-form cell and op sizes, the factorized reduction and convolution ops against NumPy,
genotype errors, forward passes, a training step, vmap over initializations, and swapping
act/norm/kernel_init."""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import traverse_util

import zoo_checks as zc
from jaxcnn.models import count_params, create_model, list_models, model_info
from jaxcnn.models.nasnet import (NASNET_A_NORMAL, NASNET_A_REDUCTION, OPS, Adjust, Cell,
                                  Genotype, NASNet, ReLUConvBN, check_genotype)
from jaxcnn.nn.activations import Activation

# The CIFAR skeleton (5 cells, against the ImageNet stem's 7: 2/3 of the compile time) on 8x8
# images; nasnet_a_mobile covers the ImageNet stem.
TINY = NASNet(num_cells=1, penultimate_filters=48, stem_features=8, num_classes=3, stem="cifar")
TINY_INPUT = (2, 8, 8, 3)
FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "nasnet_a_cells.npz"


def test_registered_names():
  # jaxcnn.search.nasnet adds "nasnet" (the skeleton with genotype fields) when imported.
  assert set(list_models("nasnet*")) - {"nasnet"} == {"nasnet_a_mobile"}


def test_params_and_macs_match_published():
  zc.check_published("nasnet_a_mobile")
  count = count_params(create_model("nasnet_a_mobile"))
  assert abs(count - model_info("nasnet_a_mobile").published.paper_params) < 0.05e6  # "5.3M"


@pytest.mark.slow  # compiling NASNet-A mobile; TINY's forward and train step cover the cells
def test_jit_forward_small_input():
  model = create_model("nasnet_a_mobile", num_classes=7)
  zc.check_small_forward(model)


def _flat(tree) -> dict:
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.fixture(scope="module")
def mobile_variables():
  return zc.abstract_init(create_model("nasnet_a_mobile"), (1, 224, 224, 3))[1]


def test_genotype_cells_match_the_hard_coded_cells(mobile_variables):
  """The fixture was written by the code before the cells were genotypes (commit e1d83ae,
  Figure 4 as closures): nasnet_a_mobile's variable tree (names and shapes), and the variables
  and eval/train logits of a tiny NASNet-A on a fixed 32x32 batch."""
  f = np.load(FIXTURE)
  mobile = sorted((k, list(a.shape)) for k, a in _flat(mobile_variables).items())
  assert mobile == [tuple(t) for t in json.loads(str(f["mobile_tree"]))]
  assert sum(math.prod(s) for k, s in mobile if k.startswith("params/")) == 5_289_978

  tiny = NASNet(num_cells=1, penultimate_filters=48, stem_features=4, filter_multiplier=1,
                num_classes=3, dropout_rate=0.0)
  x = jnp.asarray(np.random.RandomState(0).standard_normal((2, 32, 32, 3)).astype(np.float32))
  tree = json.loads(str(f["tiny_tree"]))
  abstract = _flat(zc.abstract_init(tiny, x.shape)[1])
  assert sorted((k, list(a.shape)) for k, a in abstract.items()) == [tuple(t) for t in tree]
  values = np.split(f["tiny_values"], np.cumsum([math.prod(s) for _, s in tree])[:-1])
  variables = traverse_util.unflatten_dict(
      {tuple(k.split("/")): v.reshape(s) for (k, s), v in zip(tree, values)})
  # Bitwise when written; to float noise since depthwise convolutions are sums of slices on CPU
  # (jaxcnn.nn.conv), which add the taps in another order than XLA's convolution.
  np.testing.assert_allclose(tiny.apply(variables, x, train=False), f["eval_logits"], rtol=1e-5,
                             atol=1e-6)
  out, _ = tiny.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out, f["train_logits"], rtol=1e-5, atol=1e-6)


def test_cell_structure(mobile_variables):
  # 2 stem cells, 3 x 4 normal cells, 2 reductions; normal cells output 6 x filters channels,
  # the last one 1056 = 6 x 176; filters double at each reduction (44, 88, 176).
  v = mobile_variables
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
  cell = Cell(f, NASNET_A_REDUCTION if reduction else NASNET_A_NORMAL, reduction)
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


# Weights of each op on f channels in and out (kernels, then the norm's scale and offset), by hand.
OP_PARAMS = {
    "identity": lambda f, s: 0 if s == 1 else f * f + 2 * f,  # stride 2: factorized reduction
    "conv_1x3_3x1": lambda f, s: 6 * f * f + 2 * f,
    "conv_1x7_7x1": lambda f, s: 14 * f * f + 2 * f,
    "dil_conv_3x3": lambda f, s: 9 * f * f + 2 * f,
    "avg_pool_3x3": lambda f, s: 0, "max_pool_3x3": lambda f, s: 0,
    "max_pool_5x5": lambda f, s: 0, "max_pool_7x7": lambda f, s: 0,
    "conv_1x1": lambda f, s: f * f + 2 * f,
    "conv_3x3": lambda f, s: 9 * f * f + 2 * f,
    "sep_conv_3x3": lambda f, s: _sep_params(3, f),
    "sep_conv_5x5": lambda f, s: _sep_params(5, f),
    "sep_conv_7x7": lambda f, s: _sep_params(7, f),
}


def test_all_thirteen_ops_sizes_and_strides():
  """Zoph et al. 2018, Section 3 lists 13 ops. A one-block cell op(h) + op(p) on 7x7 inputs:
  stride 1 in a normal cell, stride 2 (SAME: ceil(7 / 2) = 4) in a reduction cell."""
  assert sorted(OPS) == sorted(OP_PARAMS) and len(OPS) == 13
  f, c_h = 4, 6
  h, p = jnp.ones((1, 7, 7, c_h)), jnp.ones((1, 7, 7, f))
  for op in OPS:
    for reduction, size in ((False, 7), (True, 4)):
      cell = Cell(f, Genotype(((((op, 0), (op, 1)),)), (2,)), reduction)
      out, v = jax.eval_shape(lambda k: cell.init_with_output(k, h, p, train=False),
                              jax.random.key(0))
      assert out.shape == (1, size, size, f), (op, reduction)
      n = sum(math.prod(a.shape) for a in jax.tree.leaves(v["params"]))
      assert n == c_h * f + 2 * f + 2 * OP_PARAMS[op](f, 1 + reduction), (op, reduction)


def _conv_same(x, w, dilation=1):
  """NumPy stride-1 correlation, zero-padded to keep the size; x [h, w, c], w [kh, kw, c, o]."""
  kh, kw = w.shape[:2]
  ph, pw = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
  xp = np.pad(x, ((ph, ph), (pw, pw), (0, 0)))
  out = np.zeros(x.shape[:2] + (w.shape[-1],))
  for i in range(kh):
    for j in range(kw):
      patch = xp[i * dilation:i * dilation + x.shape[0], j * dilation:j * dilation + x.shape[1]]
      out += patch @ w[i, j]
  return out


@pytest.mark.parametrize("op", ["dil_conv_3x3", "conv_1x3_3x1"])
def test_conv_ops_match_numpy(op):
  # The 3x3 convolution with dilation 2 sees a 5x5 window; 1x3 then 3x1 (no act or norm between
  # them) is the 3x3 convolution with kernel k[i, j] = a[j] @ b[i].
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 9, 9, 3), dtype=np.float32)
  if op == "dil_conv_3x3":
    k = rng.standard_normal((3, 3, 3, 5), dtype=np.float32)
    layer, params = ReLUConvBN(5, 3, dilation=2), {"Conv_0": {"kernel": k}}
    expected = _conv_same(x[0], k, dilation=2)
  else:
    a = rng.standard_normal((1, 3, 3, 5), dtype=np.float32)  # 1x3, 3 -> 5 channels
    b = rng.standard_normal((3, 1, 5, 5), dtype=np.float32)  # 3x1, 5 -> 5
    layer, params = ReLUConvBN(5, 3, factorized=True), {"Conv_0": {"kernel": a},
                                                        "Conv_1": {"kernel": b}}
    expected = _conv_same(x[0], np.einsum("jcm,imo->ijco", a[0], b[:, 0]))
  layer = layer.clone(norm="none", act="identity")
  out = np.asarray(layer.apply({"params": params}, x, train=False))[0]
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("genotype, match", [
    (Genotype(((("sep_conv_9x9", 0), ("identity", 1)),), (2,)),
     "Unknown NASNet cell op 'sep_conv_9x9'"),
    (Genotype(((("identity", 0), ("identity", 1)), (("identity", 3), ("identity", 0))), (4,)),
     "Block 1 reads state 3"),
    (Genotype(((("identity", 0), ("identity", 1)),), (2, 2)), "distinct states"),
    (Genotype(((("identity", 0), ("identity", 1)),), (3,)), "distinct states"),
    (Genotype(((("identity", 0),),), (2,)), "two \\(op, input\\) pairs"),
    ("sep_conv_3x3", "blocks"),
])
def test_bad_genotypes_raise(genotype, match):
  with pytest.raises(ValueError, match=match):
    check_genotype(genotype)


def test_reduction_cell_cannot_concatenate_its_inputs():
  with pytest.raises(ValueError, match="reduction cell cannot concatenate"):
    check_genotype(NASNET_A_NORMAL, reduction=True)
  with pytest.raises(ValueError, match="Unknown NASNet cell op"):  # raised when a model is built
    bad = NASNET_A_NORMAL._replace(blocks=((("conv_5x5", 0), ("identity", 1)),) * 5)
    zc.abstract_init(TINY.clone(normal_cell=bad), (1, 32, 32, 3))


def test_genotype_from_lists():  # e.g. read from a JSON config
  lists = ([[list(pair) for pair in block] for block in NASNET_A_REDUCTION.blocks],
           list(NASNET_A_REDUCTION.concat))
  assert check_genotype(lists, reduction=True) == NASNET_A_REDUCTION
  assert hash(check_genotype(lists)) == hash(NASNET_A_REDUCTION)


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
    zc.abstract_init(NASNet(penultimate_filters=100), (1, 32, 32, 3))
  with pytest.raises(ValueError, match="NHWC"):
    zc.abstract_init(TINY, (32, 32, 3))


@pytest.fixture(scope="module")
def two_variable_sets():
  """Two random variable sets of TINY, stacked (a vmapped init of TINY compiles for 10 s)."""
  return zc.stacked_random_variables(TINY, TINY_INPUT)


def test_train_step_loss_decreases(two_variable_sets):
  zc.check_trains(TINY, two_variable_sets, (8, 8, 8, 3), 3)


def test_vmap_over_two_initializations(two_variable_sets):
  zc.check_vmap_over_inits(TINY, two_variable_sets, TINY_INPUT)


def test_swapping_act_changes_every_activation_and_nothing_else():
  # One trace per model: the variables and the activations (the shapes do not depend on the
  # input size, the head pools globally).
  fns = lambda calls: [m.fn for m in calls if isinstance(m, Activation)]
  base, base_calls = zc.trace(TINY, TINY_INPUT)
  elu, elu_calls = zc.trace(TINY.clone(act="elu"), TINY_INPUT)
  n = len(fns(base_calls))
  assert n > 20 and fns(elu_calls) == [zc.act("elu")] * n
  assert fns(base_calls) == [zc.act("relu")] * n
  assert jax.tree.map(jnp.shape, elu) == jax.tree.map(jnp.shape, base)


def test_swapping_norm_and_kernel_init():
  zc.check_norm_and_kernel_init_counts(TINY, TINY_INPUT)


def test_cifar_stem_matches_the_published_cifar_network():
  """NASNet-A (6 @ 768) for CIFAR-10: 3.3M parameters (Zoph et al. 2018, Table 1), a stride-1
  stem convolution and no stem cells; feature maps 32 -> 16 -> 8."""
  model = NASNet(num_cells=6, penultimate_filters=768, stem_features=96, num_classes=10,
                 stem="cifar")
  params = zc.abstract_init(model, (1, 32, 32, 3))[1]["params"]
  assert abs(sum(math.prod(a.shape) for a in jax.tree.leaves(params)) - 3.3e6) < 0.05e6
  assert params["stem"]["kernel"].shape == (3, 3, 3, 96)
  assert not any(name.startswith("stem_cell") for name in params)
  tiny = TINY.clone(penultimate_filters=192)
  capture = lambda mdl, method_name: isinstance(mdl, Cell) and method_name == "__call__"
  _, state = jax.eval_shape(lambda v, x: tiny.apply(
      v, x, train=False, capture_intermediates=capture, mutable=["intermediates"]),
      zc.abstract_init(tiny, (1, 16, 16, 3))[1], jnp.zeros((1, 16, 16, 3)))
  sizes = {name: sub["__call__"][0].shape[1] for name, sub in state["intermediates"].items()}
  assert sizes == {"cell0": 16, "reduction1": 8, "cell1": 8, "reduction2": 4, "cell2": 4}
  with pytest.raises(ValueError, match="Unknown NASNet stem 'mnist'"):
    zc.abstract_init(TINY.clone(stem="mnist"), (1, 16, 16, 3))
