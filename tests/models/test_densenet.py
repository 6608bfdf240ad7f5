"""DenseNet-121/169/201 and DenseNet-BC-100 (k=12): parameter counts and multiply-adds against
torchvision and the paper, dense connectivity, forward passes, a training step, vmap over
initializations, and swapping act/norm/kernel_init.

DenseNet-169 and -201 compile slowly on CPU: their jitted forward passes are marked slow (their
output shapes and parameter counts are still checked, with jax.eval_shape).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo_checks as zc
from jaxcnn.models import count_params, create_model, flops, list_models
from jaxcnn.models.densenet import DenseNet

NAMES = ["densenet121", "densenet169", "densenet201", "densenet_bc_100_12"]
SLOW_FORWARD = {"densenet169", "densenet201"}  # compile slowly on CPU
TINY = DenseNet(block_sizes=(2, 2), growth_rate=4, stem_features=8, imagenet_stem=False,
                num_classes=3)



def test_registered_names():
  assert list_models("densenet*") == NAMES


@pytest.mark.parametrize("name", NAMES)
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
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = zc.random_variables(model, x.shape)
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert logits.shape == (2, 7) and bool(jnp.isfinite(logits).all())
  assert not np.allclose(logits[0], logits[1])


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
def two_inits():
  """Two initializations of TINY from one jitted, vmapped init (compiled once for the module)."""
  x = jnp.zeros((2, 32, 32, 3))
  return jax.jit(jax.vmap(lambda k: TINY.init(k, x, train=False)))(jax.random.split(zc.key(1), 2))


def test_train_step_loss_decreases(two_inits):
  losses = zc.train_losses(TINY, (8, 32, 32, 3), 3, steps=10, learning_rate=1e-2,
                           variables=jax.tree.map(lambda a: a[0], two_inits))
  assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


def test_vmap_over_two_initializations(two_inits):
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = two_inits
  kernel = variables["params"]["stem"]["kernel"]
  assert kernel.shape[0] == 2 and not np.allclose(kernel[0], kernel[1])
  batched = jax.jit(jax.vmap(lambda v: TINY.apply(v, x, train=False)))(variables)
  single = jax.jit(lambda v: TINY.apply(v, x, train=False))(jax.tree.map(lambda a: a[1], variables))
  assert batched.shape == (2, 2, 3)
  np.testing.assert_allclose(batched[1], single, rtol=1e-4, atol=1e-5)


def test_swapping_act_changes_every_activation_and_nothing_else():
  # Two pre-activations per bottleneck layer, one per transition, one before the pool.
  assert zc.called(TINY) == [zc.act("relu")] * (2 * 4 + 1 + 1)
  assert zc.called(TINY.clone(act="selu")) == [zc.act("selu")] * (2 * 4 + 1 + 1)
  assert len(zc.called(create_model("densenet121", act="elu"), (1, 64, 64, 3))) == (
      2 * 58 + 3 + 2)  # 58 dense layers, 3 transitions, stem, final
  shapes = lambda m: jax.tree.map(jnp.shape, zc.abstract_init(m, (1, 32, 32, 3))[1])
  assert shapes(TINY.clone(act="selu")) == shapes(TINY)


def test_swapping_norm_and_kernel_init():
  shape = (1, 32, 32, 3)
  base = zc.abstract_init(TINY, shape)[1]
  assert count_params(TINY.clone(norm="group")) == count_params(TINY)
  assert "batch_stats" not in zc.abstract_init(TINY.clone(norm="group"), shape)[1]
  n_bn = sum(math.prod(a.shape) for a in jax.tree.leaves(base["batch_stats"]))
  assert count_params(TINY) - count_params(TINY.clone(norm="none")) == n_bn
  const = TINY.clone(kernel_init=nn.initializers.constant(0.25))
  variables = jax.jit(lambda k: const.init(k, jnp.ones(shape), train=False))(zc.key(0))
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]):
    expected = {"kernel": 0.25, "scale": 1.0, "bias": 0.0}[path[-1].key]
    np.testing.assert_array_equal(leaf, expected, err_msg=jax.tree_util.keystr(path))
