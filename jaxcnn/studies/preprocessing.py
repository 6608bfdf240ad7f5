"""Data preprocessing (CS231n): how centering, scaling and whitening the inputs shape the loss.

Three claims from the lecture, each measured:

* (a) "Before normalization the classification loss is very sensitive to changes in the weight
  matrix, hard to optimize; after normalization less sensitive, easier to optimize." Measured on
  a linear softmax classifier and a one-hidden-layer MLP: the largest eigenvalue of the loss's
  Hessian (power iteration on Hessian-vector products,
  :func:`jaxcnn.diagnostics.hessian_top_eigenvalue`), the relative loss change under small random
  weight perturbations (:func:`jaxcnn.diagnostics.loss_sensitivity`), and
  the eigenvalues of the inputs' second moment ``E[x~ x~^T]`` (``x~ = [x, 1]``, the bias's input
  is the constant 1), which is the linear classifier's Hessian at zero weights up to the softmax
  factor: ``H = E[x~ x~^T] (x) (diag(p) - p p^T)``, so ``lambda_max(H) = lambda_max(E[x~ x~^T]) / K``
  at ``p = 1 / K``.
* (b) "When the input to a neuron is always positive, the gradients on w are all positive or all
  negative, so the updates zig-zag." The gradient of one example's loss is
  ``dL/dw_i = upstream * x_i``, with one scalar ``upstream = dL/d(w.x)`` for all i; with
  ``x_i > 0`` every component has the upstream's sign. :func:`neuron_grads`,
  :func:`same_sign_fraction` and :func:`descent_path` show it on a 2-D linear neuron whose target
  ``w* = (1, -1)`` has mixed signs.
* (c) Training speed: the same models trained with SGD on each preprocessing (learning rate
  tuned per preprocessing over one grid: one :class:`jaxcnn.train.population.Population` per
  transform and model, the transform its ``preprocess``), steps to a target training loss.

Every transform is ``jaxcnn.data.preprocessing.fit(spec, x_train)``, fitted on the training
subset only. Pixels are first divided by 255 ("none" is then the raw [0, 1] pixels, all positive),
so that "none" and "mean_image" differ only by the mean.

References: CS231n (Stanford), lecture 6 "Training Neural Networks I" (data preprocessing) and
the notes "Neural Networks Part 2: Setting up the Data"; LeCun, Bottou, Orr & Mueller 1998,
"Efficient BackProp" (sec. 4.3 "Normalizing the inputs": the zig-zag argument and the mean's large
Hessian eigenvalue; sec. 5: learning rates below 2 / lambda_max); LeCun, Simard & Pearlmutter
1993, "Automatic learning rate maximization by on-line estimation of the Hessian's eigenvectors"
(power iteration); Pearlmutter 1994, "Fast exact multiplication by the Hessian"; Krizhevsky 2009,
"Learning multiple layers of features from tiny images", App. A (ZCA).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxcnn import diagnostics
from jaxcnn.data import preprocessing, sources
from jaxcnn.diagnostics import hessian_top_eigenvalue, loss_sensitivity, second_moment_eigenvalues
from jaxcnn.models import create_model
from jaxcnn.nn import activations
from jaxcnn.studies import common
from jaxcnn.studies import preprocessing_plots as plots
from jaxcnn.train.population import Population
from jaxcnn.train.steps import cross_entropy

# ----------------------------------------------------------------------------------------------
# (b) The zig-zag of all-positive inputs: a single neuron with a 2-D weight vector.


def neuron_grads(w: jax.Array, x: jax.Array, y: jax.Array, act: Any = "identity") -> jax.Array:
  """Per-example gradients of ``0.5 (act(w . x) - y)^2`` with respect to ``w``.

  Args:
    w: weights ``(D,)``.
    x: inputs ``(N, D)``.
    y: targets ``(N,)``.
    act: an activation spec or callable (``jaxcnn.nn.activations.get``).

  Returns:
    ``(N, D)``; row n is ``upstream_n * x_n`` with ``upstream_n = (act(w.x_n) - y_n) act'(w.x_n)``.
  """
  w, x, y = jnp.asarray(w), jnp.asarray(x), jnp.asarray(y)
  if w.ndim != 1 or x.ndim != 2 or x.shape[1] != w.shape[0] or y.shape != x.shape[:1]:
    raise ValueError(f"neuron_grads needs w (D,), x (N, D), y (N,); got {w.shape}, {x.shape}, "
                     f"{y.shape}.")
  fn = activations.get(act)
  loss = lambda w, xi, yi: 0.5 * (fn(jnp.dot(w, xi)) - yi) ** 2
  return jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(w, x, y)


def same_sign_fraction(grads: Any) -> float:
  """Fraction of rows of ``grads`` (N, D) whose components are all >= 0 or all <= 0."""
  g = np.asarray(grads)
  if g.ndim != 2 or g.shape[0] == 0:
    raise ValueError(f"same_sign_fraction needs gradients of shape (N, D), got {g.shape}.")
  return float(np.mean(np.all(g >= 0, axis=1) | np.all(g <= 0, axis=1)))


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size"))
def descent_path(w0: jax.Array, x: jax.Array, y: jax.Array, lr: jax.Array, key: jax.Array, *,
                 num_steps: int, batch_size: int = 0) -> jax.Array:
  """Weights of a linear neuron ``w . x`` trained on ``0.5 (w . x - y)^2``, step by step.

  ``batch_size=0`` is full-batch gradient descent; ``batch_size=b`` draws ``b`` examples per
  step (with replacement) from ``key``. Returns ``(num_steps + 1, D)``, starting at ``w0``.
  """
  def step(w, i):
    if batch_size:
      ids = jax.random.randint(jax.random.fold_in(key, i), (batch_size,), 0, x.shape[0])
      xb, yb = x[ids], y[ids]
    else:
      xb, yb = x, y
    w = w - lr * jnp.mean(neuron_grads(w, xb, yb), axis=0)
    return w, w

  _, path = jax.lax.scan(step, w0, jnp.arange(num_steps))
  return jnp.concatenate([w0[None], path])


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size"))
def _descent_paths(w0, x, y, lrs, keys, *, num_steps, batch_size):
  """``descent_path`` for every learning rate and key: ``(len(lrs), len(keys), steps + 1, D)``."""
  one = lambda lr, key: descent_path(w0, x, y, lr, key, num_steps=num_steps, batch_size=batch_size)
  return jax.vmap(lambda lr: jax.vmap(lambda key: one(lr, key))(keys))(lrs)


def steps_to_converge(path: Any, w_star: Any, tol: float) -> int | None:
  """First step at which ``||w - w*|| <= tol ||w*||`` (and stays finite); None if never."""
  path, w_star = np.asarray(path, np.float64), np.asarray(w_star, np.float64)
  with np.errstate(over="ignore", invalid="ignore"):  # diverged paths hold inf/NaN
    dist = np.linalg.norm(path - w_star, axis=-1)
  hits = np.flatnonzero(np.isfinite(dist) & (dist <= tol * np.linalg.norm(w_star)))
  return int(hits[0]) if hits.size else None


def zigzag_study(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """Runs the 2-D neuron on all-positive inputs and on the same inputs centered.

  Inputs ``U(low, high)^2``; centering is ``fit("mean_image", x)``. Targets ``y = x . w*``. For
  each input set: the same-sign fraction of per-example gradients at ``w0``, the eigenvalues of
  ``E[x x^T]`` (the full-batch Hessian), and for SGD (batch 1, median over seeds) and full-batch
  GD the fewest steps to ``tol`` over the learning-rate grid, and the first ``plot_steps`` steps
  of the path at the best learning rate (SGD: the first seed).
  """
  rng = np.random.default_rng(cfg.seed)
  x_pos = rng.uniform(cfg.low, cfg.high, size=(cfg.num_examples, 2)).astype(np.float32)
  inputs = {"all positive": x_pos,
            "centered": np.asarray(preprocessing.fit("mean_image", x_pos)(x_pos))}
  w_star, w0 = jnp.asarray(cfg.w_star, jnp.float32), jnp.asarray(cfg.w0, jnp.float32)
  lrs = jnp.asarray(np.geomspace(cfg.lr_min, cfg.lr_max, cfg.num_lrs), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds)
  out = {}
  for name, x in inputs.items():
    x = jnp.asarray(x)
    y = x @ w_star
    grads = neuron_grads(w0, x, y)
    eig = np.linalg.eigvalsh(np.asarray(x, np.float64).T @ np.asarray(x, np.float64) / len(x))
    res = {"x": np.asarray(x), "same_sign_fraction": same_sign_fraction(grads),
           "eigenvalues": eig[::-1], "condition_number": float(eig[-1] / eig[0])}
    for label, batch, seeds in (("sgd", 1, keys), ("gd", 0, keys[:1])):
      paths = _descent_paths(w0, x, y, lrs, seeds, num_steps=cfg.num_steps, batch_size=batch)
      steps = np.array([[np.inf if (s := steps_to_converge(p, w_star, cfg.tol)) is None else s
                         for p in per_lr] for per_lr in np.asarray(paths)])
      median = np.median(steps, axis=1)
      best = int(np.argmin(median))
      res[label] = {"lrs": np.asarray(lrs), "median_steps": median, "best_lr": float(lrs[best]),
                    "best_steps": None if np.isinf(median[best]) else int(median[best]),
                    "path": np.asarray(paths[best, 0, :cfg.plot_steps + 1])}
    out[name] = res
  return out


# ----------------------------------------------------------------------------------------------
# (c) Training speed, and (a) at the trained weights.


def classifier(hidden: Sequence[int], num_classes: int, act: Any = "relu") -> nn.Module:
  """The study's network: flatten, ``hidden`` Dense + ``act`` layers, a linear head (``hidden=()``
  is softmax regression; He-normal hidden kernels, a ``lecun_normal`` head), the registered
  ``softmax_regression`` with ``widths=hidden``; it takes images or vectors (PCA output) alike,
  and has no dropout or BatchNorm: the input's statistics reach the loss unchanged."""
  return create_model("softmax_regression", num_classes=num_classes, widths=tuple(hidden),
                      act=act)


