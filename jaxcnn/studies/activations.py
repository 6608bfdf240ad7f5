"""Activation functions: their shapes and derivatives, and how fast the same CNN trains with each.

The study (CS231n, lecture "Training Neural Networks I"):

* each activation and its derivative (``jax.grad``) on a grid: sigmoid and tanh saturate (the
  derivative vanishes for large ``|x|``; sigmoid's is at most 1/4 and its output is not
  zero-centred), ReLU passes gradient 1 or 0 (a unit that is negative on every input is dead),
  Leaky ReLU / PReLU / ELU / SELU / Swish keep a gradient for ``x < 0``, Maxout is a learned
  convex piecewise-linear function (ReLU and Leaky ReLU are special cases);
* the same small CNN (:class:`ActCNN`, no batch normalization, so that nothing rescales the
  pre-activations and the nonlinearity alone decides how signals and gradients flow) trained with
  each activation, several seeds at once with ``jax.vmap``: training and validation error
  against iterations (mean and spread over seeds), the fraction of dead ReLUs and of saturated
  tanh/sigmoid units over training (:func:`jaxcnn.diagnostics.activation_stats` on a fixed batch),
  and the iterations each needs to reach a target training error.

The claim checked: "a four-layer convolutional neural network with ReLUs reaches a 25% training
error rate on CIFAR-10 six times faster than an equivalent network with tanh neurons"
(Krizhevsky et al. 2012, Figure 1; learning rates chosen per network, no regularization).

References: Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep
Convolutional Neural Networks"; CS231n (Stanford), "Training Neural Networks I"; Maas et al.
2013 (Leaky ReLU); He et al. 2015 (PReLU); Clevert et al. 2016 (ELU); Klambauer et al. 2017
(SELU); Goodfellow et al. 2013 (Maxout); Ramachandran et al. 2017 (Swish).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.diagnostics import has_unit_stats, unit_stats
from jaxcnn.nn import activations, initializers
from jaxcnn.studies import common
from jaxcnn.train.state import create_train_state
from jaxcnn.train.steps import make_eval_step, make_train_step

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "maxout", "swish")
# Maxout drawn as a scalar function: max(x, 0.25 x - 0.5), two learned pieces in a trained net.
MAXOUT_PIECES = ((1.0, 0.0), (0.25, -0.5))

# ----------------------------------------------------------------------------------------------
# The functions and their derivatives.


def _scalar_fn(name: str):
  """``f(x) -> y`` for scalar x: plain functions directly; PReLU at its initial slope (0.25);
  Maxout with the pieces ``MAXOUT_PIECES`` (slope, intercept)."""
  fn = activations.get(name)
  if not activations.is_learnable(fn):
    return fn
  module = fn(features=1, k=len(MAXOUT_PIECES)) if name == "maxout" else fn(per_channel=False)
  variables = module.init(jax.random.key(0), jnp.zeros((1, 1)))
  if name == "maxout":
    slopes, intercepts = (jnp.array(v, jnp.float32) for v in zip(*MAXOUT_PIECES))
    variables = {"params": {"pieces": {"kernel": slopes[None, :], "bias": intercepts}}}
  return lambda x: module.apply(variables, jnp.reshape(x, (1, 1)))[0, 0]


def activation_curve(name: str, x: Any) -> tuple[np.ndarray, np.ndarray]:
  """Values and derivatives (``jax.grad``, elementwise) of activation ``name`` on the grid ``x``.

  Learnable activations are drawn at fixed parameters: PReLU with slope 0.25 (its init), Maxout
  as ``max(x, 0.25 x - 0.5)``.
  """
  f = _scalar_fn(name)
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 1:
    raise ValueError(f"x must be a 1-D grid, got shape {x.shape}.")
  y, dy = jax.jit(jax.vmap(jax.value_and_grad(f)))(x)
  return np.asarray(y), np.asarray(dy)


def plot_activations(names: Sequence[str], path: str | None = None, *,
                     x_range: tuple[float, float] = (-4.0, 4.0), num: int = 401, dpi: int = 100):
  """A panel per activation with f (solid) and f' (dashed); returns the matplotlib Figure."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  if not names:
    raise ValueError("plot_activations needs at least one activation name.")
  x = np.linspace(*x_range, num)
  cols = min(3, len(names))
  rows = -(-len(names) // cols)
  fig = Figure(figsize=(3.2 * cols, 2.5 * rows), layout="constrained", dpi=dpi)
  for ax, name in zip(fig.subplots(rows, cols, squeeze=False).ravel(), names):
    y, dy = activation_curve(name, x)
    ax.plot(x, y, label="f(x)")
    ax.plot(x, dy, "--", label="f'(x)")
    ax.axhline(0, color="0.7", lw=0.6)
    ax.axvline(0, color="0.7", lw=0.6)
    ax.set_title(name + (" (slope 0.25)" if name == "prelu" else
                         " max(x, 0.25x-0.5)" if name == "maxout" else ""), fontsize=9)
    ax.set_ylim(-2.0, 4.0)
    ax.tick_params(labelsize=7)
  fig.axes[0].legend(fontsize=7)
  for ax in fig.axes[len(names):]:
    ax.set_axis_off()
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


# ----------------------------------------------------------------------------------------------
# The network.


class ActCNN(nn.Module):
  """Conv-act-pool stages, one hidden dense layer, a linear classifier; no normalization.

  ``features=(16, 32), hidden=64`` on 28x28 inputs is a four-layer network (two convolutions,
  two dense layers), the depth of Krizhevsky et al.'s Figure 1 network. Convolutions and dense
  layers have biases (zero init); every nonlinearity is an ``Activation`` module, so learnable
  ones (PReLU, Maxout) get their own parameters. References: Krizhevsky et al. 2012, Figure 1.
  """

  num_classes: int = 10
  features: Sequence[int] = (16, 32)
  hidden: int = 64
  kernel_size: int = 5
  act: Any = "relu"
  kernel_init: Any = "kaiming_normal"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train  # no dropout, no batch normalization
    if x.ndim != 4:
      raise ValueError(f"ActCNN expects NHWC images, got shape {x.shape}.")
    init = initializers.get(self.kernel_init)
    for f in self.features:
      x = nn.Conv(f, (self.kernel_size, self.kernel_size), kernel_init=init)(x)
      x = activations.Activation(self.act)(x)
      if min(x.shape[1:3]) >= 2:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = activations.Activation(self.act)(nn.Dense(self.hidden, kernel_init=init)(x))
    return nn.Dense(self.num_classes, kernel_init=initializers.get("lecun_normal"),
                    name="head")(x)


# ----------------------------------------------------------------------------------------------
# Bookkeeping.


def moving_average(errors: Any, window: int) -> np.ndarray:
  """Trailing mean over ``window`` steps along axis 0; row t averages steps t-window+1..t.

  Only full windows are returned: ``len(errors) - window + 1`` rows.
  """
  errors = np.asarray(errors, np.float64)
  if window < 1 or window > len(errors):
    raise ValueError(f"window must lie in [1, {len(errors)}] (the number of steps), got {window}.")
  cumsum = np.concatenate([np.zeros((1, *errors.shape[1:])), np.cumsum(errors, axis=0)])
  return (cumsum[window:] - cumsum[:-window]) / window


def iterations_to_target(errors: Any, target: float, window: int) -> np.ndarray:
  """Iterations until the training error, averaged over the last ``window`` steps, first is
  ``<= target``.

  Args:
    errors: per-step training errors (fraction of the batch misclassified), shape ``(steps,)``
      or ``(steps, num_models)``.
    target: the error to reach, in [0, 1].
    window: steps in the trailing average (the running training error of cuda-convnet).

  Returns:
    int array of shape ``errors.shape[1:]``: the number of iterations (1-based step count at the
    end of the first window whose mean is ``<= target``), or -1 where never reached.
  """
  if not 0.0 <= target <= 1.0:
    raise ValueError(f"target must be an error rate in [0, 1], got {target}.")
  smooth = moving_average(errors, window) <= target
  first = np.argmax(smooth, axis=0)
  return np.where(smooth.any(axis=0), first + window, -1)


# ----------------------------------------------------------------------------------------------
# Training with one activation, several seeds at once.


def load_data(config) -> dict[str, dict[str, np.ndarray]]:
  """``{"train", "val"}`` subsets of ``config.dataset``'s training split (disjoint, shuffled with
  ``config.data_seed``): ``num_train`` and ``num_val`` examples."""
  from jaxcnn.data import datasets  # pylint: disable=g-import-not-at-top

  data_dir = config.data_dir or None
  if data_dir and not os.path.isabs(data_dir):
    data_dir = str(common.REPO_ROOT / data_dir)
  if config.dataset == "digits":
    data_dir = None
  full = datasets.load(config.dataset, "train", data_dir=data_dir)
  n = len(full["label"])
  if config.num_train + config.num_val > n:
    raise ValueError(f"num_train + num_val = {config.num_train + config.num_val} exceeds the "
                     f"{n} training examples of {config.dataset}.")
  order = np.random.default_rng(config.data_seed).permutation(n)
  take = lambda idx: {k: v[idx] for k, v in full.items()}
  return {"train": take(order[:config.num_train]),
          "val": take(order[config.num_train:config.num_train + config.num_val])}


@functools.partial(jax.jit, static_argnums=2)
def _epoch_order(keys: jax.Array, epoch: int, n: int) -> jax.Array:
  """One permutation of ``range(n)`` per model key, drawn from ``(key, epoch)``."""
  return jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n))(keys)


