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
  tuned per preprocessing over one grid, trained together with ``jax.vmap``), steps to a target
  training loss.

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

import functools
import math
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxcnn.data import preprocessing
from jaxcnn.diagnostics import hessian_top_eigenvalue, loss_sensitivity, second_moment_eigenvalues
from jaxcnn.nn import activations, initializers
from jaxcnn.studies import common
from jaxcnn.train.state import create_train_state
from jaxcnn.train.steps import cross_entropy, make_eval_step, make_train_step

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
# (c) Training speed.


class Classifier(nn.Module):
  """Flatten, ``hidden`` Dense + activation layers, a linear head; ``hidden=()`` is softmax
  regression. Takes images or vectors (PCA output), so every preprocessing feeds the same model."""

  num_classes: int = 10
  hidden: Sequence[int] = ()
  act: Any = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train  # no dropout or BatchNorm: the input's statistics reach the loss unchanged
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = nn.Dense(width, kernel_init=initializers.get("kaiming_normal"))(x)
      x = activations.Activation(self.act)(x)
    return nn.Dense(self.num_classes, kernel_init=initializers.get("lecun_normal"),
                    name="head")(x)


def make_loss(model: nn.Module) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
  """``loss(params, x, labels)``: mean softmax cross-entropy of ``model`` (for the Hessian)."""
  def loss(params, x, labels):
    return cross_entropy(model.apply({"params": params}, x, train=False), labels).mean()
  return loss