@functools.lru_cache(maxsize=None)
def make_loss(model: nn.Module) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
  """``loss(params, x, labels)``: mean softmax cross-entropy of ``model`` (for the Hessian).

  One function per model (cached), so the jitted curvature measurements compile once per model
  and input shape rather than once per call.
  """
  def loss(params, x, labels):
    return cross_entropy(model.apply({"params": params}, x, train=False), labels).mean()
  return loss


def on_pixels(transform: preprocessing.Transform, scale: float = 1.0 / 255.0
              ) -> preprocessing.Transform:
  """``transform`` (fitted on ``pixels * scale``) as a transform of the raw pixels:
  ``(x s - shift) c = (x - shift / s) (c s)``, so the uint8 data on the device feed it directly."""
  state = dict(transform.state)
  state["shift"] = state["shift"] / scale
  state["scale"] = state["scale"] * scale
  return transform.replace(state=state)


@functools.lru_cache(maxsize=None)
def initial_params(model: nn.Module, input_shape: tuple[int, ...], seed: int) -> Any:
  """``model``'s initial parameters for inputs of ``input_shape`` (host arrays), drawn once per
  (model, shape, seed): the transforms of one output size share them, and the initializer's
  compilation (seconds on CPU for each new population) runs once."""
  key = jax.random.split(jax.random.PRNGKey(seed))[0]
  init = jax.jit(functools.partial(model.init, train=False))
  return jax.device_get(init(key, jnp.zeros((1, *input_shape), jnp.float32))["params"])


