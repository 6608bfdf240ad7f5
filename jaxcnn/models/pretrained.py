"""torchvision and timm weights for the zoo: read a state dict, convert it to jaxcnn variables.

::

  from jaxcnn.models import pretrained

  model = pretrained.torchvision_model("mobilenet_v2")        # create_model + torchvision's options
  state = pretrained.load_state_dict("mobilenet_v2.safetensors")
  variables = pretrained.convert(model, state)                # {"params", "batch_stats"}
  logits = model.apply(variables, x_nhwc, train=False)
  model, variables = pretrained.load("mobilenet_v2", "mobilenet_v2.safetensors")  # the three

  model, variables = pretrained.replace_head(model, variables, num_classes=10,
                                             key=jax.random.key(0))   # fine-tuning

Families both sides have: ResNet / ResNeXt / Wide ResNet (and timm's SE-ResNet), VGG (with and
without BN), AlexNet, DenseNet, GoogLeNet, MobileNetV2, EfficientNet B0-B7. ``.safetensors`` files
are read with the ``safetensors`` package (no unpickling); ``.pth``/``.pt``/``.bin`` files only
through ``torch.load(weights_only=True)``, when torch is installed.

The conversion is by name: each family maps a jaxcnn module path to the torch module that holds
the same weights (``stage2_block1/conv1/Conv_0`` -> ``layer2.0.conv1``); convolution kernels go
from OIHW to HWIO, dense kernels are transposed, and the first dense layer after a flatten (AlexNet,
VGG, GoogLeNet's auxiliary heads) has its rows reordered from torch's (C, H, W) flattening to
jaxcnn's (H, W, C). Every variable of the model must be found with its shape and every tensor of
the state dict used (``num_batches_tracked`` aside), or :func:`convert` raises a ValueError naming
the keys.

The converted model expects NHWC images normalized as the weights were trained (torchvision:
``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``). torchvision's pretrained GoogLeNet also sets
``transform_input=True``, which turns such inputs into ``(x / 255 - 0.5) / 0.5`` before the first
layer: do that instead of the mean/std normalization for those weights.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import alexnet as _alexnet
from jaxcnn.models import densenet as _densenet
from jaxcnn.models import efficientnet as _efficientnet
from jaxcnn.models import googlenet as _googlenet
from jaxcnn.models import mobilenet as _mobilenet
from jaxcnn.models import resnet as _resnet
from jaxcnn.models import vgg as _vgg
from jaxcnn.models._common import create_model
from jaxcnn.models.analysis import abstract_variables

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SOURCES", "TIMM_OVERRIDES", "TORCHVISION_OVERRIDES",
           "convert",
           "head_classes", "head_names", "load", "load_state_dict", "replace_head",
           "torchvision_model"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SOURCES = ("torchvision", "timm")

_EPS_1E3 = "batch(epsilon=0.001)"
# create_model overrides that give torchvision's network for a registered name (the rest of the
# registered variants of these families match torchvision as registered).
TORCHVISION_OVERRIDES: dict[str, dict[str, Any]] = {
    "googlenet": {"branch5x5_kernel": 3, "padding": "torch", "norm": _EPS_1E3,
                  "aux_pool": "torchvision"},
    "mobilenet_v2": {"padding": "torch"},
    **{f"efficientnet_b{i}": {"padding": "torch"} for i in range(5)},
    **{f"efficientnet_b{i}": {"padding": "torch", "norm": _EPS_1E3} for i in range(5, 8)},
}

# The same for timm's names: its non-``tf_`` EfficientNets pad ``k // 2``; its ``tf_`` ports keep
# TF's SAME padding (jaxcnn's default) with BN epsilon 1e-3: ``norm="batch(epsilon=0.001)"``.
TIMM_OVERRIDES: dict[str, dict[str, Any]] = {
    f"efficientnet_b{i}": {"padding": "torch"} for i in range(8)}

_PTH = (".pth", ".pt", ".bin")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a state dict as NumPy arrays: ``.safetensors`` (no torch needed) or ``.pth``/``.pt``/
  ``.bin`` through ``torch.load(weights_only=True)`` (needs torch; nothing is unpickled beyond
  tensors and plain containers). A checkpoint that wraps the weights in ``"state_dict"`` or
  ``"model"`` is unwrapped."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No state dict file at {path!r}.")
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file
    except ImportError as e:  # pragma: no cover - depends on the installation
      raise ImportError("Reading .safetensors needs the safetensors package: "
                        "pip install 'jaxcnn[pretrained]' (or safetensors)") from e
    return dict(load_file(path))
  if path.endswith(_PTH):
    try:
      import torch
    except ImportError as e:
      raise ImportError(f"Reading {os.path.basename(path)!r} needs torch (torch.load with "
                        "weights_only=True); install torch, or convert the file to "
                        ".safetensors where torch is installed.") from e
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
      if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
        obj = obj[wrapper]
    if not isinstance(obj, Mapping):
      raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a state dict.")
    return {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "detach")}
  raise ValueError(f"Unknown weights file type {path!r}; expected .safetensors, "
                   f"{', '.join(_PTH)}.")


def torchvision_model(name: str, **overrides: Any) -> nn.Module:
  """``create_model(name)`` with the options that make it torchvision's network
  (:data:`TORCHVISION_OVERRIDES`: the padding convention, GoogLeNet's 3x3 "5x5" branch and BN
  epsilon); ``overrides`` win."""
  base = name.split("(", 1)[0].strip()
  return create_model(name, **{**TORCHVISION_OVERRIDES.get(base, {}), **overrides})


# --- name maps: jaxcnn module path -> (torch module prefix, (C, H, W) of a flattened input) ---

_Map = Callable[[tuple[str, ...]], "str | tuple[str, tuple[int, int, int]]"]


def _num(name: str, prefix: str) -> int:
  m = re.fullmatch(rf"{prefix}(\d+)", name)
  if not m:
    raise KeyError(name)
  return int(m[1])


def _conv_bn(path: tuple[str, ...], at: int, base: str) -> str:
  """A ConvBNAct's ``Conv_0`` -> ``base.0``, ``BatchNorm_0`` -> ``base.1`` (torchvision's
  ``Conv2dNormActivation``)."""
  return f"{base}.{ {'Conv_0': 0, 'BatchNorm_0': 1}[path[at]] }"


def _resnet_map(model: _resnet.ResNet, source: str) -> _Map:
  if model.fixup or model.stem != "imagenet" or model.shortcut != "projection":
    raise ValueError("torchvision/timm ResNets have the ImageNet stem and projection shortcuts "
                     "without Fixup; this ResNet has stem={!r}, shortcut={!r}, fixup={}.".format(
                         model.stem, model.shortcut, model.fixup))
  if model.block_cls not in (_resnet.BasicBlock, _resnet.Bottleneck):
    raise ValueError(f"torchvision/timm ResNets are post-activation (BasicBlock, Bottleneck); got "
                     f"{getattr(model.block_cls, '__name__', model.block_cls)}.")
  if model.se_reduction and source != "timm":
    raise ValueError("torchvision has no squeeze-and-excitation ResNets; use source='timm'.")

  def key(path):
    top = path[0]
    if top in ("stem_conv", "stem_norm", "head"):
      return {"stem_conv": "conv1", "stem_norm": "bn1", "head": "fc"}[top]
    m = re.fullmatch(r"stage(\d+)_block(\d+)", top)
    if not m:
      raise KeyError(top)
    layer = f"layer{m[1]}.{int(m[2]) - 1}"
    sub = path[1]
    if sub == "shortcut":
      return _conv_bn(path, 2, f"{layer}.downsample")
    if sub == "se":
      return f"{layer}.se.fc{_num(path[2], 'Conv_') + 1}"
    i = _num(sub, "conv")
    return f"{layer}.conv{i}" if path[2] == "Conv_0" else f"{layer}.bn{i}"

  return key


def _vgg_map(model: _vgg.VGG, with_bn: bool) -> _Map:
  # torchvision's features.N counts, per convolution, conv (+ bn) + relu; each stage ends in a pool.
  where, n = {}, 0
  for s, stage in enumerate(model.stages):
    for i, _ in enumerate(stage):
      where[f"conv{s + 1}_{i + 1}"] = n
      n += 3 if with_bn else 2
    n += 1
  last = model.stages[-1][-1]

  def key(path):
    top = path[0]
    if top in ("fc1", "fc2", "fc3"):
      prefix = f"classifier.{3 * (int(top[2]) - 1)}"
      return (prefix, (last, 7, 7)) if top == "fc1" else prefix
    return f"features.{where[top] + (path[1] != 'Conv_0')}"

  return key


def _alexnet_map(model: _alexnet.AlexNet) -> _Map:
  convs = {"conv1": 0, "conv2": 3, "conv3": 6, "conv4": 8, "conv5": 10}
  fcs = {"fc1": 1, "fc2": 4, "fc3": 6}

  def key(path):
    top = path[0]
    if top in convs and path[1] == "Conv_0":
      return f"features.{convs[top]}"
    if top in fcs:
      prefix = f"classifier.{fcs[top]}"
      return (prefix, (256, 6, 6)) if top == "fc1" else prefix
    raise KeyError(top)

  return key


def _densenet_map(model: _densenet.DenseNet) -> _Map:
  if not model.imagenet_stem or not model.bottleneck_width:
    raise ValueError("torchvision DenseNets have the ImageNet stem and 1x1 bottlenecks; got "
                     f"imagenet_stem={model.imagenet_stem}, "
                     f"bottleneck_width={model.bottleneck_width}.")

  def key(path):
    top = path[0]
    fixed = {"stem": "features.conv0", "BatchNorm_0": "features.norm0",
             "BatchNorm_1": "features.norm5", "head": "classifier"}
    if top in fixed and len(path) == 1:
      return fixed[top]
    if top.startswith("block"):
      layer = f"features.denseblock{_num(top, 'block')}.denselayer{_num(path[1], 'DenseLayer_') + 1}"
      leaf = {"BatchNorm_0": "norm1", "Conv_0": "conv1", "BatchNorm_1": "norm2",
              "Conv_1": "conv2"}[path[2]]
      return f"{layer}.{leaf}"
    if top.startswith("transition"):
      return f"features.{top}." + {"BatchNorm_0": "norm", "Conv_0": "conv"}[path[1]]
    raise KeyError(top)

  return key


_INCEPTION_BRANCHES = {"branch1x1": "branch1", "branch3x3_reduce": "branch2.0",
                       "branch3x3": "branch2.1", "branch5x5_reduce": "branch3.0",
                       "branch5x5": "branch3.1", "pool_proj": "branch4.1"}


def _googlenet_map(model: _googlenet.GoogLeNet) -> _Map:
  stem = {"conv1": "conv1", "conv2_reduce": "conv2", "conv2": "conv3"}

  def key(path):
    top = path[0]
    bn = lambda base, at: f"{base}.conv" if path[at] == "Conv_0" else f"{base}.bn"  # noqa: E731
    if top in stem:
      return bn(stem[top], 1)
    if top.startswith("inception"):
      return bn(f"{top}.{_INCEPTION_BRANCHES[path[1]]}", 2)
    if top.startswith("aux_"):
      aux = {"aux_4a": "aux1", "aux_4d": "aux2"}[top]
      if path[1] == "conv":
        return bn(f"{aux}.conv", 2)
      return (f"{aux}.fc1", (128, 4, 4)) if path[1] == "fc1" else f"{aux}.fc2"
    if top == "fc":
      return "fc"
    raise KeyError(top)

  return key


def _mobilenet_map(model: _mobilenet.MobileNetV2, blocks) -> _Map:
  last = 1 + sum(s.repeats for s in model.stages)

  def key(path):
    top = path[0]
    if top == "stem":
      return _conv_bn(path, 1, "features.0")
    if top == "head_conv":
      return _conv_bn(path, 1, f"features.{last}")
    if top == "head":
      return "classifier.1"
    n = _num(top, "block")
    expand = "expand" in blocks[top]
    order = (["expand"] if expand else []) + ["depthwise", "project"]
    i = order.index(path[1])
    if path[1] == "project":  # conv.{i} is the projection's conv, conv.{i+1} its BN
      return f"features.{n}.conv.{i}" if path[2] == "Conv_0" else f"features.{n}.conv.{i + 1}"
    return _conv_bn(path, 2, f"features.{n}.conv.{i}")

  return key


def _efficientnet_map(model: _efficientnet.EfficientNet, source: str, blocks) -> _Map:
  repeats = [_efficientnet.round_repeats(s[4], model.depth) for s in model.stages]
  where = {}
  for s, n in enumerate(repeats):
    for i in range(n):
      where[f"block{len(where) + 1}"] = (s, i)

  def tv(path):
    top = path[0]
    if top == "stem":
      return _conv_bn(path, 1, "features.0")
    if top == "head_conv":
      return _conv_bn(path, 1, f"features.{len(repeats) + 1}")
    if top == "head":
      return "classifier.1"
    s, i = where[top]
    order = (["expand"] if "expand" in blocks[top] else []) + ["depthwise", "se", "project"]
    base = f"features.{s + 1}.{i}.block.{order.index(path[1])}"
    if path[1] == "se":
      return f"{base}.fc{_num(path[2], 'Conv_') + 1}"
    return _conv_bn(path, 2, base)

  def timm(path):
    top = path[0]
    if top == "stem":
      return "conv_stem" if path[1] == "Conv_0" else "bn1"
    if top == "head_conv":
      return "conv_head" if path[1] == "Conv_0" else "bn2"
    if top == "head":
      return "classifier"
    s, i = where[top]
    base = f"blocks.{s}.{i}"
    sub, leaf = path[1], path[2]
    if sub == "se":
      return f"{base}.se." + ("conv_reduce" if leaf == "Conv_0" else "conv_expand")
    if "expand" in blocks[top]:  # InvertedResidual: conv_pw bn1, conv_dw bn2, se, conv_pwl bn3
      names = {"expand": ("conv_pw", "bn1"), "depthwise": ("conv_dw", "bn2"),
               "project": ("conv_pwl", "bn3")}
    else:  # DepthwiseSeparableConv: conv_dw bn1, se, conv_pw bn2
      names = {"depthwise": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")}
    conv, bn = names[sub]
    return f"{base}.{conv if leaf == 'Conv_0' else bn}"

  return timm if source == "timm" else tv


def _name_map(model: nn.Module, source: str, template: Mapping[str, Any]) -> _Map:
  """The family's name map for ``model`` (dispatch on its class)."""
  params = template["params"]
  if isinstance(model, _resnet.ResNet):
    return _resnet_map(model, source)
  if source == "timm" and not isinstance(model, _efficientnet.EfficientNet):
    raise ValueError(f"source='timm' is supported for ResNet and EfficientNet, not "
                     f"{type(model).__name__}; use source='torchvision'.")
  if isinstance(model, _vgg.VGG):
    with_bn = any("BatchNorm_0" in v for k, v in params.items() if k.startswith("conv"))
    return _vgg_map(model, with_bn)
  if isinstance(model, _alexnet.AlexNet):
    if any("BatchNorm_0" in v for k, v in params.items() if k.startswith("conv")):
      raise ValueError("torchvision's AlexNet has no normalization; build it with norm='none'.")
    return _alexnet_map(model)
  if isinstance(model, _densenet.DenseNet):
    return _densenet_map(model)
  if isinstance(model, _googlenet.GoogLeNet):
    return _googlenet_map(model)
  if isinstance(model, _mobilenet.MobileNetV2):
    return _mobilenet_map(model, params)
  if isinstance(model, _efficientnet.EfficientNet):
    return _efficientnet_map(model, source, params)
  raise ValueError(f"No torchvision/timm conversion for {type(model).__name__}; supported: "
                   "ResNet (ResNeXt, Wide ResNet), VGG, AlexNet, DenseNet, GoogLeNet, "
                   "MobileNetV2, EfficientNet.")


