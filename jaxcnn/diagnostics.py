"""Per-layer statistics of a network: activations, saturation, dead units, gradient norms.

Every nonlinearity in a jaxcnn model is an :class:`jaxcnn.nn.activations.Activation` module, so
the statistics are collected from outside the model by :func:`jaxcnn.nn.tracing.trace`; no model
code changes. Outputs of ``Activation`` modules are recorded as ``kind="activation"``
(post-nonlinearity) and outputs of ``nn.Dense`` / ``nn.Conv`` / ``nn.ConvTranspose`` as
``kind="preactivation"`` (the final logits layer included), in forward order.

* :func:`activation_stats`: mean, std, histogram, saturated and dead fractions per layer;
* :func:`gradient_norms`: loss-gradient norm per module's parameters;
* :func:`activation_gradient_norms`: loss-gradient norm per layer output (backward signal);
* :func:`network_stats`: activation stds and kernel-gradient norms of a classifier, underflow-safe;
* :func:`unit_stats`: dead and saturated fractions of many stacked models at once;
* :func:`hessian_top_eigenvalue`, :func:`hessian_vector_product`, :func:`loss_sensitivity`,
  :func:`second_moment_eigenvalues`: curvature and sensitivity of a loss in its parameters;
* :func:`plot_activation_stats`: the CS231n figure (mean/std per layer, histograms).

``apply_fn(variables, batch)`` runs the model, e.g. ``lambda v, x: model.apply(v, x, train=False)``.
It must not be jitted itself (a cached trace would bypass the interceptor); the functions here
jit the whole computation.

References: CS231n (Stanford), lecture "Training Neural Networks I" (activation statistics under
weight initializations); Glorot & Bengio 2010, "Understanding the difficulty of training deep
feedforward neural networks".
"""

from __future__ import annotations

import dataclasses
import functools
import math
import weakref
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxcnn.nn import activations, tracing

