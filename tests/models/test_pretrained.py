"""torchvision/timm weights: jaxcnn's logits against torchvision's own forward pass, without torch.

The references come from ``scripts/make_torch_fixtures.py``: small configurations of the
torchvision (and timm) classes, with synthetic weights that ``torch_reference.py`` rebuilds here
from NumPy, evaluated by torch; only key names, shapes, inputs and logits are stored.
"""

from __future__ import annotations

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import create_model, pretrained

from torch_reference import synthetic_state_dict

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
with open(os.path.join(FIXTURES, "torch_cases.json")) as _f:
  CASES = json.load(_f)["cases"]


def _tuples(value):
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


@pytest.fixture(scope="module")
def references():
  from safetensors.numpy import load_file
  return load_file(os.path.join(FIXTURES, "torch_logits.safetensors"))


def _case(name):
  case = CASES[name]
  model = create_model(case["name"], **{k: _tuples(v) for k, v in case["overrides"].items()})
  state = synthetic_state_dict(case["state_dict"], case["seed"])
  return case, model, state


def _logits(model, variables, x_nchw):
  x = jnp.asarray(x_nchw.transpose(0, 2, 3, 1))
  return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_match_torch(name, references):
  case, model, state = _case(name)
  variables = pretrained.convert(model, state, source=case["source"],
                                 input_shape=(1, *case["input_shape"][2:], 3))
  got = _logits(model, variables, references[f"{name}/input"])
  want = references[f"{name}/logits"]
  scale = np.abs(want).max()
  assert scale > 0.5  # non-degenerate reference
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet"])
def test_same_padding_does_not_match(name, references):
  """The reason for padding="torch": the TF-style default gives other logits."""
  case, model, state = _case(name)
  variables = pretrained.convert(model, state, input_shape=(1, 32, 32, 3))
  same = model.clone(padding="same")
  got = _logits(same, variables, references[f"{name}/input"])
  want = references[f"{name}/logits"]
  assert np.abs(got - want).max() > 0.05 * np.abs(want).max()


def test_real_safetensors_file_written_by_torch():
  """A state dict saved by safetensors.torch reads back and converts (densenet case)."""
  state = pretrained.load_state_dict(os.path.join(FIXTURES, "densenet_tiny.safetensors"))
  case, model, synthetic = _case("densenet")
  assert set(state) == {k for k, _ in case["state_dict"]}
  for k, v in synthetic.items():
    np.testing.assert_array_equal(state[k], v)
  variables = pretrained.convert(model, state, input_shape=(1, 32, 32, 3))
  assert variables["batch_stats"]["BatchNorm_0"]["var"].shape == (16,)
  overrides = {k: _tuples(v) for k, v in case["overrides"].items()}
  model2, variables2 = pretrained.load(case["name"], os.path.join(FIXTURES,
                                                                  "densenet_tiny.safetensors"),
                                       **overrides)
  assert model2 == model
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), variables,
                                   variables2))


def test_convert_layouts_by_hand():
  """Kernel layouts against a direct formula: conv OIHW -> HWIO, dense (out, in) -> (in, out)."""
  case, model, state = _case("alexnet")
  v = pretrained.convert(model, state, input_shape=(1, 127, 127, 3))
  w = state["features.0.weight"]  # (64, 3, 11, 11)
  np.testing.assert_array_equal(np.asarray(v["params"]["conv1"]["Conv_0"]["kernel"])[2, 5, 1, 7],
                                w[7, 1, 2, 5])
  fc1 = state["classifier.1.weight"]  # (64, 256 * 6 * 6), torch flattens (C, H, W)
  k = np.asarray(v["params"]["fc1"]["kernel"])  # jaxcnn flattens (H, W, C)
  c, h, w_ = 100, 2, 4
  np.testing.assert_array_equal(k[(h * 6 + w_) * 256 + c, 9], fc1[9, c * 36 + h * 6 + w_])
  np.testing.assert_array_equal(np.asarray(v["params"]["fc3"]["kernel"]),
                                state["classifier.6.weight"].T)


