"""Batch normalization: a deep ReLU MLP at initialization, and training with and without BN.

Part 1, at initialization. A 50-layer fully connected ReLU network (width 100, He/Kaiming-normal
weights ``N(0, 2 / fan_in)``, zero biases) is fed real images. He init holds the *scale* of the
activations (each layer's second moment is preserved), so nothing vanishes or explodes, and yet
the network computes an almost constant function: each layer maps two inputs whose
representations have cosine similarity ``c`` to ``(sqrt(1 - c^2) + (pi - arccos c) c) / pi``
(the arc-cosine kernel of a ReLU layer, Cho & Saul 2009), whose only stable fixed point is
``c = 1``, so the representations of all inputs line up layer after layer. A different init
scale changes nothing here: without biases the network is positively homogeneous, so a
``lecun_normal`` net computes the same function times ``2 ** (-depth / 2)``. We measure per layer

* :func:`mean_cosine_similarity` of the representations of different inputs (1: one direction
  for all inputs);
* :func:`input_variance_fraction`: the share of the pooled variance of a layer's activations
  (what a histogram of the layer shows) that comes from differences *between inputs* rather than
  between units (law of total variance; 0 when every unit is constant over the inputs), also
  with every input's representation scaled to unit length (the input's norm only scales the
  output of a bias-free ReLU net);
* :func:`argmax_concentration` of the softmax: the fraction of inputs assigned the most common
  class.

With BatchNorm after each Dense (before the ReLU; batch statistics in train mode) every unit is
standardized over the batch, so every unit varies across inputs by construction, the cosine
similarity stays near ``1 / pi`` (that of rectified independent Gaussians) and the predicted
class varies.

Part 2, training. A shallower copy of the network (``config.train.depth``) is trained with and
without BN over a grid of learning rates and batch sizes (SGD with momentum, constant rate; the
learning rates of one batch size train at once, ``jax.vmap`` over models). BN tolerates larger
rates; at tiny batches (2, 4) the batch statistics are noisy and differ from the running averages
used at test time, and BN's test accuracy falls behind (the small-batch failure).

References: Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift"; Ioffe 2017, "Batch Renormalization: Towards Reducing
Minibatch Dependence in Batch-Normalized Models"; Wu & He 2018, "Group Normalization" (Figure 1:
BN's error grows as the batch shrinks); He et al. 2015, "Delving Deep into Rectifiers"; Cho &
Saul 2009, "Kernel Methods for Deep Learning"; Schoenholz et al. 2017, "Deep Information
Propagation"; CS231n (Stanford), lecture "Training Neural Networks I" (batch normalization).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.data import preprocessing
from jaxcnn.nn import activations, initializers, layers
from jaxcnn.studies import common
from jaxcnn.train import state as train_state
from jaxcnn.train import steps as train_steps

# ----------------------------------------------------------------------------------------------
# The network.


class DeepMLP(nn.Module):
  """``depth`` blocks Dense -> normalization -> activation, then a Dense classifier.

  Inputs of any shape ``(N, ...)`` are flattened. With a normalization other than ``"none"`` the
  hidden Dense layers have no bias (the normalization's offset takes its place).

  Attributes:
    depth: number of hidden layers.
    width: units per hidden layer.
    num_classes: outputs of the classifier.
    norm: ``"none"`` or a :func:`jaxcnn.nn.layers.normalize` spec such as ``"batch"``.
    act: activation spec (:mod:`jaxcnn.nn.activations`).
    kernel_init: initializer spec of every Dense kernel (:mod:`jaxcnn.nn.initializers`).
  """

  depth: int = 50
  width: int = 100
  num_classes: int = 10
  norm: Any = "none"
  act: Any = "relu"
  kernel_init: Any = "kaiming_normal"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    init = initializers.get(self.kernel_init)
    for _ in range(self.depth):
      x = nn.Dense(self.width, use_bias=self.norm in ("none", None), kernel_init=init)(x)
      x = layers.normalize(self.norm, x, train=train)
      x = activations.Activation(self.act)(x)
    return nn.Dense(self.num_classes, kernel_init=init)(x)


def hidden_activations(model: nn.Module, variables: Any, x: jax.Array, *,
                       train: bool) -> tuple[list[jax.Array], jax.Array]:
  """Outputs of every hidden layer (after its activation) and the logits, for one batch.

  In train mode BatchNorm uses the batch's statistics (the running averages are not updated).
  """
  is_act = lambda module, method_name: isinstance(module, activations.Activation)
  logits, state = model.apply(variables, x, train=train, mutable=["batch_stats", "intermediates"],
                              capture_intermediates=is_act)
  inter = state["intermediates"]
  hidden = [inter[f"Activation_{i}"]["__call__"][0] for i in range(model.depth)]
  return hidden, logits


# ----------------------------------------------------------------------------------------------
# Metrics of a representation h: (N inputs, D units).


def _check_rows(h: jax.Array, name: str) -> jax.Array:
  h = jnp.asarray(h)
  if h.ndim != 2 or h.shape[0] < 2:
    raise ValueError(f"{name} needs a (N, D) array with N >= 2 inputs, got shape {h.shape}.")
  return h.astype(jnp.float32)


def mean_cosine_similarity(h: jax.Array) -> jax.Array:
  """Mean cosine similarity of the rows of ``h`` (N, D) over all pairs of different rows.

  1 when all rows point the same way (a constant function up to scale), 0 for orthogonal rows.
  All-zero rows count as similarity 0. Computed as ``(|sum_i u_i|^2 - sum_i |u_i|^2) /
  (N (N - 1))`` with ``u_i`` the unit rows, in O(N D).
  """
  h = _check_rows(h, "mean_cosine_similarity")
  norms = jnp.linalg.norm(h, axis=1, keepdims=True)
  u = jnp.where(norms > 0, h / jnp.where(norms > 0, norms, 1.0), 0.0)
  n = h.shape[0]
  total = jnp.sum(jnp.square(u.sum(axis=0))) - jnp.sum(jnp.square(u))
  return total / (n * (n - 1))


def input_variance_fraction(h: jax.Array, *, unit_rows: bool = False) -> jax.Array:
  """Share of the pooled variance of ``h`` (N inputs, D units) that is between inputs.

  By the law of total variance,
  ``var(all entries) = mean_d var_n(h[:, d]) + var_d(mean_n h[:, d])``:
  within-unit (between-input) plus between-unit variance. Returns the first term over the total:
  0 when every unit is constant over the inputs (the histogram of the layer is then just the
  spread of the unit means), 1 when all units have the same mean. 0 for a constant ``h``.
  ``unit_rows=True`` first scales every row to unit length (all-zero rows stay zero), so only
  differences of *direction* between inputs count, not of scale.
  """
  h = _check_rows(h, "input_variance_fraction")
  if unit_rows:
    norms = jnp.linalg.norm(h, axis=1, keepdims=True)
    h = jnp.where(norms > 0, h / jnp.where(norms > 0, norms, 1.0), 0.0)
  total = jnp.var(h)
  within = jnp.mean(jnp.var(h, axis=0))
  return jnp.where(total > 0, within / jnp.where(total > 0, total, 1.0), 0.0)


def relu_cosine_map(c: np.ndarray) -> np.ndarray:
  """Cosine between ``relu(W u)`` and ``relu(W v)`` for Gaussian ``W`` as the width grows, given
  the cosine ``c`` of ``u`` and ``v``: ``(sqrt(1 - c^2) + (pi - arccos c) c) / pi``.

  References: Cho & Saul 2009, "Kernel Methods for Deep Learning" (arc-cosine kernel, degree 1).
  """
  c = np.clip(np.asarray(c, np.float64), -1.0, 1.0)
  return (np.sqrt(1.0 - c * c) + (np.pi - np.arccos(c)) * c) / np.pi


def predicted_cosine(x: np.ndarray, depth: int) -> np.ndarray:
  """Infinite-width prediction of :func:`mean_cosine_similarity` after each of ``depth`` bias-free
  ReLU layers without normalization: every pair's input cosine through :func:`relu_cosine_map`
  ``l`` times, averaged over pairs. Shape ``(depth,)``."""
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  u = x / np.where(norms > 0, norms, 1.0)
  c = (u @ u.T)[~np.eye(len(x), dtype=bool)]
  out = []
  for _ in range(depth):
    c = relu_cosine_map(c)
    out.append(c.mean())
  return np.asarray(out)


def argmax_concentration(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(fraction of inputs whose argmax is the most common one, that class) for logits (N, K)."""
  logits = jnp.asarray(logits)
  if logits.ndim != 2 or logits.shape[0] < 1:
    raise ValueError(f"argmax_concentration needs logits of shape (N, K), got {logits.shape}.")
  counts = jnp.bincount(jnp.argmax(logits, axis=-1), length=logits.shape[-1])
  return counts.max() / logits.shape[0], jnp.argmax(counts)


# ----------------------------------------------------------------------------------------------
# Data.


def load_data(config) -> dict[str, dict[str, np.ndarray]]:
  """uint8 images ``(N, H, W, C)`` and int32 labels of random train and test subsets.

  ``config.dataset``: the offline digits (8x8; quick setting) or MNIST from ``config.data_dir``
  (resolved against the repository root when relative).
  """
  from jaxcnn.data import datasets  # pylint: disable=g-import-not-at-top

  if config.dataset == "digits":
    name, data_dir = "digits", None
  else:
    name, data_dir = config.dataset, config.data_dir
    if data_dir and not os.path.isabs(data_dir):
      data_dir = str(common.REPO_ROOT / data_dir)
  out = {}
  for split, size in (("train", config.num_train), ("test", config.num_test)):
    d = datasets.load(name, split, data_dir=data_dir or None)
    order = np.random.default_rng(config.seed).permutation(len(d["label"]))[:size]
    out[split] = {"image": np.asarray(d["image"])[order],
                  "label": np.asarray(d["label"])[order].astype(np.int32)}
  return out


# ----------------------------------------------------------------------------------------------
# Part 1: at initialization.


def init_analysis(model: nn.Module, key: jax.Array, x: jax.Array) -> dict[str, Any]:
  """Per-layer constancy metrics of ``model`` at init on inputs ``x`` (train-mode BN).

  Returns {"hidden": [per-layer outputs as NumPy], "cosine": [...], "variance_fraction": [...],
  "direction_variance_fraction": [...] (``unit_rows=True``), "logits", "concentration",
  "majority_class", "mean_max_prob", "input_cosine", "predicted_cosine"} (the last: the
  infinite-width prediction for a net without normalization, :func:`predicted_cosine`).
  """
  variables = model.init(key, x[:2], train=False)

  @jax.jit
  def forward(variables, x):
    hidden, logits = hidden_activations(model, variables, x, train=True)
    cos = jnp.stack([mean_cosine_similarity(h) for h in hidden])
    frac = jnp.stack([input_variance_fraction(h) for h in hidden])
    direction = jnp.stack([input_variance_fraction(h, unit_rows=True) for h in hidden])
    return hidden, logits, cos, frac, direction

  hidden, logits, cos, frac, direction = jax.device_get(forward(variables, x))
  conc, cls = argmax_concentration(logits)
  return dict(hidden=[np.asarray(h) for h in hidden], cosine=np.asarray(cos),
              variance_fraction=np.asarray(frac), direction_variance_fraction=np.asarray(direction),
              logits=np.asarray(logits),
              concentration=float(conc), majority_class=int(cls),
              mean_max_prob=float(jnp.mean(jnp.max(jax.nn.softmax(logits), axis=-1))),
              input_cosine=float(mean_cosine_similarity(x.reshape(x.shape[0], -1))),
              predicted_cosine=predicted_cosine(np.asarray(x), model.depth))


def plot_histograms(results: dict[str, dict[str, Any]], layers_shown: Sequence[int],
                    path: str | None = None, *, title: str | None = None):
  """Histogram grid: one row per network, one column per layer (1-based indices).

  Each panel shows the density of the layer's nonzero activations pooled over inputs and units
  (blue) and the density of the units' mean activations (red outline; red ticks: each unit's
  mean). Where the two coincide, the spread of the layer is all between units: every unit is
  nearly constant over the inputs. The x range is cut at the 99.5th percentile. Returns the
  Figure.
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  rows, cols = len(results), len(layers_shown)
  fig = Figure(figsize=(1.9 * cols, 2.0 * rows + 0.6), layout="constrained")
  axes = fig.subplots(rows, cols, squeeze=False)
  for r, (label, res) in enumerate(results.items()):
    for c, layer in enumerate(layers_shown):
      ax, h = axes[r, c], res["hidden"][layer - 1]
      positive, unit_means = h[h > 0], h.mean(axis=0)
      hi = max(float(np.percentile(positive, 99.5)) if positive.size else 0.0,
               float(unit_means.max()), 1e-12)
      top = 1.0 / hi
      if positive.size:
        density, *_ = ax.hist(positive, bins=40, range=(0.0, hi), density=True,
                              color="tab:blue", alpha=0.7)
        top = float(density.max())
      ax.hist(unit_means, bins=40, range=(0.0, hi), density=True, histtype="step",
              color="tab:red", lw=1.2)
      ax.plot(unit_means, np.zeros_like(unit_means), "|", color="tab:red", ms=8, mew=0.6)
      ax.set_xlim(0.0, hi)
      ax.set_ylim(0.0, 1.6 * top)  # a spike of unit means is cut, the blue stays readable
      ax.set_yticks([])
      ax.tick_params(labelsize="x-small")
      ax.set_title(f"layer {layer}: zeros {np.mean(h == 0):.0%}\n"
                   f"cos {res['cosine'][layer - 1]:.2f}, between-input "
                   f"{res['variance_fraction'][layer - 1]:.2f}", fontsize="x-small")
      if c == 0:
        ax.set_ylabel(label, fontsize="small")
  if title:
    fig.suptitle(title, fontsize="medium")
  if path:
    fig.savefig(path, format="png", dpi=90)
  return fig


def plot_constancy(results: dict[str, dict[str, Any]], path: str | None = None):
  """Mean cosine similarity and input-variance fraction per layer, one line per network."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(9, 3.2), layout="constrained")
  axes = fig.subplots(1, 2)
  for (label, res), color in zip(results.items(), ("tab:blue", "tab:orange", "tab:green")):
    layers_ = np.arange(1, len(res["cosine"]) + 1)
    axes[0].plot(layers_, res["cosine"], ".-", color=color, label=label)
    axes[1].plot(layers_, res["direction_variance_fraction"], ".-", color=color,
                 label=f"{label}, unit-length rows")
    axes[1].plot(layers_, res["variance_fraction"], ":", color=color, label=f"{label}, raw")
  first = next(iter(results.values()))
  axes[0].plot(np.arange(1, len(first["cosine"]) + 1), first["predicted_cosine"], "k--", lw=1,
               label="no BN, infinite-width prediction")
  axes[0].axhline(1 / math.pi, color="0.6", ls=":", lw=1, label="1/pi (independent units)")
  axes[0].set_title("mean cosine similarity between inputs", fontsize="medium")
  axes[1].set_title("between-input share of the layer's variance", fontsize="medium")
  for ax in axes:
    ax.set_xlabel("hidden layer")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="x-small")
  if path:
    fig.savefig(path, format="png", dpi=90)
  return fig


