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
without BN over a grid of learning rates and batch sizes (SGD with momentum, constant rate). The
learning rates of one batch size are one :class:`~jaxcnn.train.population.Population` (one
compiled step, the rate an injected hyperparameter of each model's optimizer), every model with
the same initialization and the same batches; one device-resident source serves the whole grid.
A rate at which a model diverges (NaN/inf loss) is recorded as diverged, the others train on. BN
tolerates larger rates; at tiny batches (2, 4) the batch statistics are noisy and differ from the
running averages used at test time, and BN's test accuracy falls behind (the small-batch
failure).

The networks are the registered ``deep_mlp`` (:class:`jaxcnn.models.mlp.MLP`); figures are
drawn by :mod:`jaxcnn.studies.batchnorm_plots`; :func:`run` returns a :class:`Results`.

References: Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift"; Ioffe 2017, "Batch Renormalization: Towards Reducing
Minibatch Dependence in Batch-Normalized Models"; Wu & He 2018, "Group Normalization" (Figure 1:
BN's error grows as the batch shrinks); He et al. 2015, "Delving Deep into Rectifiers"; Cho &
Saul 2009, "Kernel Methods for Deep Learning"; Schoenholz et al. 2017, "Deep Information
Propagation"; CS231n (Stanford), lecture "Training Neural Networks I" (batch normalization).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.data import preprocessing, sources
from jaxcnn.models import create_model
from jaxcnn.models.mlp import deep_mlp
from jaxcnn.nn import activations
from jaxcnn.studies import batchnorm_plots as plots
from jaxcnn.studies import common
from jaxcnn.train.population import Population

# ----------------------------------------------------------------------------------------------
# The network.

# The study's network: ``DeepMLP(depth, width, norm=..., kernel_init=...)`` builds the registered
# ``deep_mlp`` (depth x [Dense -> norm -> act], then a Dense classifier; no hidden bias when
# normalized).
DeepMLP = deep_mlp


def build_model(depth: int, width: int, *, norm: str, kernel_init: Any,
                num_classes: int = 10) -> nn.Module:
  """``create_model("deep_mlp", ...)``: ``depth`` hidden layers of ``width`` ReLU units."""
  return create_model("deep_mlp", depth=depth, width=width, norm=norm, kernel_init=kernel_init,
                      num_classes=num_classes)


def hidden_activations(model: nn.Module, variables: Any, x: jax.Array, *,
                       train: bool) -> tuple[list[jax.Array], jax.Array]:
  """Outputs of every hidden layer (after its activation) and the logits, for one batch.

  In train mode BatchNorm uses the batch's statistics (the running averages are not updated).
  """
  is_act = lambda module, method_name: isinstance(module, activations.Activation)
  logits, state = model.apply(variables, x, train=train, mutable=["batch_stats", "intermediates"],
                              capture_intermediates=is_act)
  inter = state["intermediates"]
  hidden = [inter[f"Activation_{i}"]["__call__"][0] for i in range(len(model.widths))]
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
  """uint8 images ``(N, H, W, C)`` and int32 labels of random train and test subsets
  (:func:`jaxcnn.data.sources.subsets`, seed ``config.seed``): ``config.dataset`` is the offline
  digits (8x8; quick setting) or MNIST from ``config.data_dir``."""
  return sources.subsets(config.dataset, {"train": config.num_train, "test": config.num_test},
                         seed=config.seed, data_dir=config.data_dir or None)


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
              predicted_cosine=predicted_cosine(np.asarray(x), len(model.widths)))


# ----------------------------------------------------------------------------------------------
# Part 2: training over learning rates and batch sizes.


@dataclasses.dataclass(frozen=True)
class GridCell:
  """One network and batch size, one model per learning rate; arrays ``(epochs, rates)``.

  Attributes:
    norm: the network's normalization spec (``"none"``: no BN).
    batch_size: examples per step.
    learning_rates: one per model.
    train_loss, train_accuracy: mean over the epoch's batches (train mode: BN with batch
      statistics).
    test_loss, test_accuracy: after each epoch (eval mode: BN with running averages).
    test_concentration: fraction of test images given the most common class, after each epoch.
    finite: no NaN/inf loss so far (False from the epoch a model diverged on).
    seconds: wall time of the cell (compilation included).
  """

  norm: str
  batch_size: int
  learning_rates: tuple[float, ...]
  train_loss: np.ndarray
  train_accuracy: np.ndarray
  test_loss: np.ndarray
  test_accuracy: np.ndarray
  test_concentration: np.ndarray
  finite: np.ndarray
  seconds: float

  @property
  def diverged(self) -> np.ndarray:
    """``(rates,)`` bool: the model diverged at some epoch."""
    return ~self.finite[-1]