def lr_sweep(model: nn.Module, transform: preprocessing.Transform, source: sources.InMemory,
             lrs: Sequence[float], *, num_steps: int, batch_size: int, eval_every: int,
             momentum: float = 0.0, seed: int = 0,
             eval_splits: Sequence[str] = ("train_eval", "test")
             ) -> tuple[Any, Any, dict[str, Any]]:
  """Trains ``model`` at every learning rate of ``lrs`` as one :class:`Population`.

  SGD (``optax.inject_hyperparams``: each model holds its own rate); every model starts from the
  same initial weights (:func:`initial_params` of ``seed``) and, with a ``shared_order`` source, sees the same batches; the
  transform is the population's ``preprocess`` (on uint8 pixels: :func:`on_pixels`). Diverged
  rates are recorded as NaN/inf, not raised. Evaluates ``eval_splits`` at step 0 and every
  ``eval_every`` steps.

  Returns:
    The initial parameters (one model's: all start equal; host arrays), the final stacked
    state and the :meth:`Population.train` history (``eval_steps`` (E,),
    ``{split}_loss`` / ``{split}_accuracy`` (E, len(lrs)), ``train_loss`` (steps, len(lrs)), ...).
  """
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=momentum or None)
  pop = Population(model, tx, num_models=len(lrs), preprocess=transform,
                   shared_batch=source.shared_order)
  init_params = initial_params(model, tuple(transform.output_shape), seed)
  stacked = jax.tree.map(lambda a: np.broadcast_to(a, (len(lrs), *a.shape)),
                         {"params": init_params})
  state, data_keys = pop.init([seed] * len(lrs), transform.output_shape, variables=stacked,
                              hyperparams={"learning_rate": list(lrs)})
  state, history = pop.train(state, data_keys, source, num_steps=num_steps,
                             batch_size=batch_size, eval_every=eval_every,
                             eval_splits=eval_splits, eval_at_start=True,
                             labels=[f"lr {lr:g}" for lr in lrs], stop_on_nonfinite=False)
  return init_params, state, history


