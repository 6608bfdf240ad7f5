"""DenseNet-121/169/201 and DenseNet-BC-100 (k=12): parameter counts and multiply-adds against
torchvision and the paper, dense connectivity, forward passes, a training step, vmap over
initializations, and swapping act/norm/kernel_init.

DenseNet-169 and -201 compile slowly on CPU: their jitted forward passes are marked slow (their
output shapes and parameter counts are still checked, with jax.eval_shape), and so is
DenseNet-BC-100's (TINY's code path, compiled by the train and vmap tests).
"""

import jax
import jax.numpy as jnp
import pytest

import zoo_checks as zc
from jaxcnn.models import create_model, list_models
from jaxcnn.models.densenet import DenseNet

NAMES = ["densenet121", "densenet169", "densenet201", "densenet_bc_100_12"]
# DenseNet-169 and -201 compile slowly on CPU; DenseNet-BC-100's code path (CIFAR stem,
# bottlenecks, compression 0.5) is TINY's, compiled by the train and vmap tests below.
SLOW_FORWARD = {"densenet169", "densenet201", "densenet_bc_100_12"}
TINY = DenseNet(block_sizes=(2, 2), growth_rate=4, stem_features=8, imagenet_stem=False,
                num_classes=3)



def test_registered_names():
  assert list_models("densenet*") == NAMES


# DenseNet-169 and -201 are -m slow (tracing them costs 10-15 s each): DenseNet-121's blocks at
# other depths, whose final widths are checked for all four below.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in ("densenet169", "densenet201") else n for n in NAMES])
def test_params_and_macs_match_published(name):
  zc.check_published(name)


@pytest.mark.parametrize("name,features", [("densenet121", 1024), ("densenet169", 1664),
                                           ("densenet201", 1920), ("densenet_bc_100_12", 342)])
def test_output_shape_and_final_width(name, features):
  # Final widths: torchvision's classifier inputs; DenseNet-BC-100: 24 + 16k -> /2 -> +16k -> /2
  # -> +16k = 342 with k = 12.
  out, variables = zc.abstract_init(create_model(name, num_classes=10), (2, 64, 64, 3))
  assert out.shape == (2, 10)
  assert variables["params"]["head"]["kernel"].shape == (features, 10)


@pytest.mark.parametrize("name", [n if n not in SLOW_FORWARD else
                                  pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def test_jit_forward_small_input(name):
  model = create_model(name, num_classes=7)
  zc.check_small_forward(model)


def test_dense_connectivity():
  # Layer i of a block sees the block input plus i * k new channels (Huang et al. 2017, eq. 2);
  # the bottleneck is 4k wide; the transition halves the channels.
  _, v = zc.abstract_init(create_model("densenet121"), (1, 64, 64, 3))
  block = v["params"]["block1"]
  for i in range(6):
    assert block[f"DenseLayer_{i}"]["Conv_0"]["kernel"].shape == (1, 1, 64 + 32 * i, 128)
    assert block[f"DenseLayer_{i}"]["Conv_1"]["kernel"].shape == (3, 3, 128, 32)
  assert v["params"]["transition1"]["Conv_0"]["kernel"].shape == (1, 1, 256, 128)


def test_too_small_input_raises():
  with pytest.raises(ValueError, match="too small"):
    zc.abstract_init(create_model("densenet121"), (1, 16, 16, 3))
  with pytest.raises(ValueError, match="NHWC"):
    zc.abstract_init(create_model("densenet121"), (16, 16, 3))


@pytest.fixture(scope="module")
def two_variable_sets():
  """Two random variable sets of TINY, stacked (no init to compile)."""
  return zc.stacked_random_variables(TINY)


def test_train_step_loss_decreases(two_variable_sets):
  zc.check_trains(TINY, two_variable_sets, (8, 32, 32, 3), 3)


def test_vmap_over_two_initializations(two_variable_sets):
  zc.check_vmap_over_inits(TINY, two_variable_sets)


def test_swapping_act_changes_every_activation_and_nothing_else():
  # Two pre-activations per bottleneck layer, one per transition, one before the pool.
  assert zc.called(TINY) == [zc.act("relu")] * (2 * 4 + 1 + 1)
  assert zc.called(TINY.clone(act="selu")) == [zc.act("selu")] * (2 * 4 + 1 + 1)
  assert len(zc.called(create_model("densenet121", act="elu"), (1, 64, 64, 3))) == (
      2 * 58 + 3 + 2)  # 58 dense layers, 3 transitions, stem, final
  shapes = lambda m: jax.tree.map(jnp.shape, zc.abstract_init(m, (1, 32, 32, 3))[1])
  assert shapes(TINY.clone(act="selu")) == shapes(TINY)


def test_swapping_norm_and_kernel_init():
  zc.check_norm_and_kernel_init_counts(TINY)