def epoch_means(per_step: Any, steps_per_epoch: int) -> np.ndarray:
  """``(epochs, ...)`` means of ``(epochs * steps_per_epoch, ...)`` per-step values."""
  per_step = np.asarray(per_step, np.float64)
  if len(per_step) % steps_per_epoch:
    raise ValueError(f"{len(per_step)} steps are not whole epochs of {steps_per_epoch}.")
  return per_step.reshape(-1, steps_per_epoch, *per_step.shape[1:]).mean(axis=1)


def finite_by_epoch(step_losses: Any, eval_losses: Any, steps_per_epoch: int) -> np.ndarray:
  """``(epochs, models)``: every training loss up to the epoch's end and every evaluation loss
  so far finite (once a model diverges it stays diverged)."""
  ok = np.isfinite(np.asarray(step_losses)).reshape(-1, steps_per_epoch,
                                                    *np.shape(step_losses)[1:]).all(axis=1)
  ok &= np.isfinite(np.asarray(eval_losses))
  return np.logical_and.accumulate(ok, axis=0)


@functools.lru_cache(maxsize=16)
def _concentration_fn(model: nn.Module):
  """``fn(params, batch_stats, images, transform) -> (M,)``: the argmax concentration of each
  stacked model's eval-mode predictions on ``transform(images)`` (one compiled pass; one function
  per network, so the grid's cells of one network compile it once per population size)."""

  @jax.jit
  def fn(params, batch_stats, images, transform):
    x = transform(images)

    def one(p, b):
      return argmax_concentration(model.apply({"params": p, "batch_stats": b}, x, train=False))[0]

    return jax.vmap(one)(params, batch_stats)

  return fn


def grid_population(model: nn.Module, *, transform: Any, num_models: int,
                    momentum: float) -> Population:
  """The population :func:`train_grid_cell` trains: ``num_models`` copies of ``model`` on shared
  batches, SGD with momentum with the learning rate an injected hyperparameter of each."""
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=momentum)
  return Population(model, tx, num_models=num_models, preprocess=transform, shared_batch=True)


def train_grid_cell(model: nn.Module, source: sources.InMemory, *, transform: Any,
                    learning_rates: Sequence[float], batch_size: int, num_epochs: int,
                    momentum: float, seed: int, population: Population | None = None) -> GridCell:
  """Trains one model per learning rate as one population: the same init and batch order for all.

  Every model has seed ``seed`` (so the same initial variables) and trains on the same batches
  (``source`` must have ``shared_order=True``); SGD with momentum, the rate an injected
  hyperparameter per model. Evaluates on ``source``'s ``"test"`` split after every epoch. A model
  whose loss becomes NaN/inf is marked not ``finite`` from that epoch on; the others train on.
  ``population``: the :func:`grid_population` of these arguments from an earlier cell (another
  batch size, say), whose compiled init and evaluation are then reused; None builds one.
  """
  if not source.shared_order:
    raise ValueError("train_grid_cell needs a source with shared_order=True (one batch order).")
  rates = tuple(float(lr) for lr in learning_rates)
  m = len(rates)
  pop = population if population is not None else grid_population(
      model, transform=transform, num_models=m, momentum=momentum)
  if pop.num_models != m or pop.model != model:
    raise ValueError(f"population has {pop.num_models} copies of {type(pop.model).__name__}; "
                     f"this cell needs {m} of the given model.")
  state, data_keys = pop.init([seed] * m, source.input_shape,
                              hyperparams={"learning_rate": rates})
  concentration = _concentration_fn(model)
  test_images = source.splits["test"]["image"]
  steps_per_epoch = source.steps_per_epoch(batch_size)
  _, h = pop.train(
      state, data_keys, source, num_steps=num_epochs * steps_per_epoch, batch_size=batch_size,
      eval_every=steps_per_epoch, eval_splits=("test",),
      measure=lambda s: {"test_concentration": concentration(s.params, s.batch_stats,
                                                             test_images, transform)},
      labels=[f"lr {lr:g}" for lr in rates], stop_on_nonfinite=False)
  return GridCell(
      norm=str(getattr(model, "norm", "none")), batch_size=int(batch_size), learning_rates=rates,
      train_loss=epoch_means(h["train_loss"], steps_per_epoch),
      train_accuracy=epoch_means(h["train_accuracy"], steps_per_epoch),
      test_loss=np.asarray(h["test_loss"], np.float64),
      test_accuracy=np.asarray(h["test_accuracy"], np.float64),
      test_concentration=np.asarray(h["test_concentration"], np.float64),
      finite=finite_by_epoch(h["train_loss"], h["test_loss"], steps_per_epoch),
      seconds=float(h["seconds"]))


