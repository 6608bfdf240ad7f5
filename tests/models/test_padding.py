"""The padding convention option: "same" (TF SAME) and "torch" (k // 2), on every model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo_checks as zc
from jaxcnn.models import create_model
from jaxcnn.nn.layers import ConvBNAct, Ops, resolve_padding


def test_resolve_padding():
  assert resolve_padding("same", (3, 3)) == "SAME"
  assert resolve_padding("torch", (7, 3)) == ((3, 3), (1, 1))
  assert resolve_padding("VALID", (3, 3)) == "VALID"
  assert resolve_padding(((2, 2), (2, 2)), (11, 11)) == ((2, 2), (2, 2))
  assert Ops.create().padding == "same" and Ops.create(padding="torch").padding == "torch"
  with pytest.raises(ValueError, match="Unknown padding convention 'valid'"):
    Ops.create(padding="valid")


@pytest.mark.parametrize("convention, pads", [("same", ((0, 1), (0, 1))),
                                              ("torch", ((1, 1), (1, 1)))])
def test_stride2_conv_pads_as_documented(convention, pads):
  """A 3x3/2 convolution on an 8x8 map against lax with the explicit pads of each convention."""
  x = jax.random.normal(jax.random.key(0), (1, 8, 8, 2))
  layer = ConvBNAct(3, (3, 3), (2, 2), norm="none", act=None, padding=convention)
  v = layer.init(jax.random.key(1), x, train=False)
  kernel = v["params"]["Conv_0"]["kernel"]
  want = jax.lax.conv_general_dilated(x, kernel, (2, 2), pads,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(layer.apply(v, x, train=False), want, rtol=1e-5, atol=1e-5)


# (name, input size, the family's default convention, overrides that keep the trace short)
FAMILIES = [("resnet18", 64, "torch", {}), ("resnet20", 32, "torch", {}),
            ("vgg11", 32, "torch", {}), ("alexnet", 64, "torch", {}),
            ("densenet121", 64, "torch", {"block_sizes": (2, 2)}), ("googlenet", 64, None, {}),
            ("mobilenet_v1", 64, None, {}), ("mobilenet_v2", 64, None, {}),
            ("efficientnet_b0", 64, None, {"depth": 0.3}), ("simple_cnn", 8, None, {}),
            ("plain_cnn", 32, "torch", {})]


def _shapes(model, size, channels=3):
  """Variable shapes and output shape, from one (cached) trace of the eval-mode init."""
  out, v = zc.abstract_init(model, (1, size, size, channels))
  return jax.tree.map(lambda a: a.shape, v), out.shape


@pytest.mark.parametrize("name, size, default, overrides", FAMILIES)
def test_every_family_takes_padding_and_keeps_its_variables(name, size, default, overrides):
  channels = 1 if name == "simple_cnn" else 3
  model = create_model(name, **overrides)
  assert model.padding == default  # None: "same"
  base = _shapes(model, size, channels)
  for convention in ("same", "torch"):
    assert _shapes(create_model(name, padding=convention, **overrides), size, channels) == base


def test_bad_convention_is_an_error():
  with pytest.raises(ValueError, match="Unknown padding convention"):
    create_model("resnet18", padding="reflect").init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                                      train=False)


def test_resnet_same_padding_changes_only_strided_layers():
  """Under "same" a ResNet's stride-1 layers are unchanged, so a network without strides
  (a CIFAR stem, one stage) gives identical outputs under both conventions."""
  def outputs(model, x):
    v = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(1))
    run = lambda m: jax.jit(lambda v, x: m.apply(v, x, train=False))(v, x)  # noqa: E731
    return run(model), run(model.clone(padding="same"))

  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  a, b = outputs(create_model("resnet20", stage_sizes=(1,), num_classes=3), x)
  np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
  a, b = outputs(create_model("resnet18", stage_sizes=(1, 1), num_classes=3), x)
  assert np.abs(a - b).max() > 1e-3
