import functools
import math

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


def test_metadata_is_kept_per_entry_and_copied():
  reg = Registry("model", factory=True)
  reg.register(lambda: 1, name="a", metadata={"input_size": (32, 32, 3)})
  reg.register(lambda: 2, name="b")
  assert reg.metadata("a") == {"input_size": (32, 32, 3)}
  assert reg.metadata("b") == {}
  reg.metadata("a")["input_size"] = None  # a copy: the registry keeps its own
  assert reg.metadata("a") == {"input_size": (32, 32, 3)}
  with pytest.raises(ValueError, match=r"Unknown model 'c'.*a, b"):
    reg.metadata("c")


def test_model_metadata_of_the_zoo():
  from jaxcnn.models import Published, list_models, model_info

  r20 = model_info("resnet20")
  assert (r20.family, r20.input_size, r20.num_classes) == ("resnet", (32, 32, 3), 10)
  assert r20.published.params == 0.27e6 and r20.published.params_tol == 5_000  # "0.27M"
  r50 = model_info("resnet50")
  assert (r50.input_size, r50.num_classes) == ((224, 224, 3), 1000)
  assert r50.published.params == 25_557_032 and r50.published.params_tol == 0.5  # exact
  assert model_info("resnet20(num_classes=100)").num_classes == 100
  assert model_info("efficientnet_b7").input_size == (600, 600, 3)
  assert model_info("simple_cnn").input_size == (8, 8, 1) and model_info("simple_cnn").published is None
  assert model_info("googlenet").published.overrides == {"branch5x5_kernel": 3}
  assert model_info("wrn16_8").family == "resnet" and model_info("vgg16_bn").family == "vgg"
  for name in list_models():  # every variant carries metadata
    info = model_info(name)
    assert info.family and len(info.input_size) == 3
    assert info.published is None or isinstance(info.published, Published)
  with pytest.raises(ValueError, match=r"Unknown model 'resnet21'.*Known models: .*resnet20"):
    model_info("resnet21")


def test_register_model_metadata_defaults():
  from jaxcnn.models import MODELS, model_info, register_model
  from jaxcnn.models.simple import SimpleCNN

  fn = functools.partial(SimpleCNN, num_classes=3)
  register_model(fn, name="_test_registry_tiny", input_size=(5, 6, 2))
  try:
    info = model_info("_test_registry_tiny")
    assert info.family == "simple"  # the module that defines SimpleCNN
    assert info.input_size == (5, 6, 2) and info.num_classes == 3 and info.published is None
    with pytest.raises(ValueError, match="input_size"):
      register_model(fn, name="_test_registry_bad", input_size=(5, 6))
  finally:
    MODELS._entries.pop("_test_registry_tiny")  # pylint: disable=protected-access
    MODELS._metadata.pop("_test_registry_tiny")  # pylint: disable=protected-access


def test_names_sort_naturally_and_unknown_names_suggest_close_ones():
  from jaxcnn.models import list_models
  names = list_models("resnet*")
  numbers = [int(n.removeprefix("resnet")) for n in names]
  assert numbers == sorted(numbers) and names[0] == "resnet18" and names[-1] == "resnet152"
  from jaxcnn.nn import activations
  with pytest.raises(ValueError, match="Did you mean 'relu'"):
    activations.get("rleu")


def test_an_unknown_keyword_in_a_spec_is_one_clear_error_at_resolution():
  from jaxcnn.models import create_model
  from jaxcnn.nn import activations
  with pytest.raises(ValueError, match=r"activation 'elu\(beta=2\)'.*unexpected keyword.*'beta'"):
    activations.get("elu(beta=2)")
  with pytest.raises(ValueError, match="model 'resnet20'.*'actt'"):
    create_model("resnet20", actt="elu")
  assert activations.get("elu(alpha=0.5)")(-1.0) == pytest.approx(0.5 * (math.exp(-1.0) - 1.0))
