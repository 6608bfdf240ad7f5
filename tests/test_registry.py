import functools

import pytest

from jaxcnn.registry import Registry, parse_spec


def test_parse_spec_literals():
  assert parse_spec("elu") == ("elu", (), {})
  assert parse_spec(" leaky_relu(negative_slope=0.1) ") == ("leaky_relu", (), {"negative_slope": 0.1})
  assert parse_spec("f(2, mode='fan_out', t=(1, 2))") == ("f", (2,), {"mode": "fan_out", "t": (1, 2)})


@pytest.mark.parametrize("bad", ["elu(alpha=x)", "a.b", "elu(", "1+2", "f(**d)"])
def test_parse_spec_rejects_non_literals(bad):
  with pytest.raises(ValueError):
    parse_spec(bad)


def test_function_registry_partials_and_passthrough():
  reg = Registry("activation", factory=False)

  @reg.register
  def scale(x, factor=2.0):
    return x * factor

  assert reg.get("scale") is scale
  assert reg.get("scale(factor=3.0)")(2.0) == 6.0
  assert isinstance(reg.get("scale(factor=3.0)"), functools.partial)
  fn = lambda x: x + 1
  assert reg.get(fn) is fn
  assert reg.get(scale, factor=5.0)(1.0) == 5.0


def test_factory_registry_calls_entry():
  reg = Registry("initializer", factory=True)
  reg.register(lambda scale=1.0: ("init", scale), name="const")
  assert reg.get("const") == ("init", 1.0)
  assert reg.get("const(scale=0.5)") == ("init", 0.5)
  assert reg.get("const", scale=3.0) == ("init", 3.0)


def test_unknown_name_lists_known():
  reg = Registry("model", factory=True)
  reg.register(lambda: 1, name="resnet20")
  reg.register(lambda: 2, name="vgg16")
  with pytest.raises(ValueError, match=r"Unknown model 'resnet2'.*resnet20, vgg16"):
    reg.get("resnet2")


def test_names_pattern_and_duplicates():
  reg = Registry("model", factory=True)
  for n in ["resnet18", "resnet50", "vgg11"]:
    reg.register(lambda: None, name=n)
  assert reg.names("res*") == ["resnet18", "resnet50"]
  assert "vgg11" in reg and len(reg) == 3
  with pytest.raises(ValueError, match="already registered"):
    reg.register(lambda: None, name="vgg11")