# --- conversion -------------------------------------------------------------------------------

def _modules(tree: Mapping[str, Any], path: tuple[str, ...] = ()):
  """(module path, its leaves) for every dict of arrays in a variables collection."""
  leaves = {k: v for k, v in tree.items() if not isinstance(v, Mapping)}
  if leaves:
    yield path, leaves
  for k, v in tree.items():
    if isinstance(v, Mapping):
      yield from _modules(v, path + (k,))


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def _torch_leaf(kind: str, name: str, array: np.ndarray,
                chw: tuple[int, int, int] | None) -> np.ndarray:
  """A torch tensor in jaxcnn's layout: OIHW -> HWIO, (out, in) -> (in, out)."""
  if name == "kernel" and kind == "conv":
    return array.transpose(2, 3, 1, 0)
  if name == "kernel":
    if chw is not None:  # torch flattened (C, H, W); jaxcnn flattens (H, W, C)
      c, h, w = chw
      if array.shape[1] != c * h * w:
        raise ValueError(f"expected {c}x{h}x{w} = {c * h * w} inputs, got {array.shape[1]}")
      return array.reshape(array.shape[0], c, h, w).transpose(2, 3, 1, 0).reshape(c * h * w, -1)
    return array.T
  return array


_TORCH_NAMES = {("params", "kernel"): "weight", ("params", "bias"): "bias",
                ("params", "scale"): "weight", ("batch_stats", "mean"): "running_mean",
                ("batch_stats", "var"): "running_var"}