def _reached(steps: Sequence[int], losses: Any, target: float) -> int | None:
  """The first recorded step whose loss is <= ``target`` (:func:`diagnostics.steps_to_target`);
  None if none."""
  step = int(diagnostics.steps_to_target(losses, target, steps=steps))
  return step if step >= 0 else None


def best_run(steps: Sequence[int], losses: Any, target: float) -> int:
  """Index of the run (row of ``losses`` (R, E)) that reaches ``target`` first; ties and runs
  that never reach it are ordered by the final loss (NaN/inf last)."""
  losses = np.asarray(losses, np.float64)
  final = np.where(np.isfinite(losses[:, -1]), losses[:, -1], np.inf)
  reach = [_reached(steps, row, target) for row in losses]
  order = sorted(range(len(losses)), key=lambda r: (reach[r] is None, reach[r] or 0, final[r]))
  return order[0]


def curvature(model: nn.Module, params: Any, x: jax.Array, labels: jax.Array, *, key: jax.Array,
              num_iters: int, eps: float, num_samples: int) -> tuple[float, float]:
  """``(lambda_max(H), mean relative loss change)`` of ``model``'s loss at ``params`` on
  ``(x, labels)`` (:func:`jaxcnn.diagnostics.hessian_top_eigenvalue`, :func:`loss_sensitivity`)."""
  loss = make_loss(model)
  hess_key, sens_key = jax.random.split(key)
  lam, _ = hessian_top_eigenvalue(loss, params, x, labels, key=hess_key, num_iters=num_iters)
  sens = loss_sensitivity(loss, params, x, labels, key=sens_key, eps=eps, num_samples=num_samples)
  return float(lam), float(jnp.mean(sens))


def input_statistics(x: np.ndarray) -> dict[str, Any]:
  """Mean squared norm, the eigenvalues of ``E[x x^T]`` (descending) and ``lambda_max / mean
  lambda`` (over eigenvalues above ``1e-8 lambda_max``) of flattened inputs ``x``."""
  x = np.asarray(x).reshape(len(x), -1)
  eig = second_moment_eigenvalues(x, bias=False)
  positive = eig[eig > 1e-8 * eig[0]]
  return {"input_sq_norm": float(np.mean(np.sum(x.astype(np.float64) ** 2, 1))),
          "spectrum": eig, "eig_max": float(eig[0]), "eig_ratio": float(eig[0] / np.mean(positive))}


# ----------------------------------------------------------------------------------------------
# Results.


@dataclasses.dataclass(frozen=True)
class ModelResult:
  """One (transform, model): curvature at init and at the best rate's trained weights, and the
  learning-rate sweep (``train_loss`` on the fixed training subset and ``test_accuracy``, both
  ``(len(lrs), E)`` at ``eval_steps``)."""

  lambda_max_init: float
  lambda_max_trained: float
  sensitivity_init: float
  sensitivity_trained: float
  best_lr: float
  steps_to_target: int | None
  final_train_loss: float
  final_test_accuracy: float
  train_seconds: float
  lrs: tuple[float, ...]
  eval_steps: np.ndarray
  train_loss: np.ndarray
  test_accuracy: np.ndarray


