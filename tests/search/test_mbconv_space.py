"""The MBConv macro space (MnasNet, Tan et al. 2019, section 4): EfficientNet-B0 is one of its
architectures with B0's parameter count, encode/decode invert each other, sampled architectures
build models that run under jit, costs move as the formulas say, bad values raise."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import count_params, create_model
from jaxcnn.models.efficientnet import B0_STAGES
from jaxcnn.models.mbconv import Stage
from jaxcnn.models.mobilenet import V2_STAGES
from jaxcnn.search import mbconv
from jaxcnn.search.costs import Costs

# B0's first three stages at width 0.25: the stem and the stages have 8, 8, 8 and 16 channels
# (16, 24 and 40 channels x 0.25 rounded to multiples of 8, never below 90%); 32x32 inputs.
TINY = mbconv.MBConvSpace(B0_STAGES[:3])
TINY_BUILD = functools.partial(TINY.build, width=0.25, num_classes=3, drop_path_rate=0.0)


def test_b0_is_one_architecture_with_b0s_parameter_count():
  assert mbconv.decode(mbconv.B0_ARCH) == B0_STAGES
  model = mbconv.build(mbconv.B0_ARCH)
  assert model == create_model("efficientnet_b0")
  assert count_params(model) == 5_288_548  # torchvision's efficientnet_b0


def test_the_space_over_mobilenet_v2_holds_mobilenet_v2():
  # The same spec type: MobileNetV2's Table 2 is a base, and its own architecture.
  space = mbconv.MBConvSpace(V2_STAGES, model="mobilenet_v2")
  arch = space.encode(V2_STAGES)
  assert space.decode(arch) == V2_STAGES
  assert count_params(space.build(arch)) == 3_504_872  # torchvision's mobilenet_v2


def test_space_choices_and_size():
  assert mbconv.SPACE.names[:4] == ("stage1/kernel", "stage1/expansion", "stage1/se_ratio",
                                    "stage1/repeats")
  repeats = [mbconv.SPACE.options(f"stage{i}/repeats") for i in range(1, 8)]
  # B0's repeats 1, 2, 2, 3, 3, 4, 1 with -1, 0, +1, at least one layer.
  assert repeats == [(1, 2), (1, 2, 3), (1, 2, 3), (2, 3, 4), (2, 3, 4), (3, 4, 5), (1, 2)]
  # 2 kernels x 3 expansions x 2 SE per stage; 2 * 3**5 * 2 repeat choices.
  assert mbconv.SPACE.size == 12**7 * 2 * 3**5 * 2


def test_encode_decode_round_trip():
  archs = np.asarray(mbconv.SPACE.sample(jax.random.key(0), 64))
  for arch in archs:
    stages = mbconv.decode(arch)
    assert all(isinstance(s, Stage) for s in stages)
    assert [(s.stride, s.channels) for s in stages] == [(s.stride, s.channels) for s in B0_STAGES]
    np.testing.assert_array_equal(mbconv.encode(stages), arch)
  # Plain 6-field lists (e.g. from JSON) encode too.
  np.testing.assert_array_equal(mbconv.encode([list(s) for s in B0_STAGES]), mbconv.B0_ARCH)


def _variables(model, x):
  """Variables of the model's shapes (weights N(0, 1/fan_in), norm statistics 0 and 1): a jitted
  init costs ~10x the forward pass's compile time on CPU."""
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    if path[-1].key in ("var", "scale"):
      return jnp.ones(leaf.shape)
    if path[-1].key in ("mean", "bias"):
      return jnp.zeros(leaf.shape)
    return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1])),
                       jnp.float32)

  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  return jax.tree_util.tree_map_with_path(fill, shapes)


def test_sampled_architectures_build_and_run_under_jit():
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  for arch in np.asarray(TINY.space.sample(jax.random.key(1), 2)):
    stages, model = TINY.decode(arch), TINY_BUILD(arch)
    variables = _variables(model, x)
    out = jax.jit(lambda v: model.apply(v, x, train=False))(variables)
    assert out.shape == (2, 3) and np.isfinite(out).all()
    # The model is the architecture: blocks per stage, kernels, expansion and SE layers.
    params, block = variables["params"], 0
    for stage in stages:
      for _ in range(stage.repeats):
        block += 1
        p = params[f"block{block}"]
        assert p["depthwise"]["Conv_0"]["kernel"].shape[:2] == (stage.kernel, stage.kernel)
        assert ("expand" in p) == (stage.expansion != 1)
        assert ("se" in p) == (stage.se_ratio > 0)
    assert f"block{block + 1}" not in params


def test_costs_follow_the_depthwise_formula():
  # Stage 3 (stride 2, 4x4 outputs) at expansion 6: its first block widens 8 -> 48 channels, the
  # others 16 -> 96. A 5x5 depthwise kernel instead of 3x3 adds (25 - 9) weights per channel and
  # (25 - 9) multiply-adds per channel and output position.
  arch = dict(TINY.space.decode(np.zeros(len(TINY.space), np.int32)))
  arch.update({"stage3/kernel": 3, "stage3/expansion": 6, "stage3/repeats": 3})
  small = TINY.space.encode(arch)
  large = TINY.space.encode(dict(arch, **{"stage3/kernel": 5}))
  costs = Costs(TINY_BUILD, (32, 32, 3))(np.stack([small, large]))
  channels = 48 + 96 + 96
  assert costs["params"][1] - costs["params"][0] == 16 * channels
  assert costs["macs"][1] - costs["macs"][0] == 16 * channels * 4 * 4


def test_bad_values_raise():
  stages = list(B0_STAGES)
  stages[1] = stages[1]._replace(kernel=4)
  with pytest.raises(ValueError, match="kernel must be an odd int >= 1, got 4"):
    mbconv.encode(stages)
  stages[1] = stages[1]._replace(kernel=7)
  with pytest.raises(ValueError, match=r"Option 7 is not one of choice 'stage2/kernel'"):
    mbconv.encode(stages)
  with pytest.raises(ValueError, match="channels 32, the base's is 24"):
    mbconv.encode([B0_STAGES[0], B0_STAGES[1]._replace(channels=32)] + list(B0_STAGES[2:]))
  with pytest.raises(ValueError, match="has 7 stages, got 3"):
    mbconv.encode(B0_STAGES[:3])
  values = mbconv.SPACE.decode(mbconv.B0_ARCH)
  with pytest.raises(ValueError, match="Unknown choice 'stage8/kernel'"):
    mbconv.SPACE.encode(dict(values, **{"stage8/kernel": 3}))
  with pytest.raises(ValueError, match="kernel must be an odd int >= 1, got 4"):
    mbconv.MBConvSpace(kernels=(3, 4))
  with pytest.raises(ValueError, match="out of range"):
    mbconv.decode(np.full(len(mbconv.SPACE), 3, np.int32))
