"""count_params, flops and summary, against hand-computed counts."""

import flax.linen as nn
import jax
import pytest

from jaxcnn.models import analysis, count_params, create_model, flops, summary


class Tiny(nn.Module):
  """conv 3x3 (3 -> 8, SAME, stride 1) + BN + ReLU, grouped conv 3x3 stride 2 (8 -> 16, 4 groups,
  VALID), global pool, dense 16 -> 5."""

  @nn.compact
  def __call__(self, x, *, train):
    x = nn.Conv(8, (3, 3), padding="SAME", use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.relu(x)
    x = nn.Conv(16, (3, 3), strides=(2, 2), padding="VALID", feature_group_count=4)(x)
    return nn.Dense(5)(x.mean(axis=(1, 2)))


def test_count_params_counts_params_collection_only():
  # conv1 3*3*3*8; BN scale+bias 16 (its 16 running statistics are not parameters);
  # grouped conv 3*3*(8/4)*16 + 16; dense 16*5 + 5.
  expected = 216 + 16 + 288 + 16 + 85
  assert count_params(Tiny(), (1, 10, 10, 3)) == expected
  assert count_params(Tiny(), (4, 20, 20, 3)) == expected


def test_flops_layers_counts_kernel_macs_per_output_position():
  # 10x10 SAME: 100 positions * 216; 10x10 VALID stride 2 -> 4x4: 16 * 288; dense 80.
  expected = 100 * 216 + 16 * 288 + 80
  assert flops(Tiny(), (1, 10, 10, 3)) == expected
  assert flops(Tiny(), (3, 10, 10, 3)) == expected  # per image


class OneConv(nn.Module):
  @nn.compact
  def __call__(self, x, *, train):
    return nn.Conv(4, (3, 3), padding="SAME", use_bias=False)(x)


def test_flops_xla_skips_padding_taps():
  """XLA counts 2 flops per multiply-add, over the taps that land inside the image only."""
  h, w, c_in, c_out = 12, 9, 5, 4
  taps = (3 * h - 2) * (3 * w - 2)  # sum over output pixels of in-image taps of a 3x3 window
  assert flops(OneConv(), (1, h, w, c_in), method="xla") == pytest.approx(taps * c_in * c_out)
  assert flops(OneConv(), (1, h, w, c_in)) == h * w * 9 * c_in * c_out


def test_flops_xla_close_to_layers_at_imagenet_size():
  layers = flops(create_model("alexnet"))
  xla = flops(create_model("alexnet"), method="xla")
  assert 0.85 < xla / layers < 1.0  # below: AlexNet's padded 5x5 and 3x3 taps are skipped


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="input_shape"):
    count_params(Tiny(), (10, 10, 3))
  with pytest.raises(ValueError, match="method"):
    flops(Tiny(), (1, 10, 10, 3), method="fvcore")
  with pytest.raises(ValueError, match="depth"):
    summary(Tiny(), (1, 10, 10, 3), depth=0)


def test_summary_table():
  text = summary(Tiny(), (1, 10, 10, 3))
  lines = text.splitlines()
  assert "output shape" in lines[2] and "params" in lines[2] and "MACs" in lines[2]
  rows = {line.split()[0]: line.split() for line in lines if line.startswith(("Conv", "Dense",
                                                                               "BatchNorm"))}
  assert rows["Conv_0"][2:] == ["(1,", "10,", "10,", "8)", "216", "21,600"]
  assert rows["Conv_1"][-2:] == ["304", "4,608"]
  assert rows["BatchNorm_0"][-2:] == ["16", "0"]
  assert rows["Dense_0"][-2:] == ["85", "80"]
  assert "Parameters:                      621" in text
  assert "Non-trainable variables:         16" in text
  assert "26,288" in text  # total MACs