def test_convert_errors_name_the_keys():
  case, model, state = _case("resnet_basic")
  shape = (1, 32, 32, 3)
  missing = dict(state)
  del missing["layer2.1.bn2.running_var"]
  with pytest.raises(ValueError, match=r"missing.*layer2\.1\.bn2\.running_var"):
    pretrained.convert(model, missing, input_shape=shape)
  extra = {**state, "layer5.0.conv1.weight": np.zeros((1, 1, 1, 1), np.float32)}
  with pytest.raises(ValueError, match=r"not used.*layer5\.0\.conv1\.weight"):
    pretrained.convert(model, extra, input_shape=shape)
  assert "params" in pretrained.convert(model, extra, input_shape=shape, strict=False)
  wrong = create_model("resnet18", stage_sizes=(1, 2, 1, 1), num_classes=11)
  with pytest.raises(ValueError, match=r"Shape mismatch: torchvision fc\.(weight|bias)"):
    pretrained.convert(wrong, state, input_shape=shape)
  with pytest.raises(ValueError, match="Unknown source"):
    pretrained.convert(model, state, source="keras")
  with pytest.raises(ValueError, match="No torchvision/timm conversion for SimpleCNN"):
    pretrained.convert(create_model("simple_cnn"), state, input_shape=(1, 8, 8, 1))
  with pytest.raises(ValueError, match="squeeze-and-excitation"):
    pretrained.convert(create_model("seresnet50"), state)


def test_load_state_dict_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="No state dict file"):
    pretrained.load_state_dict(tmp_path / "absent.safetensors")
  bad = tmp_path / "weights.npz"
  bad.write_bytes(b"")
  with pytest.raises(ValueError, match=r"expected \.safetensors"):
    pretrained.load_state_dict(bad)
  if importlib.util.find_spec("torch") is None:
    pth = tmp_path / "weights.pth"
    pth.write_bytes(b"")
    with pytest.raises(ImportError, match="weights_only=True"):
      pretrained.load_state_dict(pth)


def test_torchvision_model_overrides():
  model = pretrained.torchvision_model("efficientnet_b6", num_classes=5)
  assert (model.padding, model.norm, model.num_classes) == ("torch", "batch(epsilon=0.001)", 5)
  assert pretrained.torchvision_model("resnet50").padding == "torch"  # the family's default
  assert pretrained.torchvision_model("googlenet").branch5x5_kernel == 3


def test_replace_head_keeps_the_backbone():
  case, model, state = _case("densenet")
  shape = (1, 32, 32, 3)
  variables = pretrained.convert(model, state, input_shape=shape)
  assert pretrained.head_names(model, shape) == ("head",)
  new_model, new = pretrained.replace_head(model, variables, 3, jax.random.key(0),
                                           input_shape=shape)
  assert new_model.num_classes == 3 and new["params"]["head"]["kernel"].shape == (40, 3)
  for collection in ("params", "batch_stats"):
    old = {k: v for k, v in variables[collection].items() if k != "head"}
    kept = {k: v for k, v in new[collection].items() if k != "head"}
    assert jax.tree.structure(old) == jax.tree.structure(kept)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(kept)))
  # flax's own init of the new model with the same key (only the head is returned, so XLA
  # drops the rest and the test stays fast)
  fresh = jax.jit(lambda k: new_model.init(k, jnp.zeros(shape), train=False)["params"]["head"])(
      jax.random.key(0))
  np.testing.assert_array_equal(new["params"]["head"]["kernel"], fresh["kernel"])
  out = jax.eval_shape(lambda v, x: new_model.apply(v, x, train=False), new, jnp.ones(shape))
  assert out.shape == (1, 3)
  with pytest.raises(ValueError, match="positive int"):
    pretrained.replace_head(model, variables, 0, jax.random.key(0), input_shape=shape)


def test_head_names_of_googlenet_with_aux():
  model = create_model("googlenet", aux_logits=True, num_classes=10)
  assert pretrained.head_names(model, (1, 64, 64, 3)) == ("aux_4a", "aux_4d", "fc")
  assert pretrained.head_names(create_model("vgg11", num_classes=10), (1, 32, 32, 3)) == ("fc3",)


def test_googlenet_aux_head_matches_torchvision(references):
  """An auxiliary head alone (converted aux1 weights) on a 14x14 map: aux_pool="torchvision"
  gives torchvision's InceptionAux logits; the paper's 5x5/3 pool does not."""
  from jaxcnn.models.googlenet import AuxHead
  from jaxcnn.nn.layers import Ops
  case, model, state = _case("googlenet")
  v = pretrained.convert(model, state, input_shape=(1, 65, 65, 3))
  head = {c: v[c]["aux_4a"] for c in ("params", "batch_stats")}
  x = jnp.asarray(references["googlenet/aux1_input"].transpose(0, 2, 3, 1))
  want = references["googlenet/aux1_logits"]
  ops = Ops.create(norm="batch(epsilon=0.001)")
  got = AuxHead(10, "torchvision", ops=ops).apply(head, x, train=False)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
  paper = AuxHead(10, ops=ops).apply(head, x, train=False)
  assert np.abs(paper - want).max() > 1e-2 * np.abs(want).max()
  assert pretrained.torchvision_model("googlenet").aux_pool == "torchvision"
  with pytest.raises(ValueError, match="Unknown auxiliary pool"):
    AuxHead(10, "max", ops=ops).apply(head, x, train=False)
