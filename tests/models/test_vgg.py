"""VGG-11/13/16/19 with and without batch normalization."""

import numpy as np
import pytest

import zoo_checks as zc
from jaxcnn.models import count_params, create_model, list_models
from jaxcnn.models.vgg import CONFIGS

NAMES = list_models("vgg*")
SMALL = dict(stages=((8,), (16,), (16, 16)), hidden_features=32, num_classes=10)


def test_all_variants_registered():
  expected = {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
  assert expected == set(NAMES) and expected <= set(list_models("vgg*"))


@pytest.mark.parametrize("name", NAMES)
def test_params_and_macs_match_published(name):
  zc.check_published(name)


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_params_by_formula(depth):
  """Simonyan & Zisserman 2015, Table 1 by hand: 3x3 convs with bias, 7x7x512-4096-4096-1000."""
  n, c_in = 0, 3
  for stage in CONFIGS[depth]:
    for c in stage:
      n += 9 * c_in * c + c
      c_in = c
  n += 7 * 7 * 512 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
  assert count_params(create_model(f"vgg{depth}")) == n
  # BatchNorm adds a scale and a bias per conv channel.
  assert count_params(create_model(f"vgg{depth}_bn")) == n + 2 * sum(map(sum, CONFIGS[depth]))


@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name):
  assert zc.output_shape(create_model(name, num_classes=10), (2, 32, 32, 3)).shape == (2, 10)


def test_compiled_forward_thin_head():
  """The published convolutions and pooling; a 256-wide head keeps CI off the 102M-weight fc1."""
  y = zc.compiled_forward(create_model("vgg11_bn", num_classes=10, hidden_features=256),
                          (2, 32, 32, 3))
  assert y.shape == (2, 10) and np.std(y) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_compiled_forward(name):
  y = zc.compiled_forward(create_model(name, num_classes=10), (2, 32, 32, 3))
  assert y.shape == (2, 10) and np.std(y) > 0


def test_train_step_lowers_loss():
  losses = zc.train_losses(create_model("vgg11_bn", dropout_rate=0.0, **SMALL), (8, 32, 32, 3),
                           num_classes=10)
  assert losses[-1] < 0.8 * losses[0], losses


def test_vmap_over_two_initializations():
  out = zc.vmap_two_inits(create_model("vgg11", **SMALL), (2, 32, 32, 3))
  assert out.shape == (2, 2, 10) and not np.allclose(out[0], out[1])


def test_swaps():
  x = (1, 32, 32, 3)
  zc.check_act_swap("vgg16", x)
  zc.check_kernel_init_swap("vgg16", x)
  zc.check_norm_swap("vgg16", x)


def test_too_small_input_raises():
  with pytest.raises(ValueError, match="at least 32x32"):
    zc.output_shape(create_model("vgg11"), (1, 16, 16, 3))
