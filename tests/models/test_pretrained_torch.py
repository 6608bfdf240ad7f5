"""Full-size torchvision networks against jaxcnn's converted ones (needs torch; slow).

Each torchvision model is built with ``weights=None``, given the synthetic weights of
``torch_reference.py`` (non-trivial BatchNorm statistics), saved as ``.pth`` and read back
through ``pretrained.load_state_dict`` (``torch.load(weights_only=True)``), converted, and
evaluated on one 224x224 image by both libraries.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxcnn.models import pretrained  # noqa: E402

from torch_reference import synthetic_input, synthetic_state_dict  # noqa: E402

pytestmark = pytest.mark.slow

NAMES = ["resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg11_bn", "alexnet",
         "densenet121", "googlenet", "mobilenet_v2", "efficientnet_b0"]


def _torch_model(name, seed):
  kwargs = {"init_weights": False} if name == "googlenet" else {}
  model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
  entries = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
  weights = synthetic_state_dict(entries, seed)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
  return model


def _jax_logits(model, variables, x_nchw):
  x = jnp.asarray(x_nchw.transpose(0, 2, 3, 1))
  return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))


@pytest.mark.parametrize("name", NAMES)
def test_full_size_logits_match_torchvision(name, tmp_path):
  seed = len(name)
  tv = _torch_model(name, seed)
  path = tmp_path / f"{name}.pth"
  torch.save(tv.state_dict(), path)
  state = pretrained.load_state_dict(path)  # torch.load(weights_only=True)
  x = synthetic_input((1, 3, 224, 224), seed)
  with torch.no_grad():
    want = tv(torch.from_numpy(x)).numpy()
  model = pretrained.torchvision_model(name, aux_logits=True) if name == "googlenet" else (
      pretrained.torchvision_model(name))
  variables = pretrained.convert(model, state)
  got = _jax_logits(model, variables, x)
  scale = np.abs(want).max()
  print(f"{name}: max |jaxcnn - torchvision| = {np.abs(got - want).max():.2e}, "
        f"logit scale {scale:.2f}")
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)
  if name in ("mobilenet_v2", "efficientnet_b0"):  # the TF-style padding does not match
    same = _jax_logits(model.clone(padding="same"), variables, x)
    rel = np.linalg.norm(same - want) / np.linalg.norm(want)
    print(f"{name}: padding='same' changes the logits by {100 * rel:.0f}% (relative L2)")
    assert rel > 0.01  # float32 noise is ~1e-6


def test_safetensors_from_torch_equals_pth(tmp_path):
  from safetensors.torch import save_file
  tv = _torch_model("mobilenet_v2", 1)
  state = {k: v.contiguous() for k, v in tv.state_dict().items()}
  save_file(state, tmp_path / "m.safetensors")
  torch.save(state, tmp_path / "m.pth")
  a = pretrained.load_state_dict(tmp_path / "m.safetensors")
  b = pretrained.load_state_dict(tmp_path / "m.pth")
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_pth_loading_refuses_pickled_objects(tmp_path):
  """weights_only=True: a checkpoint holding an arbitrary object is refused, not unpickled."""
  path = tmp_path / "evil.pth"
  torch.save({"state_dict": {}, "obj": _Unsafe()}, path)
  with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
    pretrained.load_state_dict(path)


class _Unsafe:
  pass


def test_memory_matches_torchinfo():
  """jaxcnn summary's estimate equals torchinfo's on torchvision's ResNet-18 (224x224, batch 2)."""
  torchinfo = pytest.importorskip("torchinfo")
  from jaxcnn.models import create_model
  from jaxcnn.models.analysis import memory
  stats = torchinfo.summary(torchvision.models.resnet18(), input_size=(2, 3, 224, 224), verbose=0)
  mem = memory(create_model("resnet18"), (2, 224, 224, 3))
  assert mem["forward_backward_bytes"] == stats.total_output_bytes
  assert mem["param_bytes"] == stats.total_param_bytes


@pytest.mark.parametrize("name", [f"efficientnet_b{i}" for i in range(8)] + [
    "googlenet", "mobilenet_v2", "resnet50", "densenet121", "vgg11_bn"])
def test_overrides_agree_with_torchvision_layers(name):
  """TORCHVISION_OVERRIDES against the torchvision builders: every BatchNorm's epsilon and
  every convolution's symmetric k // 2 padding (so padding="torch")."""
  from jaxcnn.nn.layers import get_norm
  kwargs = {"init_weights": False} if name == "googlenet" else {}
  tv = getattr(torchvision.models, name)(weights=None, **kwargs)
  eps = {m.eps for m in tv.modules() if isinstance(m, torch.nn.BatchNorm2d)}
  assert len(eps) == 1
  model = pretrained.torchvision_model(name)
  assert get_norm(model.norm).keywords["epsilon"] == pytest.approx(eps.pop())
  for m in tv.modules():
    if isinstance(m, torch.nn.Conv2d):
      assert m.padding == tuple(k // 2 for k in m.kernel_size), m
  assert model.padding == "torch"