@dataclasses.dataclass(frozen=True)
class TransformResult:
  """One transform: statistics of the preprocessed training inputs and each model's result."""

  input_sq_norm: float
  eig_max: float
  eig_ratio: float
  spectrum: np.ndarray
  models: dict[str, ModelResult]


@dataclasses.dataclass(frozen=True)
class Results:
  """What the report shows: the zig-zag part (:func:`zigzag_study`), each transform's result,
  the report's path and the figures' file names (in the run folder)."""

  zigzag: dict[str, Any]
  transforms: dict[str, TransformResult]
  table: str
  figures: tuple[str, ...]
  seconds: float

  def to_dict(self) -> dict[str, Any]:
    """JSON-able (:func:`jaxcnn.studies.common.jsonable`; the zig-zag's inputs left out)."""
    d = common.jsonable(self)
    for r in d["zigzag"].values():
      r.pop("x", None)
    return d


# ----------------------------------------------------------------------------------------------
# The study.


@jax.jit
def _apply(transform: preprocessing.Transform, x: jax.Array) -> jax.Array:
  """``transform(x)`` as one compiled function (per transform name and shape)."""
  return transform(x)


def _fmt(v):
  return "-" if v is None else v


def load_splits(s: ml_collections.ConfigDict) -> dict[str, dict[str, np.ndarray]]:
  """The train and test subsets (:func:`jaxcnn.data.sources.subsets`), uint8 images, plus
  ``train_eval``: the first ``eval_size`` training images (the training loss is measured on
  them)."""
  splits = sources.subsets(s.dataset, {"train": s.train_size, "test": s.test_size},
                           seed=s.data_seed, data_dir=s.data_dir or None)
  n_eval = min(s.eval_size, len(splits["train"]["label"]))
  splits["train_eval"] = {k: v[:n_eval] for k, v in splits["train"].items()}
  return splits