LINEAR_MODULES = (nn.Dense, nn.Conv, nn.ConvTranspose)
# Output range of bounded activations, by function name: "saturated" means within
# ``1 - saturation`` of either bound.
BOUNDED = {"tanh": (-1.0, 1.0), "hard_tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0),
           "sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0)}
# Activations whose output is exactly zero on a half-line: a unit can die.
RELU_FAMILY = ("relu", "relu6")


@dataclasses.dataclass(frozen=True)
class LayerStats:
  """Statistics of one layer's output over a batch.

  Attributes:
    name: module path, e.g. ``"ConvBNAct_0/Activation_0"``.
    kind: ``"activation"`` (after a nonlinearity) or ``"preactivation"`` (Dense/Conv output).
    op: the activation function's name (``"tanh"``) or the linear module's class (``"Conv"``).
    shape: shape of the output.
    mean, std: over all elements.
    counts, edges: histogram of all elements (``len(edges) == len(counts) + 1``).
    saturated: fraction of elements within ``1 - saturation`` of a bound of a bounded
      activation (tanh, sigmoid, ...: see ``BOUNDED``); None for other layers.
    dead: fraction of units (last axis: features or channels) that are exactly zero for the
      whole batch, for ReLU-family activations; None for other layers.
  """

  name: str
  kind: str
  op: str
  shape: tuple[int, ...]
  mean: float
  std: float
  counts: np.ndarray
  edges: np.ndarray
  saturated: float | None
  dead: float | None


def _fn_name(spec: Any) -> str:
  fn = activations.get(spec)
  while isinstance(fn, functools.partial):
    fn = fn.func
  return getattr(fn, "__name__", type(fn).__name__)


RECORDED = (activations.Activation,) + LINEAR_MODULES


def _recording(perturbations: Sequence[jax.Array] | None = None):
  """:func:`jaxcnn.nn.tracing.trace` of the ``Activation`` and linear modules (see there for
  ``perturbations``)."""
  return tracing.trace(RECORDED, perturbations=perturbations)


def _describe(call: tracing.Call) -> tuple[str, str, str]:
  """``(module path, kind, op)`` of a recorded call (see :class:`LayerStats`)."""
  if isinstance(call.module, activations.Activation):
    return call.name, "activation", _fn_name(call.module.fn)
  return call.name, "preactivation", type(call.module).__name__


def _check_recorded(records: list) -> None:
  if not records:
    raise ValueError("apply_fn ran no Activation, Dense or Conv module; note that apply_fn must "
                     "not be jitted itself (its cached trace bypasses the interceptor).")


# apply_fn -> (jitted forward returning every recorded output, [(name, kind, op)] of its trace),
# so that calling activation_stats again (every epoch, say) reuses the compiled forward pass.
_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _recorded_forward(apply_fn: Callable[[Any, Any], Any]) -> tuple[Callable[..., Any], list]:
  try:
    return _FORWARDS[apply_fn]
  except (KeyError, TypeError):  # TypeError: not weakly referenceable; compile for this call only
    pass
  meta = []

  def forward(variables, batch):
    with _recording() as calls:
      apply_fn(variables, batch)
    _check_recorded(calls)
    meta[:] = [_describe(c) for c in calls]
    return [c.output for c in calls]

  entry = (jax.jit(forward), meta)
  try:
    _FORWARDS[apply_fn] = entry
  except TypeError:
    pass
  return entry


def activation_stats(apply_fn: Callable[[Any, Any], Any], variables: Any, batch: Any, *,
                     bins: int = 30, hist_range: tuple[float, float] | None = None,
                     saturation: float = 0.99) -> list[LayerStats]:
  """Statistics of every activation and pre-activation of one forward pass, in forward order.

  Args:
    apply_fn: ``apply_fn(variables, batch)`` runs the model (not jitted).
    variables: the model's variables.
    batch: its input.
    bins: histogram bins.
    hist_range: histogram range; default each layer's (min, max).
    saturation: a tanh output counts as saturated when ``|y| > saturation``, a sigmoid output
      when it lies within ``1 - saturation`` of 0 or 1 (generally: of a bound in ``BOUNDED``).

  Returns:
    One :class:`LayerStats` per recorded module call.
  """
  if not 0.0 < saturation < 1.0:
    raise ValueError(f"saturation must lie in (0, 1), got {saturation}.")
  hist_range = None if hist_range is None else tuple(map(float, hist_range))
  forward, meta = _recorded_forward(apply_fn)
  stats = []
  outputs = forward(variables, batch)
  for (name, kind, op), y in zip(meta, outputs):
    bounds = BOUNDED.get(op) if kind == "activation" else None
    relu_like = kind == "activation" and op in RELU_FAMILY
    summary = jax.device_get(_summarize(y, 1.0 - saturation, bins=bins, hist_range=hist_range,
                                        bounds=bounds, relu_like=relu_like))
    mean, std, counts, edges, saturated, dead = summary
    stats.append(LayerStats(
        name, kind, op, tuple(y.shape), float(mean), float(std), np.asarray(counts),
        np.asarray(edges), float(saturated) if bounds else None,
        float(dead) if relu_like else None))
  return stats


@functools.partial(jax.jit, static_argnames=("bins", "hist_range", "bounds", "relu_like"))
def _summarize(y, margin, *, bins, hist_range, bounds, relu_like):
  """(mean, std, counts, edges, saturated fraction, dead-unit fraction) of one layer output."""
  y = y.astype(jnp.float32)
  counts, edges = jnp.histogram(y, bins=bins, range=hist_range)
  saturated = dead = jnp.nan
  if bounds is not None:
    saturated = jnp.mean((y < bounds[0] + margin) | (y > bounds[1] - margin))
  if relu_like:
    dead = jnp.mean((y == 0).reshape(-1, y.shape[-1]).all(axis=0))
  return y.mean(), y.std(), counts, edges, saturated, dead


def gradient_norms(loss_fn: Callable[[Any, Any], jax.Array], variables: Any,
                   batch: Any) -> dict[str, float]:
  """L2 norm of the loss gradient with respect to each module's parameters.

  Args:
    loss_fn: ``loss_fn(variables, batch) -> scalar``; differentiated with respect to
      ``variables["params"]``, other collections held fixed.
    variables: the model's variables, with a ``"params"`` collection.
    batch: the loss's input.

  Returns:
    ``{module path: norm}`` over all parameters of that module (kernel and bias together),
    e.g. ``{"Dense_0": 0.12, ...}``, in parameter-tree order.
  """
  if "params" not in variables:
    raise ValueError(f"variables has no 'params' collection (has {list(variables)}).")

  def grad_norms(params, variables, batch):
    grads = jax.grad(lambda p: loss_fn({**variables, "params": p}, batch))(params)
    squares = {}
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
      module = "/".join(str(getattr(k, "key", k)) for k in path[:-1])
      squares[module] = squares.get(module, 0.0) + jnp.sum(jnp.square(g.astype(jnp.float32)))
    return {module: jnp.sqrt(s) for module, s in squares.items()}

  norms = jax.device_get(jax.jit(grad_norms)(variables["params"], variables, batch))
  return {module: float(v) for module, v in norms.items()}


def activation_gradient_norms(loss_fn: Callable[[Any, Any], jax.Array], variables: Any,
                              batch: Any) -> list[tuple[str, str, float]]:
  """L2 norm of the loss gradient with respect to every recorded layer output.

  Adds a zero perturbation to each intercepted output and differentiates the loss with
  respect to it, so a vanishing backward signal shows up layer by layer.

  Args:
    loss_fn: ``loss_fn(variables, batch) -> scalar``, running the model un-jitted.
    variables: the model's variables.
    batch: the loss's input.

  Returns:
    ``[(module path, kind, norm), ...]`` in forward order (kinds as in :class:`LayerStats`).
  """

  def shapes_of(variables, batch):
    with _recording() as calls:
      loss_fn(variables, batch)
    _check_recorded(calls)
    return [c.output for c in calls]

  meta = []

  def grads_of(perturbations, variables, batch):
    def loss(perturbations):
      with _recording(perturbations) as calls:
        value = loss_fn(variables, batch)
      meta[:] = [_describe(c)[:2] for c in calls]
      return value

    grads = jax.grad(loss)(perturbations)
    return [jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32)))) for g in grads]

  shapes = jax.eval_shape(shapes_of, variables, batch)
  zeros = [jnp.zeros(s.shape, s.dtype) for s in shapes]
  norms = jax.device_get(jax.jit(grads_of)(zeros, variables, batch))
  return [(name, kind, float(n)) for (name, kind), n in zip(meta, norms)]


