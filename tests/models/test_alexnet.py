"""AlexNet (single tower) and the adaptive average pooling it shares with VGG."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import zoo_checks as zc
from jaxcnn.models import count_params, create_model
from jaxcnn.models.alexnet import adaptive_avg_pool

SMALL = dict(hidden_features=64, num_classes=10)  # the conv stack as published, a thin head


def test_params_and_macs_match_published():
  zc.check_published("alexnet")


def test_params_by_formula():
  convs = [(3, 64, 11), (64, 192, 5), (192, 384, 3), (384, 256, 3), (256, 256, 3)]
  n = sum(k * k * i * o + o for i, o, k in convs)
  n += 256 * 36 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
  assert count_params(create_model("alexnet")) == n == 61_100_840


def adaptive_reference(x, out):
  """PyTorch's AdaptiveAvgPool2d bins, by loops in NumPy."""
  n, h, w, c = x.shape
  y = np.zeros((n, out[0], out[1], c), np.float32)
  for i in range(out[0]):
    for j in range(out[1]):
      r0, r1 = (i * h) // out[0], math.ceil((i + 1) * h / out[0])
      c0, c1 = (j * w) // out[1], math.ceil((j + 1) * w / out[1])
      y[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
  return y


@pytest.mark.parametrize("hw,out", [((13, 13), (6, 6)), ((5, 7), (3, 2)), ((1, 1), (6, 6)),
                                    ((7, 7), (7, 7)), ((3, 9), (7, 7))])
def test_adaptive_avg_pool_matches_reference(hw, out):
  x = np.random.default_rng(0).standard_normal((2, *hw, 3)).astype(np.float32)
  np.testing.assert_allclose(adaptive_avg_pool(jnp.asarray(x), out), adaptive_reference(x, out),
                             rtol=1e-5, atol=1e-6)


def test_adaptive_avg_pool_rejects_non_nhwc():
  with pytest.raises(ValueError, match="NHWC"):
    adaptive_avg_pool(jnp.ones((4, 4, 3)), (2, 2))


@pytest.mark.parametrize("size", [64, 224])
def test_output_shape(size):
  assert zc.output_shape(create_model("alexnet"), (2, size, size, 3)).shape == (2, 1000)
  assert zc.output_shape(create_model("alexnet", num_classes=10), (2, size, size, 3),
                         train=True).shape == (2, 10)


def test_compiled_forward():
  y = zc.compiled_forward(create_model("alexnet", num_classes=10), (2, 64, 64, 3))
  assert y.shape == (2, 10) and np.std(y) > 0


def test_train_step_lowers_loss():
  losses = zc.train_losses(create_model("alexnet", dropout_rate=0.0, **SMALL), (8, 64, 64, 3),
                           num_classes=10)
  assert losses[-1] < 0.8 * losses[0], losses


def test_vmap_over_two_initializations():
  out = zc.vmap_two_inits(create_model("alexnet", **SMALL), (2, 64, 64, 3))
  assert out.shape == (2, 2, 10) and not np.allclose(out[0], out[1])


def test_swaps():
  x = (1, 64, 64, 3)
  zc.check_act_swap("alexnet", x, **SMALL)
  zc.check_kernel_init_swap("alexnet", x, **SMALL)
  zc.check_norm_swap("alexnet", x, **SMALL)


def test_too_small_input_raises():
  with pytest.raises(ValueError, match="NHWC"):
    zc.output_shape(create_model("alexnet"), (64, 64, 3))
