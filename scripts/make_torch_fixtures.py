"""Writes the torchvision reference fixtures of tests/models/test_pretrained.py.

Run it where torch and torchvision are installed (not needed by the test suite)::

  python3 -m venv /work/torchvenv
  /work/torchvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 safetensors numpy [timm]
  /work/torchvenv/bin/python scripts/make_torch_fixtures.py

For each case, a small configuration of a torchvision (or timm) class is built, every tensor of
its state dict is replaced by the synthetic weights of ``tests/models/torch_reference.py`` (which
the tests rebuild from NumPy alone), and the model's eval-mode logits on a synthetic input are
recorded. So the fixtures hold only key names, shapes, inputs and logits (tens of kB), and the
tests check jaxcnn's conversion against torchvision's own forward pass. It also writes one real
state dict (``densenet_tiny.safetensors``, through ``safetensors.torch``) for the file-reading
path.

Outputs (tests/models/fixtures/): ``torch_cases.json`` (per case: the torch constructor, the
jaxcnn ``create_model`` call that should match it, the seed, the state dict's keys and shapes),
``torch_logits.safetensors`` (``<case>/input`` NCHW and ``<case>/logits``) and
``densenet_tiny.safetensors``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import torchvision
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch_file
from torch import nn
from torchvision.models.googlenet import GoogLeNet
from torchvision.models import resnet as tv_resnet
from torchvision.models.densenet import DenseNet
from torchvision.models.efficientnet import EfficientNet, MBConvConfig
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.vgg import VGG, make_layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "models", "fixtures")
sys.path.insert(0, os.path.join(ROOT, "tests", "models"))
from torch_reference import synthetic_input, synthetic_state_dict  # noqa: E402

SEED = 20261201


def _classifier(in_features: int, hidden: int, num_classes: int, *, dropout_first: bool):
  """torchvision's AlexNet (dropout first) or VGG (dropout after) classifier, narrower."""
  if dropout_first:
    return nn.Sequential(nn.Dropout(), nn.Linear(in_features, hidden), nn.ReLU(True),
                         nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(True),
                         nn.Linear(hidden, num_classes))
  return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(True), nn.Dropout(),
                       nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
                       nn.Linear(hidden, num_classes))


def _vgg(cfg, batch_norm):
  model = VGG(make_layers(cfg, batch_norm=batch_norm), num_classes=10, init_weights=False)
  last = [c for c in cfg if c != "M"][-1]
  model.classifier = _classifier(last * 49, 64, 10, dropout_first=False)
  return model


def _alexnet():
  model = torchvision.models.AlexNet(num_classes=10)
  model.classifier = _classifier(256 * 36, 64, 10, dropout_first=True)
  return model


def _efficientnet():
  setting = [MBConvConfig(1, 3, 1, 32, 16, 1), MBConvConfig(6, 3, 2, 16, 24, 2),
             MBConvConfig(6, 5, 2, 24, 40, 1)]
  return EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=1280)


