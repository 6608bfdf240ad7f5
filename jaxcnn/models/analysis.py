"""Size and cost of a model without running it: parameters, multiply-accumulates, a layer table.

Nothing here touches real data or computes a forward pass: shapes come from ``jax.eval_shape``
and costs from XLA's cost analysis of the lowered (not compiled) eval-mode forward pass. The
traces are cached per (model, input shape) (:func:`cached_per_model`): ``count_params`` then
``flops`` of one model trace it once.

Counting conventions:
  * :func:`count_params` counts the ``"params"`` collection only (trainable weights). BatchNorm
    running statistics (``"batch_stats"``) are not parameters, as in the papers and in
    torchvision's ``sum(p.numel() for p in model.parameters())``.
  * :func:`flops` returns multiply-accumulates (MACs) per image, the unit the papers call
    "FLOPs" or "multiply-adds" (ResNet-50: 4.1e9). The default, ``method="layers"``, is the
    convention of the published figures (torchvision, fvcore, the papers): every module that owns
    a ``"kernel"`` parameter (convolutions, dense layers) costs ``kernel.size`` MACs per output
    position, padding taps included; pooling, activations, normalization and additions are free.
    ``method="xla"`` is XLA's cost analysis of the lowered forward pass, ``flops / 2``. XLA counts
    2 flops per multiply-add *over the taps that touch the input only* (taps on zero padding are
    skipped: a 3x3 "SAME" convolution on an HxW map costs ``(3H - 2)(3W - 2) / (9HW)`` of the
    textbook figure, 0.82 at 7x7, 0.98 at 56x56) and 1 flop per element of every element-wise
    operation. It is what the hardware is asked to do; it runs 3 to 7% below the published
    figures at ImageNet resolution (AlexNet 0.66e9 against 0.71e9) and further below on small maps.
  * :func:`memory` is torchinfo's estimate: the bytes of the parameters, of the input, and the
    "forward/backward pass size", twice (output and its gradient) the output bytes of every
    innermost module that owns parameters (convolutions, dense layers, normalizations), at the
    batch size of ``input_shape``. Parameter-free layers (activations, pools, additions) and
    XLA's fusion are not counted, so it is a yardstick for comparing models and batch sizes, not
    a measurement of what a compiled step allocates.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.nn import tracing

__all__ = ["abstract_variables", "cached_per_model", "count_params", "flops", "memory", "summary"]

DEFAULT_INPUT_SHAPE = (1, 224, 224, 3)


def _input(input_shape: Sequence[int]) -> jax.ShapeDtypeStruct:
  input_shape = tuple(int(d) for d in input_shape)
  if len(input_shape) != 4 or min(input_shape) < 1:
    raise ValueError(f"input_shape must be (batch, height, width, channels), got {input_shape}.")
  return jax.ShapeDtypeStruct(input_shape, jnp.float32)


def cached_per_model(fn: Callable[[nn.Module, tuple[int, ...]], Any]
                     ) -> Callable[[nn.Module, Sequence[int]], Any]:
  """``fn(model, input_shape)``, cached per (model, input shape) when the model is hashable.

  Flax modules are dataclasses, hashed and compared by their fields, so equal models share an
  entry: ``count_params`` then ``flops`` (or ``memory``, ``summary``) of one model trace it once.
  A model with an unhashable field (a list, an array) is computed on every call. Each call returns
  new containers (callers cannot edit the cache); ``jax_enable_x64`` is part of the key, since it
  changes the traced dtypes. ``.cache_clear()`` empties the cache.
  """

  @functools.lru_cache(maxsize=256)
  def cached(model, input_shape, x64):
    del x64  # a key only
    return fn(model, input_shape)

  @functools.wraps(fn)
  def wrapper(model: nn.Module, input_shape: Sequence[int]) -> Any:
    input_shape = tuple(int(d) for d in input_shape)
    try:
      hash(model)
    except TypeError:
      return fn(model, input_shape)
    out = cached(model, input_shape, bool(jax.config.jax_enable_x64))
    return jax.tree.map(lambda leaf: leaf, out)

  wrapper.cache_clear = cached.cache_clear
  return wrapper


@cached_per_model
def abstract_variables(model: nn.Module, input_shape: Sequence[int]) -> Any:
  """Abstract variables (``jax.ShapeDtypeStruct`` leaves) of the eval-mode ``model.init``, cached
  per (model, input shape)."""
  x = _input(input_shape)
  return jax.eval_shape(lambda key, x: model.init(key, x, train=False), jax.random.key(0), x)


def _size(tree: Any) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def count_params(model: nn.Module, input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE) -> int:
  """Number of trainable parameters (the ``"params"`` collection), found with ``jax.eval_shape``.

  No weights are allocated, so this is cheap even for ResNet-152. ``input_shape`` is NHWC; it
  matters only for models whose parameter shapes depend on the input (none in the zoo, since they
  pool globally or adaptively before the classifier).
  """
  return _size(abstract_variables(model, input_shape).get("params", {}))


@cached_per_model
def _trace(model: nn.Module, input_shape: Sequence[int]) -> tuple[Any, Any, list[dict[str, Any]]]:
  """Abstract variables, abstract output, and one record per module call of the eval forward pass.

  Each record, in call order (a parent before its children), holds the module's path, class name,
  output and its own MACs per image (``kernel.size`` per output position for a module that owns a
  ``"kernel"`` parameter, else 0).
  """
  x = _input(input_shape)
  variables = abstract_variables(model, input_shape)

  calls: list[tracing.Call] = []

  def forward(v, x):
    with tracing.trace() as recorded:
      out = model.apply(v, x, train=False)
    calls.extend(recorded)  # abstract outputs and variables: only their shapes are read
    return out

  out = jax.eval_shape(forward, variables, x)
  records = []
  for call in sorted(calls, key=lambda c: c.index):
    kernel = call.variables.get("params", {}).get("kernel")
    macs = 0
    if kernel is not None and not isinstance(kernel, dict) and hasattr(call.output, "shape"):
      positions = math.prod(call.output.shape[1:-1])  # output positions per image
      macs = positions * math.prod(kernel.shape)
    own = call.variables.get("params", {}) if isinstance(call.variables, dict) else {}
    records.append({"path": call.path, "module": type(call.module).__name__,
                    "output": call.output, "macs": macs,
                    "params": any(not isinstance(v, dict) for v in own.values())})
  return variables, out, records


def flops(model: nn.Module, input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE, *,
          method: str = "layers") -> float:
  """Multiply-accumulates per image of the eval-mode forward pass; nothing is compiled or run.

  Args:
    model: a zoo model (``__call__(x, *, train)``).
    input_shape: NHWC shape of the input batch; the result is divided by its batch size.
    method: ``"layers"`` (default): the published figures' convention, ``kernel.size`` MACs per
      output position of every convolution and dense layer. ``"xla"``: XLA's cost analysis of the
      lowered forward pass, ``flops / 2`` (padding taps skipped, element-wise operations at half a
      MAC per element; see the module docstring).
  """
  x = _input(input_shape)
  if method == "layers":
    return float(sum(r["macs"] for r in _trace(model, input_shape)[2]))
  if method != "xla":
    raise ValueError(f"Unknown flops method {method!r}; use 'layers' or 'xla'.")
  variables = abstract_variables(model, input_shape)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  cost = forward.lower(variables, x).cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax returns one dict per computation
    cost = cost[0]
  if not cost or "flops" not in cost:
    raise RuntimeError("XLA cost analysis did not report flops for this backend.")
  return float(cost["flops"]) / 2 / x.shape[0]


def _bytes(tree: Any) -> int:
  return sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape"))


def _memory(variables: Any, records: list[dict[str, Any]],
            input_shape: Sequence[int]) -> dict[str, int]:
  paths = [r["path"] for r in records]
  output_bytes = 0
  for r in records:
    path = r["path"]
    inner = not any(len(q) > len(path) and q[:len(path)] == path for q in paths)
    if inner and r["params"]:
      output_bytes += _bytes(r["output"])
  params = _bytes(variables.get("params", {}))
  state = _bytes({k: v for k, v in variables.items() if k != "params"})
  inputs = math.prod(input_shape) * jnp.dtype(jnp.float32).itemsize
  forward_backward = 2 * output_bytes  # outputs and their gradients
  return {"param_bytes": params, "state_bytes": state, "input_bytes": inputs,
          "forward_backward_bytes": forward_backward,
          "total_bytes": params + state + inputs + forward_backward}


def memory(model: nn.Module, input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE) -> dict[str, int]:
  """torchinfo's memory estimate, in bytes, at the batch size of ``input_shape`` (NHWC).

  Returns ``param_bytes`` (the ``"params"`` collection), ``state_bytes`` (BatchNorm statistics
  and other collections), ``input_bytes`` (a float32 input batch), ``forward_backward_bytes``
  (2 x the output bytes of every innermost module that owns parameters: torchinfo's
  "Forward/backward pass size") and ``total_bytes``, their sum. See the module docstring for
  what it leaves out.
  """
  variables, _, records = _trace(model, input_shape)
  return _memory(variables, records, tuple(int(d) for d in input_shape))


def _mb(num_bytes: int) -> str:
  return f"{num_bytes:,} B ({num_bytes / 1e6:.2f} MB)"


def _shape_str(tree: Any) -> str:
  shapes = [tuple(leaf.shape) for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape")]
  if len(shapes) == 1:
    return str(shapes[0])
  return "[" + ", ".join(str(s) for s in shapes) + "]"


def _subtree(tree: Any, path: tuple[str, ...]) -> Any:
  for name in path:
    if not isinstance(tree, dict) or name not in tree:
      return {}
    tree = tree[name]
  return tree


def summary(model: nn.Module, input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE, *,
            depth: int = 1) -> str:
  """A per-layer table (layer, module, output shape, parameters, MACs per image) with totals.

  Rows are the submodules at most ``depth`` levels deep, in call order; a row's parameters and MACs
  include its children's. The totals give the trainable parameters, the other variables
  (BatchNorm statistics), the multiply-accumulates per image (``flops(method="layers")``) and
  torchinfo's memory estimate at the batch size of ``input_shape`` (:func:`memory`).
  """
  if depth < 1:
    raise ValueError(f"depth must be >= 1, got {depth}.")
  variables, out, records = _trace(model, input_shape)
  params = variables.get("params", {})
  other = {k: v for k, v in variables.items() if k != "params"}

  table = [("layer", "module", "output shape", "params", "MACs")]
  for r in records:
    path = r["path"]
    if 1 <= len(path) <= depth:
      macs = sum(q["macs"] for q in records if q["path"][:len(path)] == path)
      table.append(("/".join(path), r["module"], _shape_str(r["output"]),
                    f"{_size(_subtree(params, path)):,}", f"{macs:,}"))
  widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
  rule = "-" * (sum(widths) + 2 * (len(widths) - 1))

  def line(row):
    left = [f"{c:<{w}}" for c, w in zip(row[:3], widths)]
    right = [f"{c:>{w}}" for c, w in zip(row[3:], widths[3:])]
    return "  ".join(left + right)

  total_macs = sum(r["macs"] for r in records)
  lines = [f"{type(model).__name__}  input {tuple(input_shape)}  output {_shape_str(out)}", rule,
           line(table[0]), rule] + [line(row) for row in table[1:]] + [rule]
  lines.append(f"Parameters:                      {_size(params):,}")
  lines.append(f"Non-trainable variables:         {_size(other):,}")
  lines.append(f"Multiply-accumulates per image:  {total_macs:,} ({total_macs / 1e9:.3f} G)")
  mem = _memory(variables, records, tuple(int(d) for d in input_shape))
  lines.append(rule)
  lines.append(f"Memory estimate at batch size {int(input_shape[0])} (torchinfo's convention):")
  lines.append(f"  Parameters:                    {_mb(mem['param_bytes'])}")
  lines.append(f"  Batch statistics:              {_mb(mem['state_bytes'])}")
  lines.append(f"  Input:                         {_mb(mem['input_bytes'])}")
  lines.append(f"  Forward/backward pass:         {_mb(mem['forward_backward_bytes'])}")
  lines.append(f"  Estimated total:               {_mb(mem['total_bytes'])}")
  return "\n".join(lines)