@functools.partial(jax.jit, static_argnums=4)
def _take_batch(images, labels, order, index, batch_size: int) -> dict[str, jax.Array]:
  """Batch ``index`` of each model's order: images (models, batch, H, W, C), labels."""
  ids = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size, axis=1)
  return {"image": images[ids], "label": labels[ids]}


def train_activation(act: str, config, data: dict[str, dict[str, np.ndarray]],
                     transform) -> dict[str, Any]:
  """Trains ``config.num_seeds`` copies of :class:`ActCNN` with activation ``act`` at once.

  SGD with momentum at a constant learning rate (``config.learning_rates[act]`` if nonzero, else
  ``config.learning_rate``), no weight decay or augmentation (as Krizhevsky et al.'s Figure 1).
  Every ``eval_every_steps`` steps (and at step 0) records the running training error (mean of the
  per-batch errors since the last evaluation), the validation error, and dead/saturated unit
  fractions on a fixed batch of validation images.

  Returns:
    dict with ``step_errors`` (steps, seeds), ``eval_steps`` (E,), ``train_error`` and
    ``val_error`` (E, seeds; train_error is NaN at step 0), ``dead`` and ``saturated``
    (E, seeds, layers) or None, ``num_params`` and ``seconds``.
  """
  t0 = time.perf_counter()
  train, val = data["train"], data["val"]
  num_classes = int(max(train["label"].max(), val["label"].max())) + 1
  kernel_init = config.inits.get(act, "kaiming_normal")
  model = ActCNN(num_classes=num_classes, features=tuple(config.model.features),
                 hidden=config.model.hidden, kernel_size=config.model.kernel_size, act=act,
                 kernel_init=kernel_init)
  lr = config.learning_rates.get(act, 0.0) or config.learning_rate
  tx = optax.sgd(lr, momentum=config.momentum)
  seeds = config.num_seeds
  keys = jnp.stack([jax.random.PRNGKey(config.seed + m) for m in range(seeds)])
  model_keys, data_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
  # Initialized one by one, eagerly (its small compiled ops are reused by every activation; a
  # jitted vmap of the init costs seconds of XLA compilation per network), then stacked.
  states = [create_train_state(model, tx, k, train["image"].shape[1:]) for k in model_keys]
  state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
  num_params = sum(x[0].size for x in jax.tree.leaves(state.params))
  train_step = make_train_step(model, tx, preprocess=transform, num_models=seeds)
  eval_step = make_eval_step(model, preprocess=transform, num_models=seeds)

  images, labels = jnp.asarray(train["image"]), jnp.asarray(train["label"])
  val_batch = {"image": jnp.asarray(val["image"]), "label": jnp.asarray(val["label"])}
  stats_images = transform(jnp.asarray(val["image"][:config.stats_batch]))
  batch_size, n = config.batch_size, len(train["label"])
  steps_per_epoch = n // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"batch_size={batch_size} exceeds the {n} training examples.")

  track = has_unit_stats(act)
  history = {"eval_steps": [], "train_error": [], "val_error": [], "dead": [], "saturated": []}

  def evaluate(step, recent):
    sums = jax.device_get(eval_step(state, val_batch))
    history["eval_steps"].append(step)
    history["val_error"].append(1.0 - sums["correct"] / sums["count"])
    history["train_error"].append(np.mean(recent, axis=0) if len(recent) else
                                  np.full(seeds, np.nan))
    if track:
      stats = unit_stats(model, state.params, stats_images, seeds)
      history["dead"].append(stats["dead"])
      history["saturated"].append(stats["saturated"])

  step_errors, pending = [], []
  evaluate(0, [])
  order = None
  for step in range(config.num_steps):
    epoch, position = divmod(step, steps_per_epoch)
    if position == 0:
      order = _epoch_order(data_keys, epoch, n)
    state, metrics = train_step(state, _take_batch(images, labels, order, position, batch_size))
    pending.append(metrics["accuracy"])
    if (step + 1) % config.eval_every_steps == 0 or step + 1 == config.num_steps:
      errors = 1.0 - np.asarray(jax.device_get(jnp.stack(pending)), np.float64)
      if not np.isfinite(errors).all():
        raise FloatingPointError(f"{act}: non-finite accuracy at step {step + 1}.")
      step_errors.extend(errors)
      evaluate(step + 1, errors)
      pending = []
  result = {k: np.asarray(v, np.float64) for k, v in history.items()}
  if not track:
    result["dead"] = result["saturated"] = None
  result.update(step_errors=np.asarray(step_errors), num_params=int(num_params),
                learning_rate=float(lr), init=str(kernel_init), seconds=time.perf_counter() - t0)
  return result