# case: (torch builder, its description, jaxcnn create_model name, overrides, NCHW input shape)
CASES = {
    "resnet_basic": (
        lambda: tv_resnet.ResNet(tv_resnet.BasicBlock, [1, 2, 1, 1], num_classes=10),
        "torchvision ResNet(BasicBlock, [1, 2, 1, 1], num_classes=10)",
        "resnet18", {"stage_sizes": [1, 2, 1, 1], "num_classes": 10}, (2, 3, 32, 32)),
    "resnext_bottleneck": (
        lambda: tv_resnet.ResNet(tv_resnet.Bottleneck, [1, 1, 1, 1], num_classes=10, groups=4,
                                 width_per_group=8),
        "torchvision ResNet(Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=8)",
        "resnext50_32x4d", {"stage_sizes": [1, 1, 1, 1], "groups": 4, "width_per_group": 8,
                            "num_classes": 10}, (2, 3, 32, 32)),
    "vgg_bn": (
        lambda: _vgg([8, "M", 16, 16, "M", 32, "M"], True),
        "torchvision VGG(make_layers([8, M, 16, 16, M, 32, M], batch_norm=True)), classifier "
        "hidden 64 (torchvision's layout)",
        "vgg11_bn", {"stages": [[8], [16, 16], [32]], "hidden_features": 64, "num_classes": 10},
        (2, 3, 32, 32)),
    "vgg": (
        lambda: _vgg([8, 8, "M", 16, "M", 16, "M"], False),
        "torchvision VGG(make_layers([8, 8, M, 16, M, 16, M])), classifier hidden 64",
        "vgg11", {"stages": [[8, 8], [16], [16]], "hidden_features": 64, "num_classes": 10},
        (2, 3, 40, 40)),
    "alexnet": (
        _alexnet, "torchvision AlexNet(num_classes=10), classifier hidden 64 (its layout)",
        "alexnet", {"hidden_features": 64, "num_classes": 10}, (2, 3, 127, 127)),
    "densenet": (
        lambda: DenseNet(growth_rate=8, block_config=(2, 3), num_init_features=16, bn_size=2,
                         num_classes=10),
        "torchvision DenseNet(growth_rate=8, block_config=(2, 3), num_init_features=16, "
        "bn_size=2, num_classes=10)",
        "densenet121", {"block_sizes": [2, 3], "growth_rate": 8, "stem_features": 16,
                        "bottleneck_width": 2, "num_classes": 10}, (2, 3, 32, 32)),
    "googlenet": (
        lambda: GoogLeNet(num_classes=10, aux_logits=True, init_weights=False),
        "torchvision GoogLeNet(num_classes=10, aux_logits=True) at an odd size (ceil-mode pools)",
        "googlenet", {"num_classes": 10, "aux_logits": True, "branch5x5_kernel": 3,
                      "padding": "torch", "norm": "batch(epsilon=0.001)"}, (1, 3, 65, 65)),
    "mobilenet_v2": (
        lambda: MobileNetV2(num_classes=10,
                            inverted_residual_setting=[[1, 8, 1, 1], [6, 16, 2, 2], [6, 24, 1, 2]]),
        "torchvision MobileNetV2(inverted_residual_setting=[[1, 8, 1, 1], [6, 16, 2, 2], "
        "[6, 24, 1, 2]], num_classes=10)",
        "mobilenet_v2", {"stages": [[1, 8, 1, 1], [6, 16, 2, 2], [6, 24, 1, 2]],
                         "num_classes": 10, "padding": "torch"}, (2, 3, 32, 32)),
    "efficientnet": (
        _efficientnet,
        "torchvision EfficientNet([MBConvConfig(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), "
        "(6, 5, 2, 24, 40, 1)], last_channel=1280, num_classes=10)",
        "efficientnet_b0", {"stages": [[1, 3, 1, 16, 1], [6, 3, 2, 24, 2], [6, 5, 2, 40, 1]],
                            "num_classes": 10, "padding": "torch"}, (2, 3, 32, 32)),
}


