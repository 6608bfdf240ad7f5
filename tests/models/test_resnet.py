"""ResNet family: v1, pre-activation v2, CIFAR ResNets, Wide ResNet, ResNeXt, SE, Fixup."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo_checks as zc
from jaxcnn.models import count_params, create_model, list_models, model_info
from jaxcnn.models.resnet import FixupBasicBlock, ResNet, fixup_scale

NAMES = [n for n in list_models() if model_info(n).family == "resnet"]
CIFAR = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "wrn28_10", "wrn16_8",
         "resnext29_8x64d", "resnext29_16x64d"}
# Compiled in CI (one per block type / option); the rest compile under -m slow.
FAST_FORWARD = {"resnet18", "preact_resnet18", "resnet20", "wrn16_8", "seresnext50_32x4d"}
X = (2, 32, 32, 3)  # every variant accepts 32x32 (ImageNet nets end on a 1x1 map)
RESNET8 = dict(stage_sizes=(1, 1, 1))  # the CIFAR ResNet code path at its cheapest (6n + 2 = 8)


def test_all_variants_registered():
  expected = {f"resnet{d}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)}
  expected |= {f"preact_resnet{d}" for d in (18, 34, 50, 101, 152)}
  expected |= {"wrn28_10", "wrn16_8", "wide_resnet50_2", "resnext50_32x4d", "resnext29_8x64d",
               "resnext29_16x64d", "seresnet50", "seresnext50_32x4d"}
  assert expected <= set(list_models()) and expected == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_params_and_macs_match_published(name):
  zc.check_published(name)


def cifar_resnet_params(n: int, num_classes: int = 10) -> int:
  """He et al. 2015, Sec. 4.2 by hand: 3x3 convs (16, 32, 64 filters), BN after each, option A."""
  total = 3 * 9 * 16 + 2 * 16  # stem conv + BN
  c_in = 16
  for width in (16, 32, 64):
    for _ in range(n):
      total += 9 * c_in * width + 9 * width * width + 4 * width
      c_in = width
  return total + 64 * num_classes + num_classes


# 44, 56 and 110 are -m slow: the same formula at more blocks per stage (n = 7, 9, 18), whose
# counts the published figures of test_params_and_macs_match_published still check in CI.
@pytest.mark.parametrize("depth", [20, 32] + [pytest.param(d, marks=pytest.mark.slow)
                                              for d in (44, 56, 110)])
def test_cifar_resnet_params_by_formula(depth):
  n = (depth - 2) // 6
  assert count_params(create_model(f"resnet{depth}"), X) == cifar_resnet_params(n)
  assert count_params(create_model(f"resnet{depth}", num_classes=100), X) == cifar_resnet_params(
      n, 100)


def test_resnet20_is_269722_parameters():
  assert count_params(create_model("resnet20"), X) == 269_722


# The deepest variants are -m slow: resnet20/32's and resnet50/preact_resnet50's blocks at more
# blocks per stage (their published parameter counts, at 224x224, trace them in CI).
DEEP = {"resnet44", "resnet56", "resnet110", "resnet101", "resnet152", "preact_resnet101",
        "preact_resnet152"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in NAMES])
def test_output_shape(name):
  assert zc.output_shape(create_model(name, num_classes=7), X).shape == (2, 7)


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet18", "wrn16_8"])
def test_output_shape_in_training(name):
  model = create_model(name, num_classes=7, dropout_rate=0.3)
  assert zc.output_shape(model, X, train=True).shape == (2, 7)


@pytest.mark.parametrize(
    "name", [n if n in FAST_FORWARD else pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def test_compiled_forward(name):
  y = zc.compiled_forward(create_model(name, num_classes=10), X)
  assert y.shape == (2, 10)
  assert np.std(y) > 0  # not a constant function of the input


def test_train_step_lowers_loss():
  losses = zc.train_losses(create_model("resnet20", **RESNET8), (8, 16, 16, 3), num_classes=10)
  assert losses[-1] < 0.8 * losses[0], losses


def test_vmap_over_two_initializations():
  model = create_model("resnet20", num_classes=5, **RESNET8)
  x_shape = (2, 8, 8, 3)
  out = zc.vmap_two_inits(model, x_shape)
  assert out.shape == (2, 2, 5)
  assert not np.allclose(out[0], out[1])
  # The first slice is the un-vmapped model with the first key.
  keys = jax.random.split(zc.key(1), 2)
  x = jax.random.normal(zc.key(0), x_shape)
  single = jax.jit(lambda k: model.apply(model.init(k, x, train=False), x, train=False))(keys[0])
  np.testing.assert_allclose(out[0], single, rtol=1e-4, atol=1e-5)


def test_act_swap():
  zc.check_act_swap("resnet20", X)
  zc.check_act_swap("wrn16_8", X)
  zc.check_act_swap("seresnext50_32x4d", X, stage_sizes=(1, 1, 1, 1))


def test_kernel_init_swap():
  zc.check_kernel_init_swap("resnet20", X)
  zc.check_kernel_init_swap("wrn16_8", X)
  zc.check_kernel_init_swap("seresnext50_32x4d", X, stage_sizes=(1, 1, 1, 1))


def test_kernel_init_values():
  model = create_model("resnet20", kernel_init=nn.initializers.constant(0.125))
  params = jax.jit(model.init, static_argnames="train")(
      zc.key(0), jnp.ones((1, 8, 8, 3)), train=False)["params"]
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = path[-1].key
    expected = {"kernel": 0.125, "scale": 1.0, "bias": 0.0}[name]
    assert np.all(np.asarray(leaf) == expected), path


def test_norm_swap():
  zc.check_norm_swap("resnet20", X)
  zc.check_norm_swap("preact_resnet18", X, stage_sizes=(1, 1, 1, 1))  # ImageNet stem, pre-act
  zc.check_norm_swap("wrn16_8", X)


def test_learnable_activation_adds_one_slope_per_channel():
  model = create_model("resnet20", act="prelu")
  acts = [m for m in zc.module_calls(create_model("resnet20"), X)
          if type(m).__name__ == "Activation"]
  # relu after the stem and after conv1 and the sum of each block: channels 16, then per block 2x.
  channels = 16 + sum(2 * w * 3 for w in (16, 32, 64))
  assert len(acts) == 1 + 2 * 9
  assert count_params(model, X) - count_params(create_model("resnet20"), X) == channels


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="NHWC"):
    zc.output_shape(create_model("resnet20"), (32, 32, 3))
  with pytest.raises(ValueError, match="bottleneck"):
    zc.output_shape(create_model("resnet18", groups=32), X)
  with pytest.raises(ValueError, match="stem"):
    zc.output_shape(create_model("resnet20", stem="tiny"), X)
  with pytest.raises(ValueError, match="zero_pad"):
    zc.output_shape(ResNet(stage_sizes=(1, 1), num_filters=16, stem="cifar", stem_features=32,
                           shortcut="zero_pad"), X)


# ----------------------------------------------------------------------------------------------
# Fixup (Zhang et al. 2019).


def test_fixup_scale_formula():
  assert fixup_scale(9, 2) == pytest.approx(1 / 3)  # ResNet-20: 9 basic blocks, L^(-1/2)
  assert fixup_scale(16, 3) == pytest.approx(0.5)  # ResNet-50: 16 bottlenecks, L^(-1/4)
  assert fixup_scale(54, 2) == pytest.approx(54 ** -0.5)
  with pytest.raises(ValueError):
    fixup_scale(9, 1)


def test_fixup_initialization():
  model = create_model("resnet20", fixup=True)
  variables = jax.jit(model.init, static_argnames="train")(
      zc.key(0), jnp.ones((1, 8, 8, 3)), train=False)
  assert set(variables) == {"params"}  # no normalization, no running statistics
  params = variables["params"]
  assert not any("norm" in jax.tree_util.keystr(p).lower()
                 for p, _ in jax.tree_util.tree_leaves_with_path(params))
  conv1 = np.concatenate([np.ravel(params[f"stage{s}_block{b}"]["conv1"]["kernel"])
                          for s in (1,) for b in (1, 2, 3)])  # 3x3x16x16 kernels, fan-in 144
  expected_std = math.sqrt(2 / 144) * 9 ** -0.5
  assert np.std(conv1) == pytest.approx(expected_std, rel=0.05)
  for s in (1, 2, 3):
    for b in (1, 2, 3):
      block = params[f"stage{s}_block{b}"]
      assert np.all(np.asarray(block["conv2"]["kernel"]) == 0)
      assert block["multiplier"].shape == () and float(block["multiplier"]) == 1.0
      for name in ("bias1a", "bias1b", "bias2a", "bias2b"):
        assert block[name].shape == () and float(block[name]) == 0.0
  assert np.all(np.asarray(params["head"]["kernel"]) == 0)
  # The stem is not a branch layer: plain He initialization.
  assert np.std(params["stem_conv"]["kernel"]) == pytest.approx(math.sqrt(2 / 27), rel=0.2)


def test_fixup_resnet50_scale_and_parameters():
  model = create_model("resnet50", fixup=True)
  variables = zc.abstract_variables(model, (1, 32, 32, 3))
  # Fixup replaces BatchNorm (2 per channel) by 7 scalars per block and 2 for stem and head.
  bn_params = count_params(create_model("resnet50"), X) - count_params(
      create_model("resnet50", norm="none"), X)
  assert count_params(model, X) == 25_557_032 - bn_params + 7 * 16 + 2
  assert set(variables) == {"params"}


def test_fixup_block_is_its_shortcut_at_init():
  x = jax.nn.relu(jax.random.normal(jax.random.key(0), (2, 8, 8, 16)))  # a post-ReLU input
  block = FixupBasicBlock(features=16, scale=fixup_scale(9, 2))
  variables = jax.jit(block.init, static_argnames="train")(zc.key(1), x, train=False)
  np.testing.assert_array_equal(block.apply(variables, x, train=False), x)
  # With a projection the block is relu(1x1 conv(x)).
  block = FixupBasicBlock(features=32, strides=2, scale=fixup_scale(9, 2))
  variables = jax.jit(block.init, static_argnames="train")(zc.key(1), x, train=False)
  kernel = variables["params"]["shortcut"]["kernel"]
  expected = jax.nn.relu(jnp.einsum("nhwc,cd->nhwd", x[:, ::2, ::2], kernel[0, 0]))
  np.testing.assert_allclose(block.apply(variables, x, train=False), expected, rtol=1e-5,
                             atol=1e-6)


def test_fixup_network_is_its_identity_path_at_init():
  """At init every branch is zero, so resnet20's features are the stem's ReLU output, subsampled
  by the two option-A shortcuts and zero-padded to 64 channels, and the logits are zero."""
  model = create_model("resnet20", fixup=True)
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = jax.jit(model.init, static_argnames="train")(zc.key(1), x, train=False)
  logits, state = jax.jit(lambda v, x: model.apply(v, x, train=False, capture_intermediates=True))(
      variables, x)
  np.testing.assert_array_equal(logits, 0.0)
  features = state["intermediates"]["stage3_block3"]["__call__"][0]
  stem = jax.lax.conv_general_dilated(x, variables["params"]["stem_conv"]["kernel"], (1, 1),
                                      ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  expected = jnp.pad(jax.nn.relu(stem)[:, ::4, ::4], ((0, 0), (0, 0), (0, 0), (0, 48)))
  np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)


def test_fixup_trains_without_normalization():
  losses = zc.train_losses(create_model("resnet20", fixup=True, **RESNET8), (8, 16, 16, 3),
                           num_classes=10, steps=8, learning_rate=3e-3)
  assert losses[0] == pytest.approx(math.log(10), rel=1e-5)  # zero classifier: uniform output
  assert min(losses[-3:]) < 0.93 * losses[0], losses


def test_fixup_rejects_preact_and_se():
  with pytest.raises(ValueError, match="fixup"):
    zc.output_shape(create_model("preact_resnet18", fixup=True), X)
  with pytest.raises(ValueError, match="fixup"):
    zc.output_shape(create_model("seresnet50", fixup=True), X)