def training_rows(cell: GridCell) -> list[dict[str, Any]]:
  """One report row per learning rate of a cell (None for the metrics of a diverged run)."""
  rows = []
  for j, lr in enumerate(cell.learning_rates):
    ok = bool(cell.finite[-1, j])
    last = lambda a: float(a[-1, j]) if ok else None  # noqa: E731
    best = (float(np.nanmax(np.where(cell.finite[:, j], cell.test_accuracy[:, j], np.nan)))
            if cell.finite[0, j] else None)
    rows.append(dict(network=_norm_label(cell.norm), batch_size=cell.batch_size,
                     learning_rate=lr, diverged=not ok, train_loss=last(cell.train_loss),
                     train_accuracy=last(cell.train_accuracy),
                     test_accuracy=last(cell.test_accuracy), best_test_accuracy=best,
                     test_concentration=last(cell.test_concentration)))
  return rows


# ----------------------------------------------------------------------------------------------
# Results.


@dataclasses.dataclass(frozen=True)
class Results:
  """What the report shows.

  Attributes:
    init: ``{network label: metrics per layer}`` at init for the first kernel init
      (:func:`init_analysis` without the activations and logits).
    init_rows: one dict per (network, kernel init): the last hidden layer's metrics.
    training: one dict per (network, batch size, learning rate) (:func:`training_rows`).
    cells: the grid's :class:`GridCell` histories.
    table: the report's path; figures: the figures' file names (in the run folder).
    seconds_init, seconds_train: wall time of the two parts.
  """

  init: dict[str, dict[str, Any]]
  init_rows: list[dict[str, Any]]
  training: list[dict[str, Any]]
  cells: tuple[GridCell, ...]
  table: str
  figures: tuple[str, ...]
  seconds_init: float
  seconds_train: float

  def to_dict(self) -> dict[str, Any]:
    """JSON-able (:func:`jaxcnn.studies.common.jsonable`): arrays as lists, non-finite floats as
    None."""
    return common.jsonable(self)


# ----------------------------------------------------------------------------------------------
# The study.


def _norm_label(norm: str) -> str:
  return "no BN" if norm == "none" else ("BN" if norm == "batch" else norm)