def _timm_cases():
  try:
    import timm
  except ImportError:
    print("timm not installed: timm cases skipped")
    return {}, None
  from timm.models.efficientnet import _gen_efficientnet

  def efficientnet():  # timm's own B0 generator, narrowed and shortened
    return _gen_efficientnet("efficientnet_b0", channel_multiplier=0.25, depth_multiplier=0.3,
                             pretrained=False, num_classes=10)

  cases = {
      "timm_resnet": (
          lambda: timm.models.resnet.ResNet(timm.models.resnet.BasicBlock, [1, 2, 1, 1],
                                            num_classes=10),
          "timm ResNet(BasicBlock, [1, 2, 1, 1], num_classes=10)",
          "resnet18", {"stage_sizes": [1, 2, 1, 1], "num_classes": 10}, (2, 3, 32, 32)),
      "timm_seresnet": (
          lambda: timm.models.resnet.ResNet(timm.models.resnet.Bottleneck, [1, 1, 1, 1],
                                            num_classes=10, block_args={"attn_layer": "se"}),
          "timm ResNet(Bottleneck, [1, 1, 1, 1], block_args=dict(attn_layer='se'))",
          "seresnet50", {"stage_sizes": [1, 1, 1, 1], "num_classes": 10}, (2, 3, 32, 32)),
      "timm_efficientnet": (
          efficientnet,
          "timm _gen_efficientnet('efficientnet_b0', channel_multiplier=0.25, "
          "depth_multiplier=0.3, num_classes=10)",
          "efficientnet_b0", {"width": 0.25, "depth": 0.3, "num_classes": 10,
                              "padding": "torch"}, (2, 3, 32, 32)),
  }
  cases["timm_tf_efficientnet"] = (  # timm's TF port: SAME padding and BN epsilon 1e-3
      lambda: _gen_efficientnet("tf_efficientnet_b0", channel_multiplier=0.25,
                                depth_multiplier=0.3, pretrained=False, num_classes=10,
                                bn_eps=1e-3, pad_type="same"),
      "timm _gen_efficientnet('tf_efficientnet_b0', channel_multiplier=0.25, "
      "depth_multiplier=0.3, bn_eps=1e-3, pad_type='same', num_classes=10)",
      "efficientnet_b0", {"width": 0.25, "depth": 0.3, "num_classes": 10,
                          "norm": "batch(epsilon=0.001)"}, (2, 3, 32, 32))
  return cases, timm.__version__


def _run_case(build, seed, input_shape):
  torch.manual_seed(0)
  model = build().eval()
  entries = [(k, list(v.shape)) for k, v in model.state_dict().items()]
  weights = synthetic_state_dict(entries, seed)
  state = {k: torch.from_numpy(v) for k, v in weights.items()}
  missing, unexpected = model.load_state_dict(state, strict=False)
  assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), missing
  x = synthetic_input(input_shape, seed)
  with torch.no_grad():
    logits = model(torch.from_numpy(x)).numpy()
  return model, entries, x, logits


def main() -> None:
  os.makedirs(FIXTURES, exist_ok=True)
  timm_cases, timm_version = _timm_cases()
  cases = {**{k: (*v, "torchvision") for k, v in CASES.items()},
           **{k: (*v, "timm") for k, v in timm_cases.items()}}
  record = {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm_version, "cases": {}}
  tensors = {}
  for i, (case, (build, description, name, overrides, shape, source)) in enumerate(cases.items()):
    seed = SEED + i
    model, entries, x, logits = _run_case(build, seed, shape)
    record["cases"][case] = {"torch": description, "source": source, "name": name,
                             "overrides": overrides, "seed": seed, "input_shape": list(shape),
                             "state_dict": entries}
    tensors[f"{case}/input"] = x
    tensors[f"{case}/logits"] = logits.astype(np.float32)
    print(f"{case:20s} {sum(np.prod(s) for _, s in entries):>10,.0f} weights  logits "
          f"{logits.shape} std {logits.std():.3f}")
    if case == "googlenet":  # an auxiliary head alone, at 14x14 where the pools differ
      x_aux = synthetic_input((1, 512, 14, 14), seed + 1000)
      with torch.no_grad():
        tensors["googlenet/aux1_input"] = x_aux
        tensors["googlenet/aux1_logits"] = model.aux1(torch.from_numpy(x_aux)).numpy()
    if case == "densenet":
      save_torch_file({k: v.contiguous() for k, v in model.state_dict().items()},
                      os.path.join(FIXTURES, "densenet_tiny.safetensors"))
  save_file(tensors, os.path.join(FIXTURES, "torch_logits.safetensors"))
  with open(os.path.join(FIXTURES, "torch_cases.json"), "w") as f:
    json.dump(record, f, indent=1)
    f.write("\n")


if __name__ == "__main__":
  main()