class LrSweep:
  """Trains one model at several SGD learning rates at once (``jax.vmap`` over the train state).

  The learning rate lives in the optimizer state (``optax.inject_hyperparams``), so each model of
  the stack has its own; all start from the same initial weights and see the same minibatches
  (drawn with replacement, ``fold_in(data_key, step)``). The compiled functions are shared by
  every call with the same data shapes.
  """

  def __init__(self, model: nn.Module, num_lrs: int, batch_size: int, momentum: float = 0.0):
    self.model, self.num_lrs, self.batch_size = model, num_lrs, batch_size
    self.tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0,
                                                  momentum=momentum or None)
    train_step = make_train_step(model, self.tx, num_models=num_lrs)
    self.eval_step = make_eval_step(model, num_models=num_lrs)

    def chunk(state, x, labels, data_key, num_steps):
      def body(s, _):
        ids = jax.random.randint(jax.random.fold_in(data_key, s.step[0]), (batch_size,), 0,
                                 x.shape[0])
        batch = {"image": jnp.broadcast_to(x[ids], (num_lrs, batch_size, *x.shape[1:])),
                 "label": jnp.broadcast_to(labels[ids], (num_lrs, batch_size))}
        s, metrics = train_step(s, batch)
        return s, metrics["loss"]
      return jax.lax.scan(body, state, None, length=num_steps)

    self.chunk = jax.jit(chunk, static_argnames="num_steps")

    def init(key, lrs, input_shape):
      state = create_train_state(model, self.tx, key, input_shape)
      state = jax.tree.map(lambda a: jnp.broadcast_to(a, (num_lrs, *a.shape)), state)
      state.opt_state.hyperparams["learning_rate"] = lrs
      return state

    self._init = jax.jit(init, static_argnames="input_shape")

  def init(self, key: jax.Array, input_shape: Sequence[int], lrs: Sequence[float]):
    """The stacked state: one initialization (``key``) copied ``len(lrs)`` times."""
    if len(lrs) != self.num_lrs:
      raise ValueError(f"Expected {self.num_lrs} learning rates, got {len(lrs)}.")
    return self._init(key, jnp.asarray(lrs, jnp.float32), tuple(input_shape))

  def evaluate(self, state, x: jax.Array, labels: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """(mean loss, accuracy) of each model on ``(x, labels)``, as NumPy ``(num_lrs,)``."""
    sums = jax.device_get(self.eval_step(state, {"image": x, "label": labels}))
    return sums["loss"] / sums["count"], sums["correct"] / sums["count"]

  def fit(self, state, x, labels, x_eval, labels_eval, x_test, labels_test, *, data_key,
          num_steps: int, eval_every: int) -> tuple[Any, dict[str, np.ndarray]]:
    """Trains ``num_steps``; every ``eval_every`` steps records the loss on ``x_eval`` (a fixed
    subset of the training data) and the test accuracy. Diverged runs give NaN/inf, not errors.

    Returns the final state and ``{"steps": (E,), "train_loss": (num_lrs, E),
    "test_accuracy": (num_lrs, E), "batch_loss": (num_lrs, num_steps)}``.
    """
    steps, train_loss, test_acc, batch_loss = [], [], [], []
    done = 0
    while True:
      loss, _ = self.evaluate(state, x_eval, labels_eval)
      _, acc = self.evaluate(state, x_test, labels_test)
      steps.append(done)
      train_loss.append(loss)
      test_acc.append(acc)
      if done >= num_steps:
        break
      n = min(eval_every, num_steps - done)
      state, losses = self.chunk(state, x, labels, data_key, num_steps=n)
      batch_loss.append(np.asarray(losses).T)
      done += n
    return state, {"steps": np.asarray(steps), "train_loss": np.stack(train_loss, 1),
                   "test_accuracy": np.stack(test_acc, 1),
                   "batch_loss": np.concatenate(batch_loss, 1)}


def steps_to_target(steps: Sequence[int], losses: Sequence[float], target: float) -> int | None:
  """First recorded step whose loss is <= ``target``; None if none (NaN never counts)."""
  losses = np.asarray(losses, np.float64)
  if len(steps) != len(losses):
    raise ValueError(f"steps and losses differ in length: {len(steps)} vs {len(losses)}.")
  hits = np.flatnonzero(np.isfinite(losses) & (losses <= target))
  return int(np.asarray(steps)[hits[0]]) if hits.size else None


def best_run(steps: Sequence[int], losses: Any, target: float) -> int:
  """Index of the run (row of ``losses`` (R, E)) that reaches ``target`` first; ties and runs
  that never reach it are ordered by the final loss (NaN/inf last)."""
  losses = np.asarray(losses, np.float64)
  final = np.where(np.isfinite(losses[:, -1]), losses[:, -1], np.inf)
  reach = [steps_to_target(steps, row, target) for row in losses]
  order = sorted(range(len(losses)), key=lambda r: (reach[r] is None, reach[r] or 0, final[r]))
  return order[0]


# ----------------------------------------------------------------------------------------------
# Data.


def load_data(s: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Random subsets of the train and test splits, pixels as float32 in [0, 1] (N, H, W, C)."""
  from jaxcnn.data import datasets  # imported here: tensorflow-datasets is slow to import

  data_dir = s.data_dir or None
  if data_dir is not None and not os.path.isabs(data_dir):
    data_dir = str(common.REPO_ROOT / data_dir)
  rng = np.random.default_rng(s.data_seed)
  out = {}
  for split, size in (("train", s.train_size), ("test", s.test_size)):
    d = datasets.load(s.dataset, split, data_dir=data_dir)
    ids = rng.permutation(len(d["label"]))[:size]
    out[f"x_{split}"] = d["image"][ids].astype(np.float32) / 255.0
    out[f"y_{split}"] = d["label"][ids].astype(np.int32)
  return out


# ----------------------------------------------------------------------------------------------
# Figures.


def _plt():
  import matplotlib
  if "MPLBACKEND" not in os.environ and "inline" not in matplotlib.get_backend():
    matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path: str | None, dpi: int):
  if path:
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
  return fig


def plot_zigzag(zig: dict[str, Any], w_star: Sequence[float], path: str | None = None,
                dpi: int = 100):
  """Loss contours of the 2-D neuron with the SGD (batch 1) and GD paths, per input set."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(zig), figsize=(5.2 * len(zig), 4.8))
  for ax, (name, res) in zip(np.atleast_1d(axes), zig.items()):
    x = res["x"]
    pts = np.concatenate([res["sgd"]["path"], res["gd"]["path"], [w_star]])
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    lo, hi = pts.min(0) - 0.3, pts.max(0) + 0.3
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    w = np.stack([g0.ravel(), g1.ravel()], 1)
    loss = 0.5 * np.mean((w @ x.T - (x @ np.asarray(w_star))) ** 2, axis=1).reshape(g0.shape)
    ax.contour(g0, g1, loss, levels=np.geomspace(loss.min() + 1e-4, loss.max(), 12),
               colors="0.75", linewidths=0.8)
    sgd, gd = res["sgd"]["path"], res["gd"]["path"]
    ax.plot(sgd[:, 0], sgd[:, 1], "-o", ms=2.5, lw=1.0, color="tab:red",
            label=f"SGD, batch 1, lr {res['sgd']['best_lr']:.3g}")
    ax.plot(gd[:, 0], gd[:, 1], "-s", ms=2.5, lw=1.0, color="tab:blue",
            label=f"full-batch GD, lr {res['gd']['best_lr']:.3g}")
    ax.plot(*w_star, "k*", ms=12, label="w* (target)")
    ax.plot(*sgd[0], "ko", ms=5)
    ax.set_title(f"{name} inputs: {100 * res['same_sign_fraction']:.0f}% of per-example\n"
                 f"gradients have one sign in both components", fontsize=10)
    ax.set_xlabel("w1")
    ax.set_ylabel("w2")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="upper right")
  fig.suptitle("A 2-D linear neuron: dL/dw_i = upstream * x_i (each method at its best lr)")
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_data_clouds(x: np.ndarray, specs: Sequence[str], path: str | None = None,
                     dpi: int = 100):
  """The lecture's figure: a 2-D cloud after each transform ``fit(spec, x)``."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(specs), figsize=(3.0 * len(specs), 3.2))
  clouds = [np.asarray(preprocessing.fit(spec, x)(x)) for spec in specs]
  lim = max(float(np.abs(c).max()) for c in clouds) * 1.05
  for ax, spec, c in zip(np.atleast_1d(axes), specs, clouds):
    ax.scatter(c[:, 0], c[:, 1], s=3, alpha=0.5)
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    cov = np.cov(c.T)
    ax.set_title(f"{spec}\nmean ({c[:, 0].mean():.1f}, {c[:, 1].mean():.1f}), "
                 f"corr {cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]):.2f}", fontsize=8)
  fig.tight_layout()
  return _save(fig, path, dpi)


def _montage(imgs: np.ndarray, pad: int = 1) -> np.ndarray:
  """Images ``(n, H, W, C)`` side by side, each min-max scaled to [0, 1], on a white gap."""
  n, h, w, c = imgs.shape
  out = np.ones((h, n * (w + pad) - pad, c))
  for i, img in enumerate(imgs):
    img = img - img.min()
    out[:, i * (w + pad):i * (w + pad) + w] = img / max(float(img.max()), 1e-12)
  return out[..., 0] if c == 1 else out


def plot_transformed_images(rows: dict[str, np.ndarray], path: str | None = None,
                            dpi: int = 100):
  """One row per entry (name -> images ``(n, H, W, C)``), each image min-max scaled."""
  plt = _plt()
  n = max(len(v) for v in rows.values())
  fig, axes = plt.subplots(len(rows), 1, figsize=(1.0 * n + 1.5, 1.15 * len(rows)),
                           squeeze=False)
  for ax, (name, imgs) in zip(axes[:, 0], rows.items()):
    ax.imshow(_montage(np.asarray(imgs)), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(name, loc="left", fontsize=8)
  fig.suptitle("each image min-max scaled for display", fontsize=8)
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_spectra(spectra: dict[str, np.ndarray], path: str | None = None, dpi: int = 100):
  """Eigenvalues of E[x x^T] per transform, descending, log scale."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for name, eig in spectra.items():
    ax.plot(np.arange(1, len(eig) + 1), np.maximum(eig, 1e-10), label=name)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("eigenvalue index")
  ax.set_ylabel("eigenvalue of E[x x^T]")
  ax.set_title("Second moment of the preprocessed inputs: with the bias's constant 1\n"
               "appended, K x the Hessian of a K-class linear softmax classifier at W = 0",
               fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_curves(curves: dict[str, dict[str, dict[str, Any]]], targets: dict[str, float],
                path: str | None = None, dpi: int = 100):
  """Training loss (fixed train subset) against step at each transform's best learning rate."""
  plt = _plt()
  models = list(next(iter(curves.values())))
  fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
  for ax, m in zip(axes[0], models):
    for name, per_model in curves.items():
      r = per_model[m]
      ax.plot(r["steps"], r["train_loss"], label=f"{name} (lr {r['lr']:g})")
    ax.axhline(targets[m], color="k", ls="--", lw=0.8, label=f"target {targets[m]:g}")
    ax.set_yscale("log")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{m}: each preprocessing at its best learning rate", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_lr_sweep(sweeps: dict[str, dict[str, dict[str, Any]]], path: str | None = None,
                  dpi: int = 100):
  """Final training loss against learning rate per transform; diverged runs drawn as x at top."""
  plt = _plt()
  models = list(next(iter(sweeps.values())))
  fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
  for ax, m in zip(axes[0], models):
    cap = 2 * math.log(10)
    for name, per_model in sweeps.items():
      lrs, final = per_model[m]["lrs"], np.asarray(per_model[m]["final_loss"], np.float64)
      ok = np.isfinite(final) & (final < cap)
      line, = ax.plot(lrs, np.where(ok, final, np.nan), "-o", ms=3, label=name)
      ax.plot(np.asarray(lrs)[~ok], np.full((~ok).sum(), cap), "x", color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final training loss")
    ax.set_title(f"{m}: x = diverged or above {cap:.2f}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return _save(fig, path, dpi)


# ----------------------------------------------------------------------------------------------
# The study.


@jax.jit
def _apply(transform: preprocessing.Transform, x: jax.Array) -> jax.Array:
  """``transform(x)`` as one compiled function (per transform name and shape)."""
  return transform(x)


def _fmt(v):
  return "-" if v is None else v


def run(config, workdir: str) -> dict[str, Any]:
  """Runs the three parts and writes ``preprocessing.md`` and the figures into ``workdir``.

  Figures: ``zigzag.png``, ``data_clouds.png``, ``transformed_images.png``,
  ``pca_components.png``, ``spectra.png``, ``curves.png``, ``lr_sweep.png``.

  Returns ``{"zigzag": {...}, "transforms": {spec: {...}}, "table": path, "figures": [...]}``.
  """
  t0 = time.perf_counter()
  s = config
  os.makedirs(workdir, exist_ok=True)
  dpi = s.dpi
  figures = []
  sections = ["# Data preprocessing: sensitivity of the loss and speed of training\n"]

  # (b) zig-zag.
  zig = zigzag_study(s.zigzag)
  plot_zigzag(zig, s.zigzag.w_star, os.path.join(workdir, "zigzag.png"), dpi)
  figures.append("zigzag.png")
  rows = [(name, f"{100 * r['same_sign_fraction']:.1f}%",
           ", ".join(f"{e:.3g}" for e in r["eigenvalues"]), r["condition_number"],
           r["sgd"]["best_lr"], _fmt(r["sgd"]["best_steps"]), r["gd"]["best_lr"],
           _fmt(r["gd"]["best_steps"])) for name, r in zig.items()]
  z = s.zigzag
  sections.append(
      "## (b) The zig-zag of all-positive inputs\n\n"
      f"A linear neuron w . x with a 2-D weight, squared loss, targets y = x . w*, w* = "
      f"{tuple(z.w_star)}, start w0 = {tuple(z.w0)}; {z.num_examples} inputs drawn from "
      f"U({z.low}, {z.high})^2 and the same inputs centered (fit('mean_image')). The gradient of "
      "one example is dL/dw_i = upstream * x_i with one upstream for both i. Steps to "
      f"||w - w*|| <= {z.tol} ||w*|| at the best of {z.num_lrs} learning rates in "
      f"[{z.lr_min:g}, {z.lr_max:g}] (SGD: median over {z.num_seeds} seeds; cap {z.num_steps}).\n\n"
      + common.markdown_table(rows, (
          "inputs", "per-example grads with one sign", "eig E[x x^T]", "condition number",
          "SGD best lr", "SGD steps", "GD best lr", "GD steps")) + "\n\n![zigzag](zigzag.png)\n")

  # The lecture's figure of data clouds, on a synthetic correlated 2-D Gaussian.
  rng = np.random.default_rng(s.seed)
  cloud = rng.multivariate_normal(s.cloud.mean, s.cloud.cov, size=s.cloud.num_points)
  plot_data_clouds(cloud.astype(np.float32), s.cloud.specs,
                   os.path.join(workdir, "data_clouds.png"), dpi)
  figures.append("data_clouds.png")

  # Data for (a) and (c).
  data = load_data(s)
  x_train, y_train = data["x_train"], data["y_train"]
  n_eval = min(s.eval_size, len(x_train))
  n_hess = min(s.hessian_size, len(x_train))
  num_classes = int(max(y_train.max(), data["y_test"].max()) + 1)

  # Transformed images and PCA components.
  show = x_train[:s.num_show]
  pca = preprocessing.fit(s.figure_pca, x_train)
  recon = (np.asarray(_apply(pca, show)) @ np.asarray(pca.state["matrix"]).T).reshape(show.shape)
  recon = recon + np.asarray(pca.state["shift"])
  image_rows = {"original": show}
  for spec in s.figure_transforms:
    image_rows[spec] = np.asarray(_apply(preprocessing.fit(spec, x_train), show))
  image_rows[f"{s.figure_pca} reconstruction"] = recon
  plot_transformed_images(image_rows, os.path.join(workdir, "transformed_images.png"), dpi)
  components = np.asarray(pca.state["matrix"]).T.reshape(-1, *show.shape[1:])
  plot_transformed_images({f"principal components {i + 1}-{min(i + 8, len(components))}":
                           components[i:i + 8] for i in range(0, min(len(components), 32), 8)},
                          os.path.join(workdir, "pca_components.png"), dpi)
  figures += ["transformed_images.png", "pca_components.png"]

  # (a) and (c), per transform and model.
  models = {name: Classifier(num_classes=num_classes, hidden=tuple(hidden), act=s.act)
            for name, hidden in s.models.items()}
  lrs = {name: list(s.lrs[name]) for name in models}
  sweeps = {name: LrSweep(model, len(lrs[name]), s.batch_size, s.momentum)
            for name, model in models.items()}
  losses = {name: make_loss(model) for name, model in models.items()}
  key = jax.random.PRNGKey(s.seed)
  init_key, data_key, hess_key, sens_key = jax.random.split(key, 4)
  results: dict[str, Any] = {}
  curves: dict[str, Any] = {}
  lr_sweeps: dict[str, Any] = {}
  spectra: dict[str, np.ndarray] = {}
  for spec in s.transforms:
    pre = preprocessing.fit(spec, x_train)
    # Flattened, so that transforms with the same output size share compiled functions.
    xt = np.asarray(_apply(pre, x_train)).reshape(len(x_train), -1)
    xe = jnp.asarray(np.asarray(_apply(pre, data["x_test"])).reshape(len(data["x_test"]), -1))
    x_eval, y_eval = jnp.asarray(xt[:n_eval]), jnp.asarray(y_train[:n_eval])
    xh, yh = jnp.asarray(xt[:n_hess]), jnp.asarray(y_train[:n_hess])
    eig = second_moment_eigenvalues(xt, bias=False)
    xt, yt, ye = jnp.asarray(xt), jnp.asarray(y_train), jnp.asarray(data["y_test"])
    spectra[spec] = eig
    positive = eig[eig > 1e-8 * eig[0]]
    res = {"input_sq_norm": float(np.mean(np.sum(np.asarray(xt) ** 2, 1))),
           "eig_max": float(eig[0]), "eig_ratio": float(eig[0] / np.mean(positive)),
           "models": {}}
    curves[spec], lr_sweeps[spec] = {}, {}
    for name, model in models.items():
      sweep, loss = sweeps[name], losses[name]
      state = sweep.init(init_key, xt.shape[1:], lrs[name])
      params0 = jax.tree.map(lambda a: np.asarray(a)[0], state.params)
      lam0, _ = hessian_top_eigenvalue(loss, params0, xh, yh, key=hess_key,
                                       num_iters=s.power_iters)
      sens0 = loss_sensitivity(loss, params0, xh, yh, key=sens_key, eps=s.eps,
                               num_samples=s.sensitivity_samples)
      t = time.perf_counter()
      state, hist = sweep.fit(state, xt, yt, x_eval, y_eval, xe, ye,
                              data_key=data_key, num_steps=s.num_steps, eval_every=s.eval_every)
      seconds = time.perf_counter() - t
      target = s.targets[name]
      best = best_run(hist["steps"], hist["train_loss"], target)
      params = jax.tree.map(lambda a: np.asarray(a)[best], state.params)
      lam1, _ = hessian_top_eigenvalue(loss, params, xh, yh, key=hess_key,
                                       num_iters=s.power_iters)
      sens1 = loss_sensitivity(loss, params, xh, yh, key=sens_key, eps=s.eps,
                               num_samples=s.sensitivity_samples)
      res["models"][name] = {
          "lambda_max_init": float(lam0), "lambda_max_trained": float(lam1),
          "sensitivity_init": float(jnp.mean(sens0)), "sensitivity_trained": float(jnp.mean(sens1)),
          "best_lr": lrs[name][best],
          "steps_to_target": steps_to_target(hist["steps"], hist["train_loss"][best], target),
          "final_train_loss": float(hist["train_loss"][best, -1]),
          "final_test_accuracy": float(hist["test_accuracy"][best, -1]),
          "train_seconds": seconds}
      curves[spec][name] = {"steps": hist["steps"], "train_loss": hist["train_loss"][best],
                            "lr": lrs[name][best]}
      lr_sweeps[spec][name] = {"lrs": lrs[name], "final_loss": hist["train_loss"][:, -1]}
      print(f"preprocessing: {spec:28s} {name:6s} best lr {lrs[name][best]:<7g} steps to "
            f"{target:g}: {_fmt(res['models'][name]['steps_to_target'])}, "
            f"lambda_max {float(lam0):.3g} -> {float(lam1):.3g} ({seconds:.1f} s)", flush=True)
    results[spec] = res

  plot_spectra(spectra, os.path.join(workdir, "spectra.png"), dpi)
  plot_curves(curves, dict(s.targets), os.path.join(workdir, "curves.png"), dpi)
  plot_lr_sweep(lr_sweeps, os.path.join(workdir, "lr_sweep.png"), dpi)
  figures += ["spectra.png", "curves.png", "lr_sweep.png"]

  names = list(models)
  where = (f"{s.dataset}: {len(x_train)} training images (random subset), {len(data['x_test'])} "
           f"test images; pixels / 255, then each transform fitted on the training subset")
  sens_rows = []
  for spec, r in results.items():
    row = [spec, r["input_sq_norm"], r["eig_max"], r["eig_ratio"]]
    for name in names:
      m = r["models"][name]
      row += [m["lambda_max_init"], m["sensitivity_init"], m["lambda_max_trained"],
              m["sensitivity_trained"]]
    sens_rows.append(row)
  sens_headers = ["transform", "E‖x‖²", "λmax E[xxᵀ]", "λmax / mean λ"]
  for name in names:
    sens_headers += [f"{name}: λmax(H) init", f"{name}: ΔL/L init",
                     f"{name}: λmax(H) trained", f"{name}: ΔL/L trained"]
  sections.append(
      "## (a) Sensitivity of the loss to the weights\n\n"
      f"{where}. λmax(H): largest Hessian eigenvalue of the mean cross-entropy on {n_hess} "
      f"training images, {s.power_iters} power iterations, at the initial weights and at the "
      f"weights of the best learning rate after training. ΔL/L: mean relative loss change over "
      f"{s.sensitivity_samples} random weight perturbations with per-weight RMS {s.eps:g}. "
      "E[xxᵀ] is the second moment of the flattened preprocessed input (with the bias's constant "
      "1 appended it is K times the linear classifier's Hessian at W = 0); λmax / mean λ is over "
      "its eigenvalues above 1e-8 λmax. Models: "
      + ", ".join(f"{n} = hidden {tuple(s.models[n])}" for n in names) + ".\n\n"
      + common.markdown_table(sens_rows, sens_headers) + "\n\n![spectra](spectra.png)\n")

  speed_rows = []
  for spec, r in results.items():
    for name in names:
      m = r["models"][name]
      speed_rows.append((spec, name, m["best_lr"], 2.0 / m["lambda_max_init"],
                         _fmt(m["steps_to_target"]), m["final_train_loss"],
                         m["final_test_accuracy"]))
  sections.append(
      "## (c) Training speed\n\n"
      f"{where}. Plain SGD (momentum {s.momentum:g}), batch {s.batch_size}, {s.num_steps} steps, "
      f"the same initial weights and minibatches for every transform; the best learning rate per "
      f"transform and model from "
      + "; ".join(f"{n}: {tuple(lrs[n])}" for n in names)
      + f". Training loss on a fixed subset of {n_eval} training images every {s.eval_every} "
      f"steps; target loss " + ", ".join(f"{n} {s.targets[n]:g}" for n in names)
      + ". 2/λmax(H) at init is the step size above which gradient descent diverges along the "
      "sharpest direction (LeCun et al. 1998).\n\n"
      + common.markdown_table(speed_rows, ("transform", "model", "best lr", "2/λmax(H) init",
                                           "steps to target", "final train loss",
                                           "final test acc"))
      + "\n\n![curves](curves.png)\n\n![lr sweep](lr_sweep.png)\n")
  sections.append("## Transformed data\n\n![data clouds](data_clouds.png)\n\n"
                  "![transformed images](transformed_images.png)\n\n"
                  "![pca components](pca_components.png)\n")
  sections.append(f"Wall time {time.perf_counter() - t0:.0f} s.\n")
  table = os.path.join(workdir, "preprocessing.md")
  pathlib.Path(table).write_text("\n".join(sections))
  return {"zigzag": zig, "transforms": results, "table": table, "figures": figures}