def run(config, workdir: str) -> Results:
  """Runs the three parts; writes ``preprocessing.md``, ``results.json`` and the figures
  ``zigzag.png``, ``data_clouds.png``, ``transformed_images.png``, ``pca_components.png``,
  ``spectra.png``, ``curves.png`` and ``lr_sweep.png`` into ``workdir``."""
  t0 = time.perf_counter()
  s = config
  os.makedirs(workdir, exist_ok=True)
  dpi = s.dpi
  figures = []
  report = common.Report("Data preprocessing: sensitivity of the loss and speed of training")

  # (b) zig-zag.
  zig = zigzag_study(s.zigzag)
  plots.plot_zigzag(zig, s.zigzag.w_star, os.path.join(workdir, "zigzag.png"), dpi)
  figures.append("zigzag.png")
  rows = [(name, f"{100 * r['same_sign_fraction']:.1f}%",
           ", ".join(f"{e:.3g}" for e in r["eigenvalues"]), r["condition_number"],
           r["sgd"]["best_lr"], _fmt(r["sgd"]["best_steps"]), r["gd"]["best_lr"],
           _fmt(r["gd"]["best_steps"])) for name, r in zig.items()]
  z = s.zigzag
  report.section("(b) The zig-zag of all-positive inputs").text(
      f"A linear neuron w . x with a 2-D weight, squared loss, targets y = x . w*, w* = "
      f"{tuple(z.w_star)}, start w0 = {tuple(z.w0)}; {z.num_examples} inputs drawn from "
      f"U({z.low}, {z.high})^2 and the same inputs centered (fit('mean_image')). The gradient of "
      "one example is dL/dw_i = upstream * x_i with one upstream for both i. Steps to "
      f"||w - w*|| <= {z.tol} ||w*|| at the best of {z.num_lrs} learning rates in "
      f"[{z.lr_min:g}, {z.lr_max:g}] (SGD: median over {z.num_seeds} seeds; cap {z.num_steps}).")
  report.table(rows, ("inputs", "per-example grads with one sign", "eig E[x x^T]",
                      "condition number", "SGD best lr", "SGD steps", "GD best lr", "GD steps"))
  report.figure("zigzag.png")

  # The lecture's figure of data clouds, on a synthetic correlated 2-D Gaussian.
  rng = np.random.default_rng(s.seed)
  cloud = rng.multivariate_normal(s.cloud.mean, s.cloud.cov, size=s.cloud.num_points)
  plots.plot_data_clouds(cloud.astype(np.float32), s.cloud.specs,
                         os.path.join(workdir, "data_clouds.png"), dpi)
  figures.append("data_clouds.png")

  # Data for (a) and (c): uint8 on the device once; transforms fitted on pixels / 255.
  splits = load_splits(s)
  source = sources.InMemory(splits, shared_order=True)
  x_train = splits["train"]["image"].astype(np.float32) / 255.0
  y_train = splits["train"]["label"]
  n_eval = len(splits["train_eval"]["label"])
  n_hess = min(s.hessian_size, len(x_train))
  num_classes = source.max_label + 1

  # Transformed images and PCA components.
  show = x_train[:s.num_show]
  pca = preprocessing.fit(s.figure_pca, x_train)
  recon = (np.asarray(_apply(pca, show)) @ np.asarray(pca.state["matrix"]).T).reshape(show.shape)
  recon = recon + np.asarray(pca.state["shift"])
  image_rows = {"original": show}
  for spec in s.figure_transforms:
    image_rows[spec] = np.asarray(_apply(preprocessing.fit(spec, x_train), show))
  image_rows[f"{s.figure_pca} reconstruction"] = recon
  plots.plot_transformed_images(image_rows, os.path.join(workdir, "transformed_images.png"), dpi)
  components = np.asarray(pca.state["matrix"]).T.reshape(-1, *show.shape[1:])
  plots.plot_transformed_images(
      {f"principal components {i + 1}-{min(i + 8, len(components))}": components[i:i + 8]
       for i in range(0, min(len(components), 32), 8)},
      os.path.join(workdir, "pca_components.png"), dpi)
  figures += ["transformed_images.png", "pca_components.png"]

  # (a) and (c), per transform and model.
  models = {name: classifier(hidden, num_classes, s.act) for name, hidden in s.models.items()}
  lrs = {name: tuple(float(v) for v in s.lrs[name]) for name in models}
  curv_key = jax.random.PRNGKey(s.seed)
  yh = jnp.asarray(y_train[:n_hess])
  results: dict[str, TransformResult] = {}
  for spec in s.transforms:
    pre = preprocessing.fit(spec, x_train)
    stats = input_statistics(np.asarray(_apply(pre, x_train)))
    xh = _apply(pre, jnp.asarray(x_train[:n_hess]))
    per_model = {}
    for name, model in models.items():
      init_params, state, hist = lr_sweep(
          model, on_pixels(pre), source, lrs[name], num_steps=s.num_steps,
          batch_size=s.batch_size, eval_every=s.eval_every, momentum=s.momentum, seed=s.seed)
      steps, train_loss = hist["eval_steps"], hist["train_eval_loss"].T  # (lrs, E)
      target = s.targets[name]
      best = best_run(steps, train_loss, target)
      lam0, sens0 = curvature(model, init_params, xh, yh, key=curv_key, num_iters=s.power_iters,
                              eps=s.eps, num_samples=s.sensitivity_samples)
      lam1, sens1 = curvature(model, jax.tree.map(lambda a: a[best], state.params), xh, yh,
                              key=curv_key, num_iters=s.power_iters, eps=s.eps,
                              num_samples=s.sensitivity_samples)
      r = ModelResult(
          lambda_max_init=lam0, lambda_max_trained=lam1, sensitivity_init=sens0,
          sensitivity_trained=sens1, best_lr=lrs[name][best],
          steps_to_target=_reached(steps, train_loss[best], target),
          final_train_loss=float(train_loss[best, -1]),
          final_test_accuracy=float(hist["test_accuracy"][-1, best]),
          train_seconds=float(hist["seconds"]), lrs=lrs[name], eval_steps=np.asarray(steps),
          train_loss=train_loss, test_accuracy=hist["test_accuracy"].T)
      per_model[name] = r
      print(f"preprocessing: {spec:28s} {name:6s} best lr {r.best_lr:<7g} steps to "
            f"{target:g}: {_fmt(r.steps_to_target)}, lambda_max {lam0:.3g} -> {lam1:.3g} "
            f"({r.train_seconds:.1f} s)", flush=True)
    results[spec] = TransformResult(models=per_model, **stats)

  plots.plot_spectra({spec: r.spectrum for spec, r in results.items()},
                     os.path.join(workdir, "spectra.png"), dpi)
  plots.plot_curves({spec: {name: {"steps": m.eval_steps,
                                   "train_loss": m.train_loss[m.lrs.index(m.best_lr)],
                                   "lr": m.best_lr} for name, m in r.models.items()}
                     for spec, r in results.items()},
                    dict(s.targets), os.path.join(workdir, "curves.png"), dpi)
  plots.plot_lr_sweep({spec: {name: {"lrs": m.lrs, "final_loss": m.train_loss[:, -1]}
                              for name, m in r.models.items()} for spec, r in results.items()},
                      os.path.join(workdir, "lr_sweep.png"), dpi)
  figures += ["spectra.png", "curves.png", "lr_sweep.png"]

  names = list(models)
  n_test = len(splits["test"]["label"])
  where = (f"{s.dataset}: {len(x_train)} training images (random subset), {n_test} "
           f"test images; pixels / 255, then each transform fitted on the training subset")
  sens_rows = []
  for spec, r in results.items():
    row = [spec, r.input_sq_norm, r.eig_max, r.eig_ratio]
    for name in names:
      m = r.models[name]
      row += [m.lambda_max_init, m.sensitivity_init, m.lambda_max_trained, m.sensitivity_trained]
    sens_rows.append(row)
  sens_headers = ["transform", "E‖x‖²", "λmax E[xxᵀ]", "λmax / mean λ"]
  for name in names:
    sens_headers += [f"{name}: λmax(H) init", f"{name}: ΔL/L init",
                     f"{name}: λmax(H) trained", f"{name}: ΔL/L trained"]
  report.section("(a) Sensitivity of the loss to the weights").text(
      f"{where}. λmax(H): largest Hessian eigenvalue of the mean cross-entropy on {n_hess} "
      f"training images, {s.power_iters} power iterations, at the initial weights and at the "
      f"weights of the best learning rate after training. ΔL/L: mean relative loss change over "
      f"{s.sensitivity_samples} random weight perturbations with per-weight RMS {s.eps:g}. "
      "E[xxᵀ] is the second moment of the flattened preprocessed input (with the bias's constant "
      "1 appended it is K times the linear classifier's Hessian at W = 0); λmax / mean λ is over "
      "its eigenvalues above 1e-8 λmax. Models: "
      + ", ".join(f"{n} = hidden {tuple(s.models[n])}" for n in names) + ".")
  report.table(sens_rows, sens_headers).figure("spectra.png")

  speed_rows = []
  for spec, r in results.items():
    for name in names:
      m = r.models[name]
      speed_rows.append((spec, name, m.best_lr, 2.0 / m.lambda_max_init,
                         _fmt(m.steps_to_target), m.final_train_loss, m.final_test_accuracy))
  report.section("(c) Training speed").text(
      f"{where}. Plain SGD (momentum {s.momentum:g}), batch {s.batch_size}, {s.num_steps} steps, "
      f"the same initial weights and minibatches for every transform and learning rate (one "
      f"population per transform and model, jaxcnn.train.population); the best learning rate "
      f"per transform and model from "
      + "; ".join(f"{n}: {tuple(lrs[n])}" for n in names)
      + f". Training loss on a fixed subset of {n_eval} training images every {s.eval_every} "
      f"steps; target loss " + ", ".join(f"{n} {s.targets[n]:g}" for n in names)
      + ". 2/λmax(H) at init is the step size above which gradient descent diverges along the "
      "sharpest direction (LeCun et al. 1998).")
  report.table(speed_rows, ("transform", "model", "best lr", "2/λmax(H) init", "steps to target",
                            "final train loss", "final test acc"))
  report.figure("curves.png").figure("lr_sweep.png", alt="lr sweep")
  report.section("Transformed data").figure("data_clouds.png", alt="data clouds")
  report.figure("transformed_images.png", alt="transformed images")
  report.figure("pca_components.png", alt="pca components")
  seconds = time.perf_counter() - t0
  report.text(f"Wall time {seconds:.0f} s.")
  table = report.write(os.path.join(workdir, "preprocessing.md"))
  out = Results(zigzag=zig, transforms=results, table=table, figures=tuple(figures),
                seconds=seconds)
  common.save_results(out, workdir)
  return out
