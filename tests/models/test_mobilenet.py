"""MobileNet v1/v2: parameter counts and multiply-adds against the papers and torchvision,
output shapes, jitted forward passes, a training step, vmap over initializations, and swaps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo_checks as zc
from jaxcnn.models import create_model, list_models
from jaxcnn.models.mobilenet import MobileNetV1, MobileNetV2
from jaxcnn.nn.layers import make_divisible

NAMES = ["mobilenet_v1", "mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v1_075",
         "mobilenet_v2", "mobilenet_v2_140"]
# Small members of each family, for the tests that compile gradients or initializers.
TINY_V1 = MobileNetV1(width=0.25, layers=((64, 1), (128, 2)), num_classes=3)
TINY_V2 = MobileNetV2(width=0.35, stages=((1, 16, 1, 1), (6, 24, 2, 2)), num_classes=3)



def test_registered_names():
  assert set(list_models("mobilenet*")) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_params_and_macs_match_published(name):
  zc.check_published(name)  # mobilenet_v2_140: MACs only (no trusted parameter count)


# The width-multiplier variants mobilenet_v1_050/_075 and mobilenet_v2_140 are -m slow: the
# same code as mobilenet_v1, mobilenet_v1_025 and mobilenet_v2 at other widths (their counts and
# MACs are checked above).
SLOW_FORWARD = {"mobilenet_v1_050", "mobilenet_v1_075", "mobilenet_v2_140"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_FORWARD
                                  else n for n in NAMES])
def test_jit_forward_small_input(name):
  zc.check_small_forward(create_model(name, num_classes=7))


def test_output_shape_any_input_size():
  for size in (96, 100, 224):
    out, _ = zc.abstract_init(create_model("mobilenet_v2", num_classes=5), (1, size, size, 3))
    assert out.shape == (1, 5)


def test_width_multiplier_channels():
  # Howard et al. 2017: alpha scales every layer; Sandler et al. 2018: multiples of 8, and the
  # last layer is not thinned below 1280.
  _, v = zc.abstract_init(create_model("mobilenet_v1_050"), (1, 64, 64, 3))
  assert v["params"]["head"]["kernel"].shape == (512, 1000)
  _, v = zc.abstract_init(create_model("mobilenet_v2", width=0.35), (1, 64, 64, 3))
  assert v["params"]["head_conv"]["Conv_0"]["kernel"].shape == (1, 1, 112, 1280)
  _, v = zc.abstract_init(create_model("mobilenet_v2_140"), (1, 64, 64, 3))
  assert v["params"]["head_conv"]["Conv_0"]["kernel"].shape == (1, 1, 448, 1792)
  assert [make_divisible(c) for c in (5.6, 11.2, 22.4, 33.6, 112.0)] == [8, 16, 24, 32, 112]


@pytest.mark.parametrize("model", [TINY_V1, TINY_V2], ids=["v1", "v2"])
def test_train_step_loss_decreases(model):
  losses = zc.train_losses(model, (8, 32, 32, 3), 3, steps=10, learning_rate=1e-2)
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.7 * losses[0], losses


def test_vmap_over_two_initializations():
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  keys = jax.random.split(zc.key(1), 2)
  variables = jax.jit(jax.vmap(lambda k: TINY_V2.init(k, x, train=False)))(keys)
  kernel = variables["params"]["stem"]["Conv_0"]["kernel"]
  assert kernel.shape[0] == 2 and not np.allclose(kernel[0], kernel[1])
  batched = jax.jit(jax.vmap(lambda v: TINY_V2.apply(v, x, train=False)))(variables)
  single = jax.jit(lambda v: TINY_V2.apply(v, x, train=False))(
      jax.tree.map(lambda a: a[1], variables))
  assert batched.shape == (2, 2, 3)
  np.testing.assert_allclose(batched[1], single, rtol=1e-4, atol=1e-5)


def test_swapping_act_changes_every_activation_and_nothing_else():
  # MobileNet v1: stem + 13 blocks x 2 activations; v2 (tiny): stem, 1 + 2 blocks, head conv.
  assert zc.called(TINY_V1) == [zc.act("relu")] * 5
  assert zc.called(TINY_V1.clone(act="elu")) == [zc.act("elu")] * 5
  assert zc.called(create_model("mobilenet_v1", act="elu")) == [zc.act("elu")] * 27
  assert zc.called(TINY_V2) == [zc.act("relu6")] * (1 + 1 + 2 * 2 + 1)
  assert (jax.tree.map(jnp.shape, zc.abstract_init(TINY_V1.clone(act="elu"), (1, 32, 32, 3))[1])
          == jax.tree.map(jnp.shape, zc.abstract_init(TINY_V1, (1, 32, 32, 3))[1]))


def test_swapping_norm_and_kernel_init():
  zc.check_norm_and_kernel_init_counts(TINY_V2)


def test_bad_input_raises():
  with pytest.raises(ValueError, match="NHWC"):
    zc.abstract_init(create_model("mobilenet_v1"), (32, 32, 3))
  with pytest.raises(ValueError, match="Unknown model"):
    create_model("mobilenet_v3")