def run(config, workdir: str) -> Results:
  """Writes ``batchnorm.md``, ``results.json`` and the figures: activation histograms per layer
  with and without BN at init (``histograms.png``), the constancy metrics per layer
  (``constancy.png``), the predicted classes at init (``predictions.png``) and the training
  curves (``training_accuracy.png``, ``training_loss.png``).
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

  init_results, init_rows = {}, []
  for norm in config.norms:
    for kernel_init in cfg.kernel_inits:
      model = build_model(depth, cfg.width, norm=norm, kernel_init=kernel_init)
      res = init_analysis(model, key, x)
      last = res["hidden"][-1]
      init_rows.append(dict(
          network=_norm_label(norm), init=kernel_init, cosine=float(res["cosine"][-1]),
          variance_fraction=float(res["variance_fraction"][-1]),
          direction_variance_fraction=float(res["direction_variance_fraction"][-1]),
          activation_std=float(np.std(last)), concentration=res["concentration"],
          majority_class=res["majority_class"], mean_max_prob=res["mean_max_prob"]))
      if kernel_init == cfg.kernel_inits[0]:
        init_results[_norm_label(norm)] = res
  shown = sorted({l for l in cfg.layers_shown if l <= depth} | {depth})
  figures = ["histograms.png", "constancy.png", "predictions.png"]
  plots.plot_histograms(init_results, shown, os.path.join(workdir, figures[0]),
                        title=f"{depth}-layer ReLU MLP at init ({cfg.kernel_inits[0]}), "
                              f"{num_inputs} inputs: nonzero activations (blue), unit means (red)")
  plots.plot_constancy(init_results, os.path.join(workdir, figures[1]))
  plots.plot_predictions(init_results, os.path.join(workdir, figures[2]))
  t_init = time.time() - t0

  dataset = "digits (8x8, offline)" if config.dataset == "digits" else config.dataset
  first = next(iter(init_results.values()))
  report = common.Report("Batch normalization")
  report.section(f"1. A {depth}-layer ReLU MLP at initialization").table(
      [tuple(r.values()) for r in init_rows],
      ("network", "init", "cosine (last layer)", "between-input share (raw)",
       "between-input share (unit rows)", "activation std", "argmax concentration", "class",
       "mean max prob"),
      caption=f"Width {cfg.width}, zero biases, {num_inputs} {dataset} test images, standardized "
      "(one mean and std over all pixels of the training subset; mean cosine similarity "
      f"between the inputs themselves: {first['input_cosine']:.3f}). "
      "BN uses the batch's statistics (train mode). Last hidden layer: mean cosine similarity "
      "between the representations of different inputs; the between-input share of its variance "
      "(0: every unit constant over the inputs), raw and with each input's representation scaled "
      "to unit length (without biases the net is positively homogeneous, so an input's norm "
      "only scales its whole representation and cannot change the predicted class); the std of "
      "its activations; and the softmax: fraction of inputs given the most common class, which "
      "class, mean max probability.")
  report.table(
      [(l, float(first["predicted_cosine"][l - 1]),
        *(float(r[k][l - 1]) for r in init_results.values()
          for k in ("cosine", "variance_fraction", "direction_variance_fraction")))
       for l in shown],
      ("layer", "predicted cosine",
       *(f"{lab}: {m}" for lab in init_results
         for m in ("cosine", "share (raw)", "share (unit rows)"))),
      caption="Per layer (first init); the prediction is the infinite-width arc-cosine map of "
      "each pair's input cosine, for the network without BN:")
  for f in figures:
    report.figure(f, alt=f.removesuffix(".png"))

  tr = config.train
  t1 = time.time()
  # One source for the whole grid: on the device once, any batch size, one batch order.
  source = sources.InMemory(data, shared_order=True)
  cells, train_rows = [], []
  for norm in config.norms:
    model = build_model(tr.depth, tr.width, norm=norm, kernel_init=tr.kernel_init)
    # One population per network for all batch sizes: its init and evaluation compile once.
    pop = grid_population(model, transform=pre, num_models=len(tr.learning_rates),
                          momentum=tr.momentum)
    for bs in tr.batch_sizes:
      cell = train_grid_cell(model, source, transform=pre, learning_rates=tr.learning_rates,
                             batch_size=bs, num_epochs=tr.num_epochs, momentum=tr.momentum,
                             seed=config.seed, population=pop)
      cells.append(cell)
      train_rows += training_rows(cell)
      print(f"batchnorm: trained {_norm_label(norm)}, batch size {bs}: test accuracy "
            f"{', '.join(f'{a:.3f}' for a in cell.test_accuracy[-1])} at learning rates "
            f"{list(tr.learning_rates)}"
            + (f", diverged at {[lr for lr, d in zip(cell.learning_rates, cell.diverged) if d]}"
               if cell.diverged.any() else "") + f" ({time.time() - t1:.0f} s)", flush=True)
  t_train = time.time() - t1
  plots.plot_training(cells, os.path.join(workdir, "training_accuracy.png"),
                      metric="test_accuracy")
  plots.plot_training(cells, os.path.join(workdir, "training_loss.png"), metric="train_loss")
  figures += ["training_accuracy.png", "training_loss.png"]
  headers = ("network", "batch size", "lr", "diverged", "train loss (last epoch)",
             "train acc. (train mode)", "test acc. (eval mode)", "best test acc.",
             "test argmax concentration")
  report.section("2. Training with and without BN").table(
      [tuple(r.values()) for r in train_rows], headers,
      caption=f"{tr.depth} hidden layers of width {tr.width} ({tr.kernel_init}), {dataset}: "
      f"{len(data['train']['label'])} training and {len(data['test']['label'])} test images, "
      f"{tr.num_epochs} epochs of SGD (momentum {tr.momentum}, constant rate, no weight decay); "
      "the learning rates of one batch size train as one population, from the same init on the "
      "same batches. Train loss/accuracy: mean over the last epoch's batches in train mode (BN "
      "with batch statistics); test: eval mode (BN with running averages). Diverged: a NaN/inf "
      "loss.")
  report.figure("training_accuracy.png", alt="test accuracy")
  report.figure("training_loss.png", alt="train loss")
  report.text(f"Time on this machine: {t_init:.0f} s at init, {t_train:.0f} s training.")
  table = report.write(os.path.join(workdir, "batchnorm.md"))
  init_out = {lab: {k: v for k, v in res.items() if k not in ("hidden", "logits")}
              for lab, res in init_results.items()}
  for lab, res in init_results.items():
    print(f"batchnorm: {lab} at init: last-layer cosine {res['cosine'][-1]:.3f}, argmax "
          f"concentration {res['concentration']:.2f}", flush=True)
  results = Results(init=init_out, init_rows=init_rows, training=train_rows, cells=tuple(cells),
                    table=table, figures=tuple(figures), seconds_init=t_init,
                    seconds_train=t_train)
  common.save_results(results, workdir)
  return results