def test_summary_depth_shows_nested_layers():
  model = create_model("resnet20")
  shallow = summary(model, (1, 32, 32, 3))
  deep = summary(model, (1, 32, 32, 3), depth=2)
  assert "stage1_block1 " in shallow and "stage1_block1/conv1" not in shallow
  assert "stage1_block1/conv1" in deep
  assert "Parameters:                      269,722" in shallow


def test_count_params_does_not_allocate():
  """eval_shape only: ResNet-152's 60M parameters are counted without creating an array."""
  analysis.abstract_variables.cache_clear()  # trace it here, even if a test counted it
  before = len(jax.live_arrays())
  assert count_params(create_model("resnet152")) == 60_192_808
  assert len(jax.live_arrays()) == before


def test_memory_by_hand():
  """torchinfo's convention, counted by hand for Tiny at batch 2 (float32, 4 bytes)."""
  from jaxcnn.models.analysis import memory
  mem = memory(Tiny(), (2, 10, 10, 3))
  outputs = 2 * (10 * 10 * 8 + 10 * 10 * 8 + 4 * 4 * 16 + 5)  # conv, BN, conv, dense outputs
  assert mem["forward_backward_bytes"] == 2 * 4 * outputs == 29_776  # x2: gradients
  assert mem["param_bytes"] == 4 * 621
  assert mem["state_bytes"] == 4 * 16  # BN mean and var
  assert mem["input_bytes"] == 4 * 2 * 10 * 10 * 3
  assert mem["total_bytes"] == 2484 + 64 + 2400 + 29_776
  assert memory(Tiny(), (4, 10, 10, 3))["forward_backward_bytes"] == 2 * 29_776  # linear in batch


def test_memory_skips_parameter_free_modules():
  """Parent modules count through their innermost children only; parameter-free ones not at all
  (an Activation module, a pool): ResNet-20's estimate is the sum over its convs, BNs, head."""
  from jaxcnn.models.analysis import memory
  model = create_model("resnet20", num_classes=10)
  mem = memory(model, (1, 32, 32, 3))
  # 19 convs and 19 BNs: 7 at 32x32x16, 6 at 16x16x32, 6 at 8x8x64; the head: 10 outputs
  convs = 7 * 32 * 32 * 16 + 6 * 16 * 16 * 32 + 6 * 8 * 8 * 64
  assert mem["forward_backward_bytes"] == 2 * 4 * (2 * convs + 10)


def test_summary_prints_memory():
  text = summary(Tiny(), (2, 10, 10, 3))
  assert "Memory estimate at batch size 2" in text
  assert "Forward/backward pass:         29,776 B (0.03 MB)" in text
  assert "Parameters:                    2,484 B" in text


class Counted(nn.Module):
  """A dense head that records each trace of its ``__call__`` in ``TRACES``."""
  sizes: tuple = (5,)

  @nn.compact
  def __call__(self, x, *, train):
    TRACES.append(self.sizes)
    return nn.Dense(sum(self.sizes))(x.mean(axis=(1, 2)))


TRACES = []


def test_init_is_traced_once_per_model_and_input_shape():
  analysis.abstract_variables.cache_clear()
  analysis._trace.cache_clear()
  TRACES.clear()
  shape = (1, 4, 4, 3)
  assert count_params(Counted(), shape) == 3 * 5 + 5
  assert count_params(Counted(), shape) == 3 * 5 + 5  # an equal model: the cached trace
  assert flops(Counted(), shape) == 3 * 5  # the cached init, then one trace of the forward pass
  assert TRACES == [(5,), (5,)]
  assert count_params(Counted(sizes=(2, 5)), shape) == 3 * 7 + 7  # another field: traced
  assert count_params(Counted(), (2, 4, 4, 3)) == 3 * 5 + 5  # another input shape: traced
  assert len(TRACES) == 4
  assert count_params(Counted(sizes=[5]), shape) == 3 * 5 + 5  # unhashable: traced every time
  assert count_params(Counted(sizes=[5]), shape) == 3 * 5 + 5
  assert len(TRACES) == 6