def convert(model: nn.Module, state_dict: Mapping[str, Any], *, source: str = "torchvision",
            input_shape=(1, 224, 224, 3), strict: bool = True) -> dict[str, Any]:
  """jaxcnn variables (``{"params", "batch_stats"}``) for ``model`` from a torch state dict.

  Args:
    model: a zoo model of the same configuration as the weights (see :func:`torchvision_model`
      for the registered variants).
    state_dict: torch key -> array (NumPy, or anything with ``.numpy()``), e.g. from
      :func:`load_state_dict`.
    source: ``"torchvision"`` or ``"timm"`` (timm's names: ResNet, SE-ResNet, EfficientNet).
    input_shape: NHWC shape used to trace the model's variable shapes (nothing is computed).
    strict: raise if the state dict holds tensors the model does not use (``num_batches_tracked``
      and, with ``aux_logits=False``, GoogLeNet's auxiliary heads are always allowed).

  Raises:
    ValueError: naming the missing keys, the unused keys, or the first shape mismatch.
  """
  if source not in SOURCES:
    raise ValueError(f"Unknown source {source!r}; use one of {SOURCES}.")
  template = abstract_variables(model, input_shape)
  key = _name_map(model, source, template)
  arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in state_dict.items()}
  out: dict[str, Any] = {}
  used, missing = set(), []
  for collection in ("params", "batch_stats"):
    for path, leaves in _modules(template.get(collection, {})):
      try:
        mapped = key(path)
      except (KeyError, ValueError, IndexError):
        raise ValueError(f"No {source} name for jaxcnn module {'/'.join(path)!r} of "
                         f"{type(model).__name__}.") from None
      prefix, chw = mapped if isinstance(mapped, tuple) else (mapped, None)
      kind = "conv" if "kernel" in leaves and leaves["kernel"].ndim == 4 else "other"
      for name, leaf in leaves.items():
        torch_key = f"{prefix}.{_TORCH_NAMES[collection, name]}"
        if torch_key not in arrays:
          missing.append(torch_key)
          continue
        try:
          value = _torch_leaf(kind, name, arrays[torch_key], chw)
        except ValueError as e:
          raise ValueError(f"{torch_key} -> {'/'.join((collection,) + path + (name,))}: {e}.")
        if value.shape != tuple(leaf.shape):
          raise ValueError(f"Shape mismatch: {source} {torch_key} {arrays[torch_key].shape} "
                           f"gives {value.shape}, jaxcnn {'/'.join((collection,) + path + (name,))} "
                           f"needs {tuple(leaf.shape)}: is the model built with the same "
                           "configuration as the weights?")
        used.add(torch_key)
        _set(out.setdefault(collection, {}), path + (name,), jnp.asarray(value, leaf.dtype))
  if missing:
    raise ValueError(f"{len(missing)} tensors missing from the {source} state dict for "
                     f"{type(model).__name__}: {missing[:8]}{' ...' if len(missing) > 8 else ''}.")
  unused = sorted(k for k in arrays if k not in used and not k.endswith("num_batches_tracked"))
  if isinstance(model, _googlenet.GoogLeNet) and not model.aux_logits:
    unused = [k for k in unused if not k.startswith(("aux1.", "aux2."))]
  if strict and unused:
    raise ValueError(f"{len(unused)} tensors of the {source} state dict are not used by "
                     f"{type(model).__name__}: {unused[:8]}{' ...' if len(unused) > 8 else ''}; "
                     "is the model built with the same configuration (depth, aux_logits)? "
                     "strict=False ignores them.")
  return out