def plot_predictions(results: dict[str, dict[str, Any]], path: str | None = None):
  """Bar chart of the predicted classes (softmax argmax) at init, one panel per network."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(3.2 * len(results), 2.6), layout="constrained")
  axes = fig.subplots(1, len(results), squeeze=False)[0]
  for ax, (label, res) in zip(axes, results.items()):
    k = res["logits"].shape[-1]
    counts = np.bincount(res["logits"].argmax(-1), minlength=k)
    ax.bar(np.arange(k), counts / counts.sum())
    ax.set_xticks(np.arange(k))
    ax.set_ylim(0, 1)
    ax.set_title(f"{label}: {res['concentration']:.0%} get class {res['majority_class']}",
                 fontsize="small")
    ax.set_xlabel("predicted class")
  axes[0].set_ylabel("fraction of inputs")
  if path:
    fig.savefig(path, format="png", dpi=90)
  return fig


# ----------------------------------------------------------------------------------------------
# Part 2: training over learning rates and batch sizes.


def train_grid_cell(model: nn.Module, data: dict[str, dict[str, np.ndarray]], *,
                    learning_rates: Sequence[float], batch_size: int, num_epochs: int,
                    momentum: float, seed: int) -> dict[str, np.ndarray]:
  """Trains one model per learning rate at once (vmap; same init and batch order for all).

  Returns per-epoch arrays of shape (epochs, num_rates): ``train_loss`` and ``train_accuracy``
  (train mode, mean over the epoch's batches), ``test_loss`` and ``test_accuracy`` (eval mode:
  BN running averages), ``finite`` (no NaN/inf loss so far); and ``test_concentration`` (num_rates,)
  of the final model's predictions.
  """
  train, test = data["train"], data["test"]
  pre = preprocessing.fit("standardize", train["image"])
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=momentum)
  key = jax.random.PRNGKey(seed)
  states = []
  for lr in learning_rates:
    s = train_state.create_train_state(model, tx, key, train["image"].shape[1:])
    s.opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
    states.append(s)
  state = jax.tree.map(lambda *a: jnp.stack(a), *states)
  num_models = len(learning_rates)
  train_step = train_steps.make_train_step(model, tx, preprocess=pre, vmap_models=True)
  eval_step = train_steps.make_eval_step(model, preprocess=pre, vmap_models=True)
  steps_per_epoch = len(train["label"]) // batch_size
  images, labels = jnp.asarray(train["image"]), jnp.asarray(train["label"])
  test_batch = {"image": jnp.asarray(test["image"]), "label": jnp.asarray(test["label"])}

  # The data are arguments of the jitted functions: closed-over arrays would be compiled in as
  # constants (and constant-folded through the preprocessing).
  @jax.jit
  def epoch(state, images, labels, order):
    def body(state, idx):
      batch = {"image": images[idx], "label": labels[idx]}
      batch = jax.tree.map(lambda a: jnp.broadcast_to(a, (num_models, *a.shape)), batch)
      return train_step(state, batch)

    order = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
    state, metrics = jax.lax.scan(body, state, order)
    return state, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

  @jax.jit
  def evaluate(state, test_batch):
    sums = eval_step(state, test_batch)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = jax.vmap(lambda v: model.apply(v, pre(test_batch["image"]), train=False))(variables)
    conc = jax.vmap(lambda l: argmax_concentration(l)[0])(logits)
    return sums["loss"] / sums["count"], sums["correct"] / sums["count"], conc

  history = {k: [] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                             "finite")}
  finite = np.ones(num_models, bool)
  rng = np.random.default_rng(seed)
  for _ in range(num_epochs):
    order = jnp.asarray(rng.permutation(len(train["label"])))
    state, metrics = epoch(state, images, labels, order)
    test_loss, test_acc, conc = jax.device_get(evaluate(state, test_batch))
    loss = np.asarray(metrics["loss"])
    finite &= np.isfinite(loss) & np.isfinite(test_loss)
    history["train_loss"].append(loss)
    history["train_accuracy"].append(np.asarray(metrics["accuracy"]))
    history["test_loss"].append(np.asarray(test_loss))
    history["test_accuracy"].append(np.asarray(test_acc))
    history["finite"].append(finite.copy())
  out = {k: np.stack(v) for k, v in history.items()}
  out["test_concentration"] = np.asarray(conc)
  return out


def plot_training(grid: dict[tuple[str, int], dict[str, np.ndarray]], learning_rates,
                  batch_sizes, path: str | None = None, *, metric: str = "test_accuracy"):
  """Curves of ``metric`` per epoch: one panel per batch size, color = learning rate,
  solid = BN, dashed = no BN; a diverged run stops at its last finite epoch."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(3.2 * len(batch_sizes), 3.0), layout="constrained")
  axes = fig.subplots(1, len(batch_sizes), squeeze=False, sharey=True)[0]
  colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
  for ax, bs in zip(axes, batch_sizes):
    for (norm, b), hist in grid.items():
      if b != bs:
        continue
      for j, lr in enumerate(learning_rates):
        y = np.where(hist["finite"][:, j], hist[metric][:, j], np.nan)
        epochs = np.arange(1, len(y) + 1)
        ax.plot(epochs, y, "-" if norm != "none" else "--", marker=".",
                color=colors[j % len(colors)],
                label=f"{'BN' if norm != 'none' else 'no BN'}, lr {lr:g}")
    ax.set_title(f"batch size {bs}", fontsize="small")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
  axes[0].set_ylabel(metric.replace("_", " "))
  axes[-1].legend(fontsize="xx-small")
  if path:
    fig.savefig(path, format="png", dpi=90)
  return fig


