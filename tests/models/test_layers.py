"""Tests for the MobileNet/EfficientNet blocks of jaxcnn.nn.layers: DepthwiseSeparable and
InvertedResidual, against closed-form parameter counts and a NumPy convolution."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.nn.layers import DepthwiseSeparable, InvertedResidual


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _numpy_conv(x, kernel, stride=1, groups=1):
  """Direct NHWC convolution with TensorFlow "SAME" padding, kernel (kh, kw, cin/groups, cout)."""
  n, h, w, cin = x.shape
  kh, kw, _, cout = kernel.shape
  out_h, out_w = -(-h // stride), -(-w // stride)
  pad_h = max((out_h - 1) * stride + kh - h, 0)
  pad_w = max((out_w - 1) * stride + kw - w, 0)
  xp = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                  (0, 0)))
  cin_g, cout_g = cin // groups, cout // groups
  out = np.zeros((n, out_h, out_w, cout))
  for i in range(out_h):
    for j in range(out_w):
      patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
      for g in range(groups):
        p = patch[..., g * cin_g:(g + 1) * cin_g]
        k = kernel[..., g * cout_g:(g + 1) * cout_g]
        out[:, i, j, g * cout_g:(g + 1) * cout_g] = np.einsum("nhwc,hwco->no", p, k)
  return out


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_separable_matches_numpy(stride):
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 7, 6, 4)))
  block = DepthwiseSeparable(5, strides=stride, norm="none", act="identity")
  variables = block.init(jax.random.key(1), x, train=False)
  out = jax.jit(lambda v, x: block.apply(v, x, train=False))(variables, x)
  dw = np.asarray(variables["params"]["depthwise"]["Conv_0"]["kernel"])
  pw = np.asarray(variables["params"]["pointwise"]["Conv_0"]["kernel"])
  assert dw.shape == (3, 3, 1, 4) and pw.shape == (1, 1, 4, 5)
  expected = _numpy_conv(_numpy_conv(x, dw, stride, groups=4), pw)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_depthwise_separable_param_count_and_activation():
  c_in, c_out, k = 8, 12, 5
  block = DepthwiseSeparable(c_out, kernel_size=k)
  variables = block.init(jax.random.key(0), jnp.ones((1, 8, 8, c_in)), train=False)
  # depthwise k*k*Cin, pointwise Cin*Cout, two BatchNorms (scale, bias).
  assert _count(variables["params"]) == k * k * c_in + 2 * c_in + c_in * c_out + 2 * c_out
  out = block.apply(variables, jax.random.normal(jax.random.key(1), (2, 8, 8, c_in)), train=False)
  assert out.shape == (2, 8, 8, c_out) and float(out.min()) >= 0.0  # ends with ReLU


@pytest.mark.parametrize("expand,se_ratio,kernel", [(1, 0.0, 3), (6, 0.0, 3), (6, 0.25, 5),
                                                    (4, 0.5, 3)])
def test_inverted_residual_param_count(expand, se_ratio, kernel):
  c_in, c_out = 8, 16
  block = InvertedResidual(c_out, expand_ratio=expand, kernel_size=kernel, se_ratio=se_ratio)
  variables = jax.eval_shape(lambda k: block.init(k, jnp.ones((1, 8, 8, c_in)), train=False),
                             jax.random.key(0))
  hidden = c_in * expand
  expected = (0 if expand == 1 else c_in * hidden + 2 * hidden)  # expand 1x1 + BN
  expected += kernel * kernel * hidden + 2 * hidden  # depthwise + BN
  if se_ratio:
    r = max(1, int(c_in * se_ratio))  # squeeze-excite on the block *input* channels
    expected += hidden * r + r + r * hidden + hidden
  expected += hidden * c_out + 2 * c_out  # linear projection + BN
  assert _count(variables["params"]) == expected
  assert ("expand" in variables["params"]) == (expand != 1)
  assert ("se" in variables["params"]) == (se_ratio > 0)


@pytest.mark.parametrize("c_out,stride,residual", [(8, 1, True), (16, 1, False), (8, 2, False)])
def test_inverted_residual_uses_shortcut_only_when_shapes_match(c_out, stride, residual):
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 8))
  block = InvertedResidual(c_out, strides=stride)
  variables = block.init(jax.random.key(1), x, train=False)
  # Zero the projection: the block's output is then the shortcut alone (x, or nothing).
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.zeros_like(p) if "project" in str(path) else p, variables["params"])
  out = block.apply({**variables, "params": params}, x, train=False)
  assert out.shape == (2, 8 // stride, 8 // stride, c_out)
  np.testing.assert_allclose(out, x if residual else jnp.zeros_like(out), atol=1e-6)


def test_inverted_residual_drop_path_drops_whole_branch_per_example():
  x = jax.random.normal(jax.random.key(0), (64, 4, 4, 8))
  block = InvertedResidual(8, norm="none", drop_path_rate=0.5)
  variables = block.init(jax.random.key(1), x, train=False)
  branch = block.apply(variables, x, train=False) - x  # eval mode: no dropping
  out = jax.jit(lambda v, x, key: block.apply(v, x, train=True, rngs={"dropout": key}))(
      variables, x, jax.random.key(2))
  dropped = np.all(np.isclose(out, x, atol=1e-5), axis=(1, 2, 3))
  kept = np.all(np.isclose(out, x + branch / 0.5, atol=1e-4), axis=(1, 2, 3))
  assert np.all(dropped | kept) and not np.any(dropped & kept)
  assert 16 <= dropped.sum() <= 48  # Binomial(64, 0.5): outside this range with p < 1e-4


def test_inverted_residual_vmap_over_initializations():
  block = InvertedResidual(8, se_ratio=0.25)
  x = jnp.ones((2, 4, 4, 8))
  keys = jax.random.split(jax.random.key(0), 2)
  variables = jax.jit(jax.vmap(lambda k: block.init(k, x, train=False)))(keys)
  kernels = variables["params"]["depthwise"]["Conv_0"]["kernel"]
  assert kernels.shape == (2, 3, 3, 1, 48) and not np.allclose(kernels[0], kernels[1])
  out = jax.vmap(lambda v: block.apply(v, x, train=False))(variables)
  assert out.shape == (2, 2, 4, 4, 8)


def test_inverted_residual_rejects_bad_stride():
  with pytest.raises(ValueError, match="strides"):
    InvertedResidual(8, strides=3).init(jax.random.key(0), jnp.ones((1, 8, 8, 8)), train=False)


def test_blocks_use_conv_field():
  calls = []

  class CountingConv(nn.Conv):
    def __call__(self, x):
      calls.append(self.kernel_size)
      return super().__call__(x)

  x = jnp.ones((1, 8, 8, 8))
  jax.eval_shape(lambda k: DepthwiseSeparable(8, conv=CountingConv).init(k, x, train=False),
                 jax.random.key(0))
  assert len(calls) == 2
  calls.clear()
  jax.eval_shape(lambda k: InvertedResidual(8, conv=CountingConv).init(k, x, train=False),
                 jax.random.key(0))
  assert len(calls) == 3  # expand, depthwise, project


# --- Ops: the swappable choices resolved once -----------------------------------------------

import zoo_checks as zc  # noqa: E402
from jaxcnn import registry  # noqa: E402
from jaxcnn.models import create_model  # noqa: E402
from jaxcnn.nn import activations  # noqa: E402
from jaxcnn.nn.layers import ConvBNAct, Ops, SqueezeExcite  # noqa: E402

SMALL_MODELS = {  # one per family code path, cheap to trace
    "resnet20": dict(stage_sizes=(1, 1, 1)),
    "preact_resnet18": dict(stage_sizes=(1, 1)),
    "seresnet50": dict(stage_sizes=(1, 1)),
    "efficientnet_b0": dict(stages=((1, 3, 1, 16, 1), (6, 5, 2, 24, 1))),
    "densenet_bc_100_12": dict(block_sizes=(2, 2)),
    "googlenet": {},
    "alexnet": dict(hidden_features=16),
    "simple_cnn": {},
}


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_dtype_reaches_every_layer_and_keeps_the_parameter_tree(name):
  """``dtype`` is one field of OpsModule and one line of Ops.create, yet it reaches every
  convolution, dense and normalization layer of every model (parameters stay float32)."""
  shape = (1, 64, 64, 3)
  fields = SMALL_MODELS[name]
  base, _ = zc.trace(create_model(name, **fields), shape)
  variables, calls = zc.trace(create_model(name, dtype=jnp.bfloat16, **fields), shape)
  layers = [m for m in calls if isinstance(m, (nn.Conv, nn.Dense, nn.BatchNorm))]
  assert len([m for m in layers if isinstance(m, nn.Conv)]) >= 3
  assert all(m.dtype == jnp.bfloat16 for m in layers), sorted(
      {type(m).__name__ for m in layers if m.dtype != jnp.bfloat16})
  assert jax.tree.map(lambda a: (a.shape, a.dtype), variables) == jax.tree.map(
      lambda a: (a.shape, a.dtype), base)
  out, _ = zc.abstract_init(create_model(name, dtype=jnp.bfloat16, **fields), shape)  # cached
  assert out.dtype == jnp.bfloat16


def test_specs_are_parsed_once_per_model_not_per_layer(monkeypatch):
  """Spec strings are resolved by the top module, once: a 56-layer ResNet parses no more specs
  than an 8-layer one (one each for act, norm, kernel_init)."""
  parsed = []
  real = registry.parse_spec
  monkeypatch.setattr(registry, "parse_spec", lambda s: parsed.append(s) or real(s))
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  counts = {}
  for depth in (8, 56):
    n = (depth - 2) // 6
    model = create_model("resnet20", stage_sizes=(n, n, n), act="elu(alpha=0.5)",
                         kernel_init="xavier_normal", norm="batch(momentum=0.99)")
    parsed.clear()
    jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0), x)
    counts[depth] = sorted(parsed)
  assert counts[8] == counts[56] == sorted(
      ["elu(alpha=0.5)", "xavier_normal", "batch(momentum=0.99)"])


def test_ops_create_resolves_specs_and_blocks_take_ops():
  ops = Ops.create(act="leaky_relu(negative_slope=0.2)", norm="none",
                   kernel_init=nn.initializers.constant(0.5))
  assert ops.act(jnp.asarray(-1.0)) == pytest.approx(-0.2)
  x = jnp.ones((1, 4, 4, 2))
  # A block given ops ignores its own choice fields; standalone it resolves them itself.
  with_ops = ConvBNAct(3, (1, 1), ops=ops, act="relu", norm="batch")
  variables = with_ops.init(jax.random.key(0), x, train=False)
  assert "batch_stats" not in variables
  np.testing.assert_allclose(variables["params"]["Conv_0"]["kernel"], 0.5)
  np.testing.assert_allclose(with_ops.apply(variables, -x, train=False), -0.2 * 0.5 * 2)
  standalone = ConvBNAct(3, (1, 1), act="elu")
  assert "batch_stats" in standalone.init(jax.random.key(0), x, train=False)
  se = SqueezeExcite(reduced_features=1, ops=ops)
  assert se.init(jax.random.key(0), x)["params"]["Conv_0"]["kernel"].shape == (1, 1, 2, 1)
  assert activations.get("identity") is Ops.create(act=None).act  # act=None: linear