# ----------------------------------------------------------------------------------------------
# Figures.


def _band(ax, x, values, label, **kwargs):
  """Mean line and min-max band over the seed axis (last axis) of ``values``."""
  mean = np.nanmean(values, axis=-1)
  (line,) = ax.plot(x, mean, label=label, **kwargs)
  if values.shape[-1] > 1:
    ax.fill_between(x, np.nanmin(values, axis=-1), np.nanmax(values, axis=-1),
                    color=line.get_color(), alpha=0.15, lw=0)
  return line


def plot_curves(runs: dict[str, dict[str, Any]], path: str | None = None, *,
                target: float | None = None, dpi: int = 100):
  """Training (running) and validation error against iterations, mean and min-max over seeds."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(11, 4), layout="constrained", dpi=dpi)
  axes = fig.subplots(1, 2, sharey=True)
  for i, (act, r) in enumerate(runs.items()):
    style = dict(color=f"C{i % 10}", ls="-" if i < 10 else "--")
    _band(axes[0], r["eval_steps"][1:], r["train_error"][1:], act, **style)
    _band(axes[1], r["eval_steps"], r["val_error"], act, **style)
  for ax, title in zip(axes, ("training error (running mean since last evaluation)",
                              "validation error")):
    if target is not None:
      ax.axhline(target, color="k", lw=0.8, ls=":")
    ax.set(title=title, xlabel="iteration", yscale="log")
    ax.grid(alpha=0.3, which="both")
  axes[0].set_ylabel("error (mean, band: min-max over seeds)")
  axes[1].legend(fontsize=8, ncol=2)
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_unit_stats(runs: dict[str, dict[str, Any]], path: str | None = None, *, dpi: int = 100):
  """Dead fraction (ReLU) and saturated fraction (tanh, sigmoid) per layer over training."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  panels = [(act, key) for act, r in runs.items() for key in ("dead", "saturated")
            if r.get(key) is not None and np.isfinite(r[key]).any()]
  if not panels:
    raise ValueError("No run recorded dead or saturated units (needs relu, tanh or sigmoid).")
  fig = Figure(figsize=(4 * len(panels), 3.3), layout="constrained", dpi=dpi)
  for ax, (act, key) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
    r = runs[act]
    for layer in range(r[key].shape[-1]):
      _band(ax, r["eval_steps"], r[key][:, :, layer], f"layer {layer + 1}")
    ax.set(title=f"{act}: {key} fraction", xlabel="iteration", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_iterations(iterations: dict[str, np.ndarray], num_steps: int, target: float,
                    path: str | None = None, *, dpi: int = 100):
  """Bar chart: iterations to the target training error, mean and min-max over seeds.

  Seeds that never reached the target count as ``num_steps`` (a lower bound); such bars are
  hatched and labelled with ``>``.
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  names = list(iterations)
  fig = Figure(figsize=(1.0 * len(names) + 2.5, 3.6), layout="constrained", dpi=dpi)
  ax = fig.subplots()
  for i, name in enumerate(names):
    its = np.asarray(iterations[name])
    missed = its < 0
    values = np.where(missed, num_steps, its).astype(float)
    mean = values.mean()
    ax.bar(i, mean, color=f"C{i % 10}", hatch="//" if missed.any() else None,
           edgecolor="k" if missed.any() else None)
    ax.errorbar(i, mean, yerr=[[mean - values.min()], [values.max() - mean]], color="k",
                capsize=3)
    ax.text(i, values.max(), (">" if missed.any() else "") + f"{mean:.0f}", ha="center",
            va="bottom", fontsize=8)
  ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
  ax.set(ylabel="iterations", title=f"iterations to {target:.0%} training error\n"
         f"(hatched: some seed did not reach it in {num_steps})")
  ax.title.set_fontsize(9)
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


# ----------------------------------------------------------------------------------------------
# The study.


def _mean_std(values: np.ndarray) -> str:
  values = np.asarray(values, np.float64)
  return f"{values.mean():.4f} ± {values.std():.4f}"


def _iterations_cell(its: np.ndarray, num_steps: int) -> str:
  reached = its[its >= 0]
  if len(reached) == len(its):
    return f"{reached.mean():.0f} ± {reached.std():.0f}"
  if len(reached) == 0:
    return f"> {num_steps} (0/{len(its)} seeds)"
  return f"{reached.mean():.0f} ± {reached.std():.0f} ({len(reached)}/{len(its)} seeds; " \
         f"others > {num_steps})"


def speedup(iterations: dict[str, np.ndarray], slow: str, fast: str,
            num_steps: int) -> tuple[float, bool]:
  """Ratio of mean iterations ``slow / fast`` and whether it is exact (False: a lower bound,
  because some ``slow`` seeds never reached the target; unreached counts as ``num_steps``).

  NaN if ``fast`` did not reach the target with every seed.
  """
  a, b = np.asarray(iterations[slow]), np.asarray(iterations[fast])
  if (b < 0).any():
    return float("nan"), False
  exact = bool((a >= 0).all())
  return float(np.where(a < 0, num_steps, a).mean() / b.mean()), exact


def run(config, workdir: str) -> dict[str, Any]:
  """Writes ``activations.md`` and ``activation_functions.png``, ``curves.png``,
  ``unit_stats.png``, ``iterations.png`` into ``workdir``.

  Returns {"config": the config used, "runs": {act: train_activation
  result}, "iterations": {act: (seeds,) int}, "speedup_tanh_over_relu": float, "speedup_exact":
  bool, "measured": sentence, "table": path, "figures": [...]}.
  """
  unknown = [a for a in config.activations if a not in activations.names()]
  if unknown:
    raise ValueError(f"Unknown activation(s) {unknown}. Known: {', '.join(activations.names())}.")
  os.makedirs(workdir, exist_ok=True)
  from jaxcnn.data import preprocessing  # pylint: disable=g-import-not-at-top

  figures = ["activation_functions.png", "curves.png", "iterations.png"]
  plot_activations(tuple(config.plot_activations), os.path.join(workdir, figures[0]),
                   dpi=config.dpi)
  data = load_data(config)
  transform = preprocessing.fit(config.preprocessing, data["train"]["image"])
  runs = {}
  for act in config.activations:
    r = runs[act] = train_activation(act, config, data, transform)
    print(f"activations: {act:>10}: final train error {_mean_std(r['train_error'][-1])}, "
          f"val error {_mean_std(r['val_error'][-1])} ({r['seconds']:.0f}s)", flush=True)

  window, target, num_steps = config.smoothing_steps, config.target_error, config.num_steps
  iterations = {a: iterations_to_target(r["step_errors"], target, window) for a, r in runs.items()}
  plot_curves(runs, os.path.join(workdir, "curves.png"), target=target, dpi=config.dpi)
  plot_iterations(iterations, num_steps, target, os.path.join(workdir, "iterations.png"),
                  dpi=config.dpi)
  if any(r["dead"] is not None for r in runs.values()):
    plot_unit_stats(runs, os.path.join(workdir, "unit_stats.png"), dpi=config.dpi)
    figures.append("unit_stats.png")

  relu_its = iterations.get("relu")
  rows = []
  for act, r in runs.items():
    its = iterations[act]
    ratio = (speedup(iterations, act, "relu", num_steps) if relu_its is not None
             else (float("nan"), True))
    ratio_cell = ("" if not np.isfinite(ratio[0]) else
                  f"{'' if ratio[1] else '> '}{ratio[0]:.2f}")
    dead = "" if r["dead"] is None or np.isnan(r["dead"]).all() else \
        f"{np.nanmean(r['dead'][0]):.3f} → {np.nanmean(r['dead'][-1]):.3f}"
    sat = "" if r["saturated"] is None or np.isnan(r["saturated"]).all() else \
        f"{np.nanmean(r['saturated'][0]):.3f} → {np.nanmean(r['saturated'][-1]):.3f}"
    rows.append((act, r["init"], r["learning_rate"], r["num_params"], _iterations_cell(its, num_steps),
                 ratio_cell, _mean_std(r["train_error"][-1]), _mean_std(r["val_error"][-1]),
                 dead or sat, f"{r['seconds']:.0f}"))
  ratio, exact = (speedup(iterations, "tanh", "relu", num_steps)
                  if {"tanh", "relu"} <= set(runs) else (float("nan"), True))
  n_train, seeds = config.num_train, config.num_seeds
  caption = (
      f"{config.dataset} ({n_train} training images, {config.num_val} validation images, both "
      f"from the training split), the same {len(config.model.features) + 2}-layer CNN "
      f"(conv {tuple(config.model.features)} {config.model.kernel_size}x{config.model.kernel_size} "
      f"+ max-pool, dense {config.model.hidden}, linear head; no batch normalization), "
      f"{seeds} seeds trained at once with jax.vmap; SGD momentum {config.momentum}, batch "
      f"{config.batch_size}, {num_steps} iterations, no weight decay or augmentation. Training "
      f"error = mean minibatch error over the last {window} iterations (for the target) or since "
      f"the last evaluation (final column); ± is the std over seeds. Dead = fraction of ReLU units "
      f"zero on a fixed batch of {config.stats_batch} validation images; saturated = fraction of "
      f"tanh/sigmoid outputs within 1% of a bound (mean over layers, at step 0 → at the end). "
      f"Speed is iterations to target relative to ReLU (> : a lower bound, some seeds never "
      f"reached the target).")
  table = common.markdown_table(rows, (
      "activation", "init", "lr", "params", f"iterations to {target:.0%} train error",
      "x ReLU", "final train error", "final val error", "dead / saturated", "seconds"))
  claim = ("Krizhevsky et al. 2012 (Figure 1): with ReLUs a four-layer CNN reaches 25% training "
           "error on CIFAR-10 six times faster than with tanh.")
  measured = ("not measured: needs tanh and relu runs, with relu reaching the target with "
              "every seed" if not np.isfinite(ratio) else
              f"tanh needs {'more than ' if not exact else ''}{ratio:.2f}x the iterations of "
              f"ReLU to reach {target:.0%} training error here (per seed: tanh "
              f"{iterations['tanh'].tolist()}, relu {iterations['relu'].tolist()}; -1 = not "
              f"reached in {num_steps}).")
  text = (f"# Activation functions\n\n![activation functions]({figures[0]})\n\n"
          f"## Training the same CNN with each activation\n\n{caption}\n\n{table}\n\n"
          f"**Claim.** {claim}\n\n**Measured.** {measured}\n\n"
          + "".join(f"![{f}]({f})\n\n" for f in figures[1:]))
  path = os.path.join(workdir, "activations.md")
  with open(path, "w") as f:
    f.write(text)
  print(f"activations: {measured}", flush=True)
  return {"config": config, "runs": runs, "iterations": iterations,
          "speedup_tanh_over_relu": ratio, "speedup_exact": exact, "measured": measured,
          "table": path, "figures": figures}