# ----------------------------------------------------------------------------------------------
# The study.


def _norm_label(norm: str) -> str:
  return "no BN" if norm == "none" else ("BN" if norm == "batch" else norm)


def run(config, workdir: str) -> dict[str, Any]:
  """Writes ``batchnorm.md`` and the figures: activation histograms per layer with and without
  BN at init (``histograms.png``), the constancy metrics per layer (``constancy.png``), the
  predicted classes at init (``predictions.png``) and the training curves
  (``training_accuracy.png``, ``training_loss.png``).

  Returns {"init": {norm: {...metrics per layer...}}, "training": [row dicts], "table": path,
  "figures": [...]} (the per-layer activations are not returned).
  """
  os.makedirs(workdir, exist_ok=True)
  t0 = time.time()
  data = load_data(config)
  cfg = config.init
  depth = cfg.depth
  num_inputs = min(cfg.num_inputs, len(data["test"]["label"]))
  pre = preprocessing.fit("standardize", data["train"]["image"])
  x = pre(jnp.asarray(data["test"]["image"][:num_inputs])).reshape(num_inputs, -1)
  key = jax.random.PRNGKey(config.seed)

  init_results = {}
  rows = []
  for norm in config.norms:
    for kernel_init in cfg.kernel_inits:
      model = DeepMLP(depth=depth, width=cfg.width, num_classes=10, norm=norm,
                      kernel_init=kernel_init)
      res = init_analysis(model, key, x)
      last = res["hidden"][-1]
      rows.append((_norm_label(norm), kernel_init, float(res["cosine"][-1]),
                   float(res["variance_fraction"][-1]),
                   float(res["direction_variance_fraction"][-1]), float(np.std(last)),
                   res["concentration"], res["majority_class"], res["mean_max_prob"]))
      if kernel_init == cfg.kernel_inits[0]:
        init_results[_norm_label(norm)] = res
  shown = sorted({l for l in cfg.layers_shown if l <= depth} | {depth})
  figures = ["histograms.png", "constancy.png", "predictions.png"]
  plot_histograms(init_results, shown, os.path.join(workdir, figures[0]),
                  title=f"{depth}-layer ReLU MLP at init ({cfg.kernel_inits[0]}), {num_inputs} "
                        "inputs: nonzero activations (blue), unit means (red)")
  plot_constancy(init_results, os.path.join(workdir, figures[1]))
  plot_predictions(init_results, os.path.join(workdir, figures[2]))
  t_init = time.time() - t0

  dataset = "digits (8x8, offline)" if config.dataset == "digits" else config.dataset
  first = next(iter(init_results.values()))
  sections = [
      "# Batch normalization\n",
      f"## 1. A {depth}-layer ReLU MLP at initialization\n\n"
      f"Width {cfg.width}, zero biases, {num_inputs} {dataset} test images, standardized "
      "(one mean and std over all pixels of the training subset; mean cosine similarity "
      f"between the inputs themselves: {first['input_cosine']:.3f}). "
      "BN uses the batch's statistics (train mode). Last hidden layer: mean cosine similarity "
      "between the representations of different inputs; the between-input share of its variance "
      "(0: every unit constant over the inputs), raw and with each input's representation scaled "
      "to unit length (without biases the net is positively homogeneous, so an input's norm "
      "only scales its whole representation and cannot change the predicted class); the std of "
      "its activations; and the softmax: fraction of inputs given the most common class, which "
      "class, mean max probability.\n\n"
      + common.markdown_table(rows, ("network", "init", "cosine (last layer)",
                                     "between-input share (raw)", "between-input share (unit rows)",
                                     "activation std", "argmax concentration", "class",
                                     "mean max prob")),
      "Per layer (first init); the prediction is the infinite-width arc-cosine map of each "
      "pair's input cosine, for the network without BN:\n\n" + common.markdown_table(
          [(l, float(first["predicted_cosine"][l - 1]),
            *(float(r[k][l - 1]) for r in init_results.values()
              for k in ("cosine", "variance_fraction", "direction_variance_fraction")))
           for l in shown],
          ("layer", "predicted cosine",
           *(f"{lab}: {m}" for lab in init_results
             for m in ("cosine", "share (raw)", "share (unit rows)")))),
      "![histograms](histograms.png)\n\n![constancy](constancy.png)\n\n"
      "![predictions](predictions.png)\n",
  ]

  tr = config.train
  epochs = tr.num_epochs
  train_depth = tr.depth
  grid, train_rows = {}, []
  t1 = time.time()
  batch_sizes = tr.batch_sizes
  for norm in config.norms:
    for bs in batch_sizes:
      model = DeepMLP(depth=train_depth, width=tr.width, num_classes=10, norm=norm,
                      kernel_init=tr.kernel_init)
      hist = train_grid_cell(model, data, learning_rates=tr.learning_rates, batch_size=bs,
                             num_epochs=epochs, momentum=tr.momentum, seed=config.seed)
      grid[(norm, bs)] = hist
      print(f"batchnorm: trained {_norm_label(norm)}, batch size {bs}: test accuracy "
            f"{', '.join(f'{a:.3f}' for a in hist['test_accuracy'][-1])} at learning rates "
            f"{list(tr.learning_rates)} ({time.time() - t1:.0f} s)", flush=True)
      for j, lr in enumerate(tr.learning_rates):
        ok = bool(hist["finite"][-1, j])
        train_rows.append(dict(
            network=_norm_label(norm), batch_size=bs, learning_rate=lr, diverged=not ok,
            train_loss=float(hist["train_loss"][-1, j]) if ok else None,
            train_accuracy=float(hist["train_accuracy"][-1, j]) if ok else None,
            test_accuracy=float(hist["test_accuracy"][-1, j]) if ok else None,
            best_test_accuracy=float(np.nanmax(np.where(hist["finite"][:, j],
                                                        hist["test_accuracy"][:, j], np.nan)))
            if hist["finite"][0, j] else None,
            test_concentration=float(hist["test_concentration"][j]) if ok else None))
  t_train = time.time() - t1
  plot_training(grid, tr.learning_rates, batch_sizes,
                os.path.join(workdir, "training_accuracy.png"), metric="test_accuracy")
  plot_training(grid, tr.learning_rates, batch_sizes,
                os.path.join(workdir, "training_loss.png"), metric="train_loss")
  figures += ["training_accuracy.png", "training_loss.png"]
  headers = ("network", "batch size", "lr", "diverged", "train loss (last epoch)",
             "train acc. (train mode)", "test acc. (eval mode)", "best test acc.",
             "test argmax concentration")
  sections.append(
      f"## 2. Training with and without BN\n\n"
      f"{train_depth} hidden layers of width {tr.width} ({tr.kernel_init}), {dataset}: "
      f"{len(data['train']['label'])} training and {len(data['test']['label'])} test images, "
      f"{epochs} epochs of SGD (momentum {tr.momentum}, constant rate, no weight decay). Train "
      "loss/accuracy: mean over the last epoch's batches in train mode (BN with batch "
      "statistics); test: eval mode (BN with running averages). Diverged: a NaN/inf loss.\n\n"
      + common.markdown_table([tuple(r.values()) for r in train_rows], headers)
      + "\n\n![test accuracy](training_accuracy.png)\n\n![train loss](training_loss.png)\n")
  sections.append(f"Time on this machine: {t_init:.0f} s at init, {t_train:.0f} s training.\n")
  table = os.path.join(workdir, "batchnorm.md")
  with open(table, "w") as f:
    f.write("\n\n".join(sections))
  init_out = {lab: {k: v for k, v in res.items() if k not in ("hidden", "logits")}
              for lab, res in init_results.items()}
  for lab, res in init_results.items():
    print(f"batchnorm: {lab} at init: last-layer cosine {res['cosine'][-1]:.3f}, argmax "
          f"concentration {res['concentration']:.2f}", flush=True)
  return {"init": init_out, "init_rows": rows, "training": train_rows, "table": table,
          "figures": figures}
