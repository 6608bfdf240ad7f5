"""EfficientNet-B0..B7: parameter counts (torchvision) and multiply-adds (Tan & Le 2019), the
compound-scaling rule and its rounding, stochastic depth, squeeze-excite, forward passes, a
training step, vmap over initializations, and swapping act/norm/kernel_init.

B1..B7 compile slowly on CPU: their jitted forward pass is marked slow, and so are B4..B7's
parameter counts and multiply-adds (B0's blocks scaled by VARIANTS, which is checked against
compound scaling in CI).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo_checks as zc
from jaxcnn.models import create_model, flops, list_models, model_info
from jaxcnn.models.efficientnet import (B0_STAGES, VARIANTS, EfficientNet,
                                        compound_scale, round_filters, round_repeats)
from jaxcnn.nn.layers import InvertedResidual

NAMES = [f"efficientnet_b{i}" for i in range(8)]
# B1..B7 are B0's blocks at other widths and depths: compiling their forward passes costs 2-17 s
# each and checks nothing B0 does not (their counts and shapes are checked below).
SLOW_FORWARD = {f"efficientnet_b{i}" for i in range(1, 8)}
SLOW_COUNT = {f"efficientnet_b{i}" for i in range(4, 8)}
TINY = EfficientNet(width=0.25, depth=0.5, stages=B0_STAGES[:3], num_classes=3)



def test_registered_names_and_resolutions():
  assert list_models("efficientnet*") == NAMES
  resolutions = [create_model(n).default_resolution for n in NAMES]
  assert resolutions == [224, 240, 260, 300, 380, 456, 528, 600]  # Tan & Le 2019, Table 2


# B4..B7's counts are -m slow (tracing them costs 12-15 s each); they are B0 scaled by
# round_filters and round_repeats, checked against the paper's formula below.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_COUNT
                                  else n for n in NAMES])
def test_param_count_and_output_shape(name):
  # One trace gives the count and the output shape (the parameters do not depend on the input
  # size: the head pools globally; test_jit_forward_small_input sets num_classes).
  out, variables = zc.abstract_init(create_model(name), (2, 64, 64, 3))
  assert out.shape == (2, 1000)
  count = sum(math.prod(a.shape) for a in jax.tree.leaves(variables["params"]))
  published = model_info(name).published
  assert abs(count / published.params - 1) < 0.01, count
  # The paper's rounded figures: within 2% (B2's 9.2M is 1% above the reference's 9.11M).
  assert abs(count / published.paper_params - 1) < 0.02, count


# B4..B7 are -m slow, as for the counts above: B0's blocks at the widths, depths and resolutions
# of VARIANTS (checked against compound scaling below); B0..B3 check the counting in CI.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_COUNT
                                  else n for n in NAMES])
def test_multiply_adds_match_paper(name):
  # The paper's FLOPs are the multiply-adds of convolutions and the classifier (and the SE
  # gating product); without normalization and with a linear activation that is what remains.
  model = create_model(name, norm="none", act="identity")
  r = model.default_resolution
  macs = flops(model, (1, r, r, 3))
  assert abs(macs / model_info(name).published.macs - 1) < 0.05, macs
  assert model_info(name).input_size == (r, r, 3)


@pytest.mark.parametrize("name", [n if n not in SLOW_FORWARD else
                                  pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def test_jit_forward_small_input(name):
  model = create_model(name, num_classes=7)
  zc.check_small_forward(model)


def test_compound_scale_formula():
  assert compound_scale(0) == (1.0, 1.0, 1.0)
  np.testing.assert_allclose(compound_scale(2), (1.44, 1.21, 1.3225))
  np.testing.assert_allclose(compound_scale(1, 2.0, 1.0, 1.0), (2.0, 1.0, 1.0))
  # alpha * beta^2 * gamma^2 ~ 2: FLOPs roughly double per unit of phi (1.92 here).
  d, w, r = compound_scale(1)
  assert abs(d * w**2 * r**2 - 2) < 0.1
  with pytest.raises(ValueError, match="alpha"):
    compound_scale(1, alpha=0.5)


def test_published_variants_are_close_to_compound_scaling():
  # Fit phi per variant by least squares on the logs of (depth, width, resolution / 224), then
  # compare each published coefficient with alpha^phi, beta^phi, gamma^phi. The published values
  # are hand-rounded: the worst is B7's depth 3.1, 7.4% below 1.2^6.63.
  logs = np.log([1.2, 1.1, 1.15])
  phis = []
  for i in range(1, 8):
    width, depth, resolution, _ = VARIANTS[i]
    target = np.log([depth, width, resolution / 224])
    phi = float(logs @ target / (logs @ logs))
    ratios = np.array([depth, width, resolution / 224]) / np.array(compound_scale(phi))
    assert np.all(np.abs(ratios - 1) < 0.08), (i, phi, ratios)
    phis.append(phi)
  assert np.all(np.diff(phis) > 0.5)  # each variant is a bigger step of phi
  assert 6 < phis[-1] < 7.5


def test_round_filters_and_repeats():
  # B2 (width 1.1) and B7 (width 2.0) channels of the reference implementation.
  b0 = (32, 16, 24, 40, 80, 112, 192, 320, 1280)
  assert [round_filters(c, 1.1) for c in b0] == [32, 16, 24, 48, 88, 120, 208, 352, 1408]
  assert [round_filters(c, 2.0) for c in b0] == [64, 32, 48, 80, 160, 224, 384, 640, 2560]
  assert round_filters(40, 0.25) == 16  # never below 90% of the scaled width
  assert [round_repeats(n, 3.1) for n in (1, 2, 3, 4)] == [4, 7, 10, 13]
  assert round_repeats(2, 1.0) == 2


@pytest.mark.parametrize("name,blocks", [("efficientnet_b0", 16), ("efficientnet_b1", 23),
                                         pytest.param("efficientnet_b7", 55,
                                                      marks=pytest.mark.slow)])
def test_block_count_and_stochastic_depth_schedule(name, blocks):
  rates = zc.called(create_model(name), (1, 32, 32, 3), InvertedResidual, "drop_path_rate")
  assert len(rates) == blocks
  np.testing.assert_allclose(rates, 0.2 * np.arange(blocks) / blocks)


def test_squeeze_excite_is_quarter_of_block_input():
  _, v = zc.abstract_init(create_model("efficientnet_b0"), (1, 64, 64, 3))
  # Block 2: input 16 channels expanded 6x to 96; SE squeezes to 16 / 4 = 4 (torchvision: 96->4).
  assert v["params"]["block2"]["se"]["Conv_0"]["kernel"].shape == (1, 1, 96, 4)
  assert v["params"]["block16"]["se"]["Conv_0"]["kernel"].shape == (1, 1, 1152, 48)


@pytest.fixture(scope="module")
def two_variable_sets():
  """Two random variable sets of TINY, stacked (no init to compile)."""
  return zc.stacked_random_variables(TINY)


def test_train_step_loss_decreases(two_variable_sets):
  zc.check_trains(TINY, two_variable_sets, (8, 32, 32, 3), 3)


def test_vmap_over_two_initializations(two_variable_sets):
  zc.check_vmap_over_inits(TINY, two_variable_sets)


def test_swapping_act_reaches_blocks_and_squeeze_excite():
  n = len(zc.called(TINY))
  assert zc.called(TINY) == [zc.act("swish")] * n
  assert zc.called(TINY.clone(act="gelu")) == [zc.act("gelu")] * n
  # stem + per block (expand?) + depthwise + SE + head: 3 blocks at depth 0.5 -> 1+2+3+3+1.
  assert n == 1 + (1 + 1) + (2 + 1) + (2 + 1) + 1
  shapes = lambda m: jax.tree.map(jnp.shape, zc.abstract_init(m, (1, 32, 32, 3))[1])
  assert shapes(TINY.clone(act="gelu")) == shapes(TINY)


def test_swapping_norm_and_kernel_init():
  zc.check_norm_and_kernel_init_counts(TINY)
