"""Whole-network, data-dependent initialization procedures for any Flax model.

Each procedure takes ``apply_fn(variables, batch)``, which runs the model (for example
``lambda v, x: model.apply(v, x, train=False)``), the model's ``variables`` and a ``batch``, and
returns new variables; the input is not modified. The outputs of every ``nn.Dense`` and ``nn.Conv``
call are recorded (:func:`jaxcnn.nn.tracing.trace`), layers are identified by their module
path, the same path under which their ``kernel``/``bias`` sit in ``variables["params"]``, and are
processed in the order the forward pass reaches them. The forward pass is jitted once per call;
each step of a procedure reruns it on the whole batch, so use a batch of a few hundred examples.

Batch normalization: pass ``train=False``. BatchNorm then uses its running statistics, which at
initialization are mean 0 and variance 1, so it is (almost) the identity and the procedure sees
and fixes the raw layer scales; ``batch_stats`` are returned unchanged. With ``train=True`` each
BatchNorm renormalizes its input, so layer scales do not propagate past it (still harmless), and
the ``mutable`` updates returned by ``apply`` are ignored.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.nn import initializers, tracing

LAYER_TYPES = (nn.Dense, nn.Conv)
"""Module types whose kernels the procedures initialize."""

Path = tuple[str, ...]


def _name(path: Path) -> str:
  return "/".join(path) or "<root>"


class _Network:
  """Params as a flat ``{path: array}`` dict plus a jitted forward pass returning, for each
  intercepted layer, the mean and variance of each output unit and of the whole output."""

  def __init__(self, apply_fn: Callable[[Any, Any], Any], variables: Any, batch: Any,
               layer_types: tuple[type, ...]):
    if not callable(apply_fn):
      raise TypeError(f"apply_fn must be callable as apply_fn(variables, batch), got {apply_fn!r}.")
    if not hasattr(variables, "keys") or "params" not in variables:
      raise ValueError("variables must be a Flax variables dict with a 'params' collection.")
    self._variables = variables
    self._params = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
    self._batch = batch
    self.order: list[Path] = []
    self._forward = jax.jit(self._make_forward(apply_fn, layer_types))
    self.stats()  # traces the model once and fills self.order
    if not self.order:
      raise ValueError(f"No {' or '.join(t.__name__ for t in layer_types)} layer ran in apply_fn.")
    for path in self.order:
      if path + ("kernel",) not in self._params:
        raise ValueError(f"Layer {_name(path)} ran but variables['params'] has no kernel at that"
                         " path; pass the variables the model is applied with.")

  def _make_forward(self, apply_fn, layer_types):
    def forward(variables, batch):
      with tracing.trace(layer_types) as calls:
        apply_fn(variables, batch)
      outputs: dict[Path, list[jax.Array]] = {}
      for call in calls:
        y = call.output
        outputs.setdefault(call.path, []).append(y.reshape(-1, y.shape[-1]).astype(jnp.float32))
        if call.path not in self.order:
          self.order.append(call.path)
      stats = {}
      for path, ys in outputs.items():
        y = jnp.concatenate(ys)
        if y.shape[0] < 2:
          raise ValueError(f"Layer {_name(path)} gives {y.shape[0]} value per unit on this batch;"
                           " statistics need at least 2: use a larger batch.")
        stats[path] = dict(mean=y.mean(0), var=y.var(0), total_var=y.var())
      return stats
    return forward

  def stats(self) -> dict[Path, dict[str, np.ndarray]]:
    return jax.device_get(self._forward(self.variables(), self._batch))

  def get(self, path: Path, name: str) -> jax.Array | None:
    return self._params.get(path + (name,))

  def set(self, path: Path, name: str, value: Any) -> None:
    """Replaces a parameter, keeping its dtype. Arithmetic on parameters is done on the host in
    NumPy, so that it compiles nothing per kernel shape."""
    old = self._params[path + (name,)]
    self._params[path + (name,)] = jnp.asarray(np.asarray(value).astype(old.dtype))

  def variables(self) -> Any:
    params = flax.traverse_util.unflatten_dict(self._params)
    new = {**self._variables, "params": params}
    return flax.core.freeze(new) if isinstance(self._variables, flax.core.FrozenDict) else new


def _check_positive(**values: float) -> None:
  for name, value in values.items():
    if not value > 0:
      raise ValueError(f"{name} must be positive, got {value!r}.")


def lsuv(apply_fn: Callable[[Any, Any], Any], variables: Any, batch: Any, *,
         target_std: float = 1.0, tol: float = 0.01, max_iters: int = 10,
         orthogonal_first: bool = True, key: jax.Array | None = None,
         layer_types: tuple[type, ...] = LAYER_TYPES) -> Any:
  """Layer-sequential unit-variance initialization.

  Optionally replaces every Dense/Conv kernel by a random orthonormal one (:func:`orthogonal`,
  with ``key``, default ``jax.random.key(0)``); then, from input to output, divides each kernel by
  the std of its layer's output on ``batch`` (all units together) until that std is within
  ``tol * target_std`` of ``target_std``, at most ``max_iters`` times per layer (one forward pass
  each, plus one to check). Biases are left as they are; when they are zero one rescaling is
  exact. A layer that does not converge, or whose output is identically zero (left unchanged),
  gets a warning.

  References: Mishkin & Matas 2015, "All you need is a good init" (Algorithm 1; they use a tolerance
  of 0.1 on the variance).
  """
  _check_positive(target_std=target_std, tol=tol, max_iters=max_iters)
  net = _Network(apply_fn, variables, batch, tuple(layer_types))
  if orthogonal_first:
    groups: dict[tuple[Any, Any], list[Path]] = {}  # same-shape kernels share one vmapped draw
    for path in net.order:
      w = net.get(path, "kernel")
      groups.setdefault((w.shape, w.dtype), []).append(path)

    @jax.jit
    def draw(key):
      init = initializers.orthogonal()
      return [jax.vmap(lambda k: init(k, shape, dtype))(jax.random.split(k, len(paths)))
              for k, ((shape, dtype), paths) in zip(jax.random.split(key, len(groups)), groups.items())]

    for paths, kernels in zip(groups.values(), draw(jax.random.key(0) if key is None else key)):
      for path, kernel in zip(paths, kernels):
        net.set(path, "kernel", kernel)
  for path in net.order:
    for rescalings in range(max_iters + 1):
      std = math.sqrt(float(net.stats()[path]["total_var"]))
      if abs(std - target_std) <= tol * target_std:
        break
      if std == 0.0 or rescalings == max_iters:
        warnings.warn(f"lsuv: layer {_name(path)} has output std {std:.4g}, not within tol of "
                      f"{target_std}; " + ("left unchanged." if std == 0.0 else
                                            f"gave up after max_iters={max_iters} rescalings."))
        break
      net.set(path, "kernel", np.asarray(net.get(path, "kernel"), np.float64) * (target_std / std))
  return net.variables()


def kraehenbuehl(apply_fn: Callable[[Any, Any], Any], variables: Any, batch: Any, *,
                 target_std: float = 1.0, eps: float = 1e-8,
                 layer_types: tuple[type, ...] = LAYER_TYPES) -> Any:
  """Within-layer data-dependent initialization: every unit's pre-activation gets mean 0, std 1.

  From input to output, one forward pass per layer: with mean m_c and variance v_c of output unit
  c on ``batch``, kernel column c is multiplied by s_c = target_std / sqrt(v_c) and the bias
  becomes (b_c - m_c) * s_c, so the unit's output is (y_c - m_c) * s_c. Layers without a bias are
  only scaled (their means stay where they are); units constant on the batch (v_c <= eps) are
  only shifted. The existing kernels serve as the random initialization the procedure starts
  from.

  Left out from the paper: the between-layer step (rescaling layers so that all change at the same
  rate under SGD, which needs a loss and its gradients) and the k-means/PCA kernel choices.

  References: Kraehenbuehl et al. 2015, "Data-dependent Initializations of Convolutional Neural
  Networks" (Sec. 3.1).
  """
  _check_positive(target_std=target_std, eps=eps)
  net = _Network(apply_fn, variables, batch, tuple(layer_types))
  for path in net.order:
    s = net.stats()[path]
    scale = np.where(s["var"] > eps, target_std / np.sqrt(np.maximum(s["var"], eps)), 1.0)
    net.set(path, "kernel", np.asarray(net.get(path, "kernel"), np.float64) * scale)
    bias = net.get(path, "bias")
    if bias is not None:
      net.set(path, "bias", (np.asarray(bias, np.float64) - s["mean"]) * scale)
  return net.variables()