def load(name: str, path: str | os.PathLike, *, source: str = "torchvision",
         strict: bool = True, **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
  """``(model, variables)`` for a registered name from a torchvision/timm weights file:
  ``create_model`` with :data:`TORCHVISION_OVERRIDES` (or :data:`TIMM_OVERRIDES`),
  :func:`load_state_dict` and :func:`convert` in one call.

  ``overrides`` go to ``create_model``; ``num_classes`` defaults to the file's classifier's
  (:func:`head_classes`).
  """
  state_dict = load_state_dict(path)
  if "num_classes" not in overrides and head_classes(state_dict):
    overrides["num_classes"] = head_classes(state_dict)
  if source == "timm":
    base = name.split("(", 1)[0].strip()
    model = create_model(name, **{**TIMM_OVERRIDES.get(base, {}), **overrides})
  else:
    model = torchvision_model(name, **overrides)
  return model, convert(model, state_dict, source=source, strict=strict)


# The classifier's bias in torchvision's (ResNet, GoogLeNet; DenseNet; MobileNetV2, EfficientNet;
# VGG, AlexNet) and timm's (ResNet; EfficientNet) state dicts.
_HEAD_BIASES = ("fc.bias", "classifier.bias", "classifier.1.bias", "classifier.6.bias",
                "head.fc.bias")


def head_classes(state_dict: Mapping[str, Any]) -> int | None:
  """The number of classes of a torchvision/timm state dict's classifier (None if not found)."""
  for key in _HEAD_BIASES:
    if key in state_dict:
      return int(np.shape(state_dict[key])[0])
  return None


# --- fine-tuning ------------------------------------------------------------------------------

def _flat_shapes(tree: Mapping[str, Any]) -> dict[tuple[str, ...], tuple[int, ...]]:
  out = {}
  for path, leaves in _modules(tree):
    for name, leaf in leaves.items():
      out[path + (name,)] = tuple(leaf.shape)
  return out


def head_names(model: nn.Module, input_shape=(1, 224, 224, 3)) -> tuple[str, ...]:
  """Top-level module names (``"head"``, ``"fc3"``, ``"aux_4a"`` ...) of ``model``'s classifier:
  those whose parameter shapes depend on ``num_classes``."""
  if not hasattr(model, "num_classes"):
    raise ValueError(f"{type(model).__name__} has no num_classes field.")
  a = _flat_shapes(abstract_variables(model, input_shape)["params"])
  b = _flat_shapes(abstract_variables(model.clone(num_classes=model.num_classes + 1),
                                       input_shape)["params"])
  return tuple(sorted({path[0] for path in a if a[path] != b.get(path)}))


def replace_head(model: nn.Module, variables: Mapping[str, Any], num_classes: int,
                 key: jax.Array, *, input_shape=(1, 224, 224, 3)) -> tuple[nn.Module, dict]:
  """``(model with num_classes, variables)``: the classifier head freshly initialized, every other
  variable kept as given (e.g. converted weights), for fine-tuning.

  The head is every top-level module whose parameters depend on ``num_classes``
  (:func:`head_names`); its new values come from ``model.init`` of the new model with ``key``.
  Freeze the rest with :func:`jaxcnn.train.optim.freeze`.
  """
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
  names = head_names(model, input_shape)
  new_model = model.clone(num_classes=num_classes)
  x = jnp.zeros(tuple(input_shape), jnp.float32)

  def init_head(k):  # returns the head only, so XLA drops the rest of the forward pass
    fresh = new_model.init(k, x, train=False)
    return {c: {n: t[n] for n in names if n in t} for c, t in fresh.items()}

  out = {c: dict(v) for c, v in variables.items()}
  for collection, tree in jax.jit(init_head)(key).items():
    out.setdefault(collection, {}).update(tree)
  return new_model, out