def _path_get(tree: Any, path: tuple[str, ...]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def _scaled(statistic: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """``statistic(x)`` for a positively homogeneous statistic (std, norm), computed as
  ``m * statistic(x / m)`` with ``m = max |x|``, so that squares of tiny values (1e-25 after 20
  layers of ``normal(0.01)``) do not underflow float32 to 0."""
  x = x.astype(jnp.float32)
  m = jnp.max(jnp.abs(x))
  return jnp.where(m > 0, m * statistic(x / jnp.where(m > 0, m, 1.0)), 0.0)


@functools.lru_cache(maxsize=16)
def _network_probe(model: nn.Module) -> tuple[Callable[..., Any], dict[str, list[str]]]:
  """A jitted ``(variables, x, labels) -> (loss, act stds, kernel-gradient norms)`` for ``model``
  and the layer names it fills when traced."""
  names: dict[str, list[str]] = {"activation": [], "weight": []}

  def stats(variables, x, labels):
    traced = []

    def loss_fn(params):
      with _recording() as calls:
        logits = model.apply({**variables, "params": params}, x, train=False)
      traced[:] = calls
      loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                             labels).mean()
      acts = [c for c in calls if isinstance(c.module, activations.Activation)]
      return loss, jnp.stack([_scaled(jnp.std, c.output) for c in acts])

    (loss, stds), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    weights = [c.path for c in traced if isinstance(c.module, LINEAR_MODULES)]
    norms = jnp.stack([_scaled(jnp.linalg.norm, _path_get(grads, p)["kernel"].ravel())
                       for p in weights])
    names["activation"] = [c.name for c in traced if isinstance(c.module, activations.Activation)]
    names["weight"] = ["/".join(p) for p in weights]
    return loss, stds, norms

  return jax.jit(stats), names


def network_stats(model: nn.Module, variables: Any, x: jax.Array,
                  labels: jax.Array) -> dict[str, Any]:
  """Per-layer scales of one forward and backward pass of a classifier (one compilation per model).

  Stds and norms are computed scaled by the largest magnitude, so that they do not underflow
  float32 in deep nets at tiny initializations.

  Args:
    model: a Module called as ``model.apply(variables, x, train=False)``; its nonlinearities
      are :class:`jaxcnn.nn.activations.Activation` modules.
    variables: its variables.
    x: a batch of preprocessed inputs.
    labels: int labels; the loss is the mean softmax cross-entropy.

  Returns:
    ``{"loss": float, "activation": [names], "act_std": (A,) std of each activation output over
    the batch (all elements), "weight": [names], "grad_norm": (W,) L2 norm of dloss/dkernel of
    each Dense/Conv layer}``, layers in forward order.

  References: Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward
  neural networks" (activation and back-propagated gradient scales per layer).
  """
  fn, names = _network_probe(model)
  loss, stds, norms = jax.device_get(fn(variables, x, labels))
  return {"loss": float(loss), "activation": list(names["activation"]),
          "act_std": np.asarray(stds, np.float64), "weight": list(names["weight"]),
          "grad_norm": np.asarray(norms, np.float64)}


@functools.lru_cache(maxsize=None)
def _apply_all(model: nn.Module, num_models: int) -> Callable[[Any, Any], None]:
  """Runs the stacked models one after another (records are model-major); one function per
  (model, num_models), so :func:`activation_stats` reuses its compiled forward pass."""
  def apply_all(variables, x):
    for m in range(num_models):
      p = jax.tree.map(lambda a, m=m: a[m], variables["params"])
      model.apply({"params": p}, x)

  return apply_all


def unit_stats(model: nn.Module, params: Any, images: jax.Array,
               num_models: int) -> dict[str, np.ndarray]:
  """Dead and saturated fractions of every activation layer, per model, on a fixed batch.

  Args:
    model: the network, called as ``model.apply({"params": p}, x)`` (its ``Activation`` modules
      are recorded).
    params: parameters of ``num_models`` models stacked on a leading axis.
    images: a preprocessed batch, shared by all models.
    num_models: the size of the leading axis of ``params``.

  Returns:
    ``{"dead": (num_models, layers), "saturated": (num_models, layers)}``: the fraction of units
    of each layer that output exactly 0 on the whole batch (ReLU-family activations) and the
    fraction of outputs within 1% of a bound (tanh, sigmoid), NaN where not defined; computed
    by :func:`activation_stats` in one compiled pass over all models.
  """
  stats = [s for s in activation_stats(_apply_all(model, num_models), {"params": params}, images)
           if s.kind == "activation"]
  if len(stats) % num_models:
    raise ValueError(f"Recorded {len(stats)} activation layers for {num_models} models.")
  nan = lambda v: np.nan if v is None else v
  dead = np.array([nan(s.dead) for s in stats], np.float64).reshape(num_models, -1)
  saturated = np.array([nan(s.saturated) for s in stats], np.float64).reshape(num_models, -1)
  return {"dead": dead, "saturated": saturated}


def has_unit_stats(name: str) -> bool:
  """True for activations whose units can die (ReLU) or saturate (tanh, sigmoid)."""
  return name in RELU_FAMILY or name in BOUNDED


# ----------------------------------------------------------------------------------------------
# Curvature and sensitivity of a loss in its parameters.


def _flat_loss(loss_fn: Callable[..., jax.Array], params: Any, args: tuple):
  flat, unravel = ravel_pytree(params)
  return flat, lambda v: loss_fn(unravel(v), *args)


def hessian_vector_product(loss_fn: Callable[..., jax.Array], params: Any, v: Any,
                           *args: Any) -> Any:
  """``H v`` of ``loss_fn(params, *args)`` at ``params`` (forward-over-reverse).

  ``v`` has the structure of ``params``; so has the result.

  References: Pearlmutter 1994, "Fast exact multiplication by the Hessian".
  """
  grad_fn = lambda p: jax.grad(loss_fn)(p, *args)
  return jax.jvp(grad_fn, (params,), (v,))[1]


@functools.partial(jax.jit, static_argnames=("loss_fn", "num_iters"))
def hessian_top_eigenvalue(loss_fn: Callable[..., jax.Array], params: Any, *args: Any,
                           key: jax.Array, num_iters: int = 50) -> tuple[jax.Array, jax.Array]:
  """Largest-magnitude eigenvalue of the Hessian of ``loss_fn(params, *args)`` by power iteration.

  Starts from a random unit vector (``key``), iterates ``v <- H v / ||H v||`` ``num_iters`` times
  with Hessian-vector products, and returns the Rayleigh quotient ``v . H v`` and ``v`` (flat,
  over ``ravel_pytree(params)``). For a convex loss this is ``lambda_max``; near an indefinite
  point it may be the most negative eigenvalue. ``loss_fn`` is static: pass the same function
  object to reuse the compiled iteration.

  References: LeCun, Simard & Pearlmutter 1993, "Automatic learning rate maximization by on-line
  estimation of the Hessian's eigenvectors"; Pearlmutter 1994.
  """
  flat, loss = _flat_loss(loss_fn, params, args)
  hvp = lambda v: jax.jvp(jax.grad(loss), (flat,), (v,))[1]
  v = jax.random.normal(key, flat.shape, flat.dtype)
  v = v / jnp.linalg.norm(v)

  def body(_, v):
    hv = hvp(v)
    return hv / jnp.maximum(jnp.linalg.norm(hv), jnp.finfo(hv.dtype).tiny)

  v = jax.lax.fori_loop(0, num_iters, body, v)
  return jnp.vdot(v, hvp(v)), v


@functools.partial(jax.jit, static_argnames=("loss_fn", "num_samples"))
def loss_sensitivity(loss_fn: Callable[..., jax.Array], params: Any, *args: Any, key: jax.Array,
                     eps: float, num_samples: int = 16) -> jax.Array:
  """Relative loss changes ``|L(p + d) - L(p)| / L(p)`` for ``num_samples`` random perturbations.

  Each ``d`` points in a uniformly random direction of parameter space and has root-mean-square
  entry ``eps`` (``||d|| = eps sqrt(P)`` for P parameters), so ``eps`` is a per-weight scale.
  Returns ``(num_samples,)``; its mean is the sensitivity.

  References: CS231n (Stanford), lecture 6 "Training Neural Networks I" (data preprocessing: the
  loss is less sensitive to small weight changes after normalization).
  """
  flat, loss = _flat_loss(loss_fn, params, args)
  base = loss(flat)
  z = jax.random.normal(key, (num_samples, flat.size), flat.dtype)
  d = eps * math.sqrt(flat.size) * z / jnp.linalg.norm(z, axis=1, keepdims=True)
  return jnp.abs(jax.vmap(loss)(flat + d) - base) / base


def second_moment_eigenvalues(x: Any, *, bias: bool = True) -> np.ndarray:
  """Eigenvalues (descending) of ``E[x~ x~^T]`` over flattened examples, float64.

  ``x~ = [x, 1]`` with ``bias=True`` (a Dense layer's bias sees a constant 1). At zero weights
  the Hessian of a linear softmax classifier's mean cross-entropy over K classes is
  ``E[x~ x~^T]`` Kronecker ``(I - 11^T / K) / K``: its eigenvalues are these divided by K.

  References: LeCun, Bottou, Orr & Mueller 1998, "Efficient BackProp", sec. 4.3 and 5.
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  if bias:
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  return np.linalg.eigvalsh(x.T @ x / len(x))[::-1]


def plot_activation_stats(stats: Sequence[LayerStats], path: str | None = None, *,
                          title: str | None = None, max_columns: int = 10):
  """Mean and std per layer, and a histogram per layer (the CS231n initialization figure).

  Plots the layers passed, in order (filter by ``kind`` first for activations only).

  Args:
    stats: from :func:`activation_stats`.
    path: if given, the figure is saved there as PNG.
    title: figure title.
    max_columns: histograms per row.

  Returns:
    The ``matplotlib.figure.Figure`` (no pyplot state is touched).
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  if not stats:
    raise ValueError("plot_activation_stats needs at least one LayerStats.")
  n = len(stats)
  columns = min(n, max_columns)
  hist_rows = -(-n // columns)
  fig = Figure(figsize=(max(8.0, 1.6 * columns), 3.0 + 1.8 * hist_rows), layout="constrained")
  grid = fig.add_gridspec(1 + hist_rows, 2 * columns, height_ratios=[1.6] + [1.0] * hist_rows)
  for i, field in enumerate(("mean", "std")):
    ax = fig.add_subplot(grid[0, i * columns:(i + 1) * columns])
    for kind in dict.fromkeys(s.kind for s in stats):
      xs = [j + 1 for j, s in enumerate(stats) if s.kind == kind]
      ax.plot(xs, [getattr(stats[x - 1], field) for x in xs], "o-", label=kind)
    ax.set_title(f"layer {field}")
    ax.set_xlabel("layer")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if len({s.kind for s in stats}) > 1:
      ax.legend(fontsize="small")
  for j, s in enumerate(stats):
    ax = fig.add_subplot(grid[1 + j // columns, 2 * (j % columns):2 * (j % columns) + 2])
    ax.stairs(s.counts, s.edges, fill=True)
    ax.set_title(f"{j + 1}: {s.op}", fontsize="small")
    ax.tick_params(labelsize="x-small")
    ax.set_yticks([])
  if title:
    fig.suptitle(title)
  if path is not None:
    fig.savefig(path, format="png", dpi=100)
  return fig


# ----------------------------------------------------------------------------------------------
# Training curves.


def moving_average(values: Any, window: int) -> np.ndarray:
  """Trailing mean over ``window`` rows along axis 0; row t averages rows t-window+1..t.

  Only full windows are returned: ``len(values) - window + 1`` rows.
  """
  values = np.asarray(values, np.float64)
  if window < 1 or window > len(values):
    raise ValueError(f"window must lie in [1, {len(values)}] (the number of rows), got {window}.")
  cumsum = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
  return (cumsum[window:] - cumsum[:-window]) / window


def steps_to_target(values: Any, target: float, *, steps: Sequence[int] | None = None,
                    window: int = 1) -> np.ndarray:
  """When a training curve first reaches ``target``: the time-to-target of a run.

  Args:
    values: a curve of losses or error rates (lower is better), ``(T,)`` or ``(T, models...)``.
    target: the value to reach (``<=``); NaN/inf never reach it.
    steps: the step number of each row (default ``1 .. T``: row t is after t + 1 updates).
    window: average the curve over this many trailing rows first (the running training error of
      cuda-convnet, as in Krizhevsky et al. 2012, Figure 1); the step reported is the one at the
      end of the first window whose mean reaches the target.

  Returns:
    int array of shape ``values.shape[1:]``: that step, or -1 where the target is never reached.
  """
  values = np.asarray(values, np.float64)
  steps = np.arange(1, len(values) + 1) if steps is None else np.asarray(steps)
  if len(steps) != len(values):
    raise ValueError(f"steps and values differ in length: {len(steps)} vs {len(values)}.")
  reached = np.nan_to_num(moving_average(values, window), nan=np.inf) <= target
  first = np.argmax(reached, axis=0)
  return np.where(reached.any(axis=0), steps[first + window - 1], -1)
