"""Weight initialization: activation and gradient statistics of deep nets under seven inits.

Three parts.

(a) The CS231n experiment (reused from :mod:`jaxcnn.studies.init_study`): a 10-layer bias-free
MLP fed unit-Gaussian inputs under ``normal(0.01)``, ``normal(1.0)``, Xavier and Kaiming, with tanh
and ReLU. Each layer multiplies the activation scale by about ``stddev * sqrt(width)`` times the
nonlinearity's gain, so small weights vanish, large ones saturate (tanh) or explode (ReLU),
Xavier holds tanh and Kaiming holds ReLU.

(b) Deep ReLU networks without normalization, trained on real images: a plain CNN laid out like a
CIFAR ResNet (the registered ``plain_cnn``, :class:`jaxcnn.models.small_cnns.PlainCNN`,
``6n + 2`` weight layers) and the CIFAR ResNet itself (``resnet20`` with ``norm="none"`` and the
depth of ``stage_sizes``), initialized by

* ``normal(stddev=0.01)``: activations shrink by ``~0.01 sqrt(9 C / 2)`` per layer;
* ``xavier_normal`` (Glorot): variance-preserving for linear/tanh units, loses half the variance
  per ReLU layer;
* ``kaiming_normal`` (He): ``N(0, 2 / fan_in)``, preserves the second moment through ReLU;
* ``orthogonal(gain=sqrt 2)`` (Saxe et al.): same scale as Kaiming, orthonormal columns;
* ``lsuv`` (Mishkin & Matas): orthogonal, then each layer rescaled until its output has std 1 on a
  batch, input to output (:func:`jaxcnn.nn.init_procedures.lsuv`);
* ``kraehenbuehl`` (Kraehenbuehl et al.): from ``normal(0.01)``, every unit of every layer
  rescaled and shifted to mean 0 and std 1 on a batch (:func:`jaxcnn.nn.init_procedures.kraehenbuehl`);
* ``fixup`` (Zhang et al., residual only): the last layer of every branch and the classifier at
  zero, the other branch layers He-initialized and scaled by ``L ** (-1 / (2m - 2))``, scalar
  biases and multipliers: at initialization every residual block is its shortcut.

For each (architecture, init) we record per layer the std of every activation and the norm of the
loss gradient with respect to every weight kernel (:func:`jaxcnn.diagnostics.network_stats`), at
initialization and after a short SGD run, and the test accuracy. The inits of one architecture
train through one :class:`jaxcnn.train.population.Population` (one compiled step) from the init
procedures' variables (Fixup, a different network, has its own), one init at a time or all
together as one population (``config.deep.together``).

(c) Symmetry: with every weight equal (``constant(0.5)``) and zero biases, all units of a hidden
layer compute the same value and receive the same gradient, so gradient descent keeps them equal
forever: the layer is one unit repeated. :func:`symmetry_run` trains the registered ``mlp``
with :meth:`Population.train` and measures (its ``measure`` at every step) the largest spread
across the units of each hidden layer (activations, kernels, kernel gradients); random init has
units that differ from the start.

References: CS231n (Stanford), lecture "Training Neural Networks I"; Glorot & Bengio 2010,
"Understanding the difficulty of training deep feedforward neural networks"; He et al. 2015,
"Delving Deep into Rectifiers"; Saxe et al. 2013, "Exact solutions to the nonlinear dynamics of
learning in deep linear neural networks"; Mishkin & Matas 2015, "All you need is a good init";
Kraehenbuehl et al. 2015, "Data-dependent Initializations of Convolutional Neural Networks";
Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without Normalization".
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
from jaxcnn.diagnostics import network_stats
from jaxcnn.models import create_model
from jaxcnn.nn import activations, init_procedures, initializers
from jaxcnn.studies import common, init_study
from jaxcnn.studies import initialization_plots as plots
from jaxcnn.studies.initialization_plots import init_label
from jaxcnn.train.population import Population
from jaxcnn.train.steps import cross_entropy

__all__ = ["ARCHS", "PROCEDURES", "Results", "build_model", "check_init", "init_label",
           "init_network", "load_splits", "network_stats", "run", "symmetry_population",
           "symmetry_run", "train_inits", "unit_spread"]

ARCHS = ("plain", "residual")
PROCEDURES = ("lsuv", "kraehenbuehl", "fixup")  # whole-network inits; the rest are initializer specs
RESIDUAL_ONLY = ("fixup",)
# Kernel initializer each procedure starts from (LSUV redraws orthogonal kernels itself).
PROCEDURE_BASE = {"lsuv": "orthogonal", "kraehenbuehl": "normal(stddev=0.01)",
                  "fixup": "kaiming_normal"}

# ----------------------------------------------------------------------------------------------
# Networks and inits.


def check_init(arch: str, init: str) -> None:
  """Raises a ValueError for an unknown architecture, an unknown init, or Fixup on a plain net."""
  if arch not in ARCHS:
    raise ValueError(f"Unknown architecture {arch!r}. Known: {', '.join(ARCHS)}.")
  if init in RESIDUAL_ONLY and arch != "residual":
    raise ValueError(f"{init} initializes residual networks only, not {arch!r}.")
  if init not in PROCEDURES:
    initializers.get(init)  # ValueError listing the known initializers


def build_model(arch: str, init: str, *, stage_sizes: Sequence[int] = (3, 3, 3),
                num_filters: int = 16, num_classes: int = 10, act: Any = "relu") -> nn.Module:
  """The network ``arch`` ("plain" or "residual") with the kernel initializer of ``init``.

  "plain" is the registered ``plain_cnn``; "residual" the CIFAR ResNet ``resnet20`` (3x3 stem,
  basic blocks, zero-padding shortcuts) with these ``stage_sizes`` and without normalization;
  ``init="fixup"`` builds its Fixup version. For ``lsuv`` and ``kraehenbuehl`` the kernels start
  from ``PROCEDURE_BASE`` and :func:`init_network` finishes the job.
  """
  check_init(arch, init)
  kernel_init = PROCEDURE_BASE.get(init, init)
  common_fields = dict(stage_sizes=tuple(stage_sizes), num_filters=num_filters,
                       num_classes=num_classes, act=act, kernel_init=kernel_init)
  if arch == "plain":
    return create_model("plain_cnn", **common_fields)
  return create_model("resnet20", stem_features=num_filters, norm="none",
                      fixup=init == "fixup", **common_fields)


def init_network(arch: str, init: str, key: jax.Array, batch: jax.Array,
                 **model_kwargs: Any) -> tuple[nn.Module, Any]:
  """``(model, variables)`` of ``arch`` initialized by ``init``; ``batch`` (preprocessed images)
  drives the data-dependent procedures (LSUV, Kraehenbuehl) and fixes the input shape.

  On CPU, XLA compiles ``jax.random.normal`` for the default threefry keys in about 2 s per
  kernel shape; a ``jax.random.key(seed, impl="rbg")`` key compiles about 10x faster (the study
  uses one; any key works).
  """
  model = build_model(arch, init, **model_kwargs)
  variables = model.init(key, batch[:1], train=False)
  apply_fn = lambda v, x: model.apply(v, x, train=False)  # noqa: E731
  if init == "lsuv":
    # LSUV's orthogonal kernels come from a threefry key: its vmapped draw with an "rbg" key
    # hung on XLA:CPU (jax 0.10.2, 20-layer net; measured).
    seed = jax.random.randint(jax.random.fold_in(key, 1), (), 0, 2**31 - 1)
    variables = init_procedures.lsuv(apply_fn, variables, batch, key=jax.random.key(int(seed)))
  elif init == "kraehenbuehl":
    variables = init_procedures.kraehenbuehl(apply_fn, variables, batch)
  return model, variables

# ----------------------------------------------------------------------------------------------
# Training.


def train_inits(model: nn.Module, variables: Sequence[Any], source: Any, *, preprocess: Any,
                learning_rate: float, momentum: float, batch_size: int, num_epochs: int,
                seed: int = 0, together: bool = False, labels: Sequence[str] | None = None
                ) -> tuple[list[Any], list[dict[str, Any]]]:
  """Trains ``model`` from each of ``variables`` (one per init) with one :class:`Population`.

  SGD with momentum at a constant rate, no weight decay; every model sees the same batches (one
  seed); a loss that becomes NaN/inf is recorded, not raised. Evaluates the ``test`` split after
  every epoch. ``together``: all inits as one population of ``len(variables)`` models (one
  vmapped step: for accelerators); otherwise one model at a time through the same population,
  so the step still compiles once (on XLA:CPU six vmapped 20-layer conv nets ran 3.7x slower
  than six runs of one; measured). The step loop is Python (:meth:`Population.steps`): on
  XLA:CPU a ``lax.scan`` over the same conv-net step ran 10x slower (measured).

  Returns:
    The trained variables and a history per init: ``loss`` per step, ``test_accuracy`` per
    epoch, ``seconds`` (its population's wall time, compilation included).
  """
  tx = optax.sgd(learning_rate, momentum=momentum or None)
  groups = [list(range(len(variables)))] if together else [[m] for m in range(len(variables))]
  pop = Population(model, tx, num_models=len(groups[0]), preprocess=preprocess)
  steps_per_epoch = source.steps_per_epoch(batch_size)
  trained, histories = [None] * len(variables), [None] * len(variables)
  for group in groups:
    # Stacked on the host: jnp.stack would compile one program per parameter shape.
    stacked = jax.tree.map(lambda *v: np.stack(v), *[{"params": variables[m]["params"]}
                                                      for m in group])
    state, data_keys = pop.init([seed] * len(group), source.input_shape, variables=stacked)
    state, hist = pop.train(state, data_keys, source, num_steps=num_epochs * steps_per_epoch,
                            batch_size=batch_size, eval_every=steps_per_epoch,
                            eval_splits=("test",), stop_on_nonfinite=False,
                            labels=None if labels is None else [labels[m] for m in group])
    params = jax.device_get(state.params)
    for i, m in enumerate(group):
      trained[m] = {**variables[m], "params": jax.tree.map(lambda a, i=i: a[i], params)}
      histories[m] = {"loss": hist["train_loss"][:, i],
                      "test_accuracy": hist["test_accuracy"][:, i],
                      "seconds": float(hist["seconds"])}
  return trained, histories


# ----------------------------------------------------------------------------------------------
# (c) Symmetry under constant init.


def unit_spread(values: Any) -> float:
  """Largest spread across units: ``max_i (max_j v[i, j] - min_j v[i, j])`` with units ``j`` on
  the last axis (activations ``(N, units)``, kernels ``(in, units)``); 0 iff all units agree."""
  values = np.asarray(values, np.float64)
  if values.ndim < 2 or values.shape[-1] < 2:
    raise ValueError(f"unit_spread needs at least 2 units on the last axis, got shape {values.shape}.")
  values = values.reshape(-1, values.shape[-1])
  return float(np.max(values.max(axis=-1) - values.min(axis=-1)))


@functools.lru_cache(maxsize=8)
def _symmetry_probe(model: nn.Module, num_hidden: int):
  """A jitted ``(params, x, labels) -> {act_i, kernel_i, grad_i}`` over a leading model axis:
  each hidden layer's activations on ``x``, its kernel, and the kernel's gradient of the loss on
  ``(x, labels)``."""
  def one(params, x, labels):
    def loss_fn(params):
      logits, state = model.apply(
          {"params": params}, x, train=False, mutable=["intermediates"],
          capture_intermediates=lambda m, _: isinstance(m, activations.Activation))
      inter = state["intermediates"]
      hidden = [inter[f"Activation_{i}"]["__call__"][0] for i in range(num_hidden)]
      return cross_entropy(logits, labels).mean(), hidden

    (_, hidden), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    out = {}
    for i in range(num_hidden):
      out[f"act_{i}"] = hidden[i]
      out[f"kernel_{i}"] = params[f"Dense_{i}"]["kernel"]
      out[f"grad_{i}"] = grads[f"Dense_{i}"]["kernel"]
    return out

  return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def symmetry_population(widths: Sequence[int], num_classes: int, learning_rate: float,
                        preprocess: Any = None) -> Population:
  """The population :func:`symmetry_run` trains: the registered ``mlp`` (ReLU) by plain SGD. Its
  kernel initializer acts in init only, so one population trains every init (one compiled step)."""
  model = create_model("mlp", widths=tuple(widths), num_classes=num_classes, act="relu")
  return Population(model, optax.sgd(learning_rate), preprocess=preprocess)


def symmetry_run(init: str, source: Any, *, preprocess: Any = None, widths: Sequence[int],
                 num_steps: int, learning_rate: float, batch_size: int,
                 seed: int = 0, population: Population | None = None) -> dict[str, Any]:
  """Trains the registered ``mlp`` (``kernel_init=init``, ReLU, zero biases) by plain SGD with
  :meth:`Population.train` and tracks symmetry at every step (its ``measure``, ``eval_every=1``).

  Args:
    init: kernel initializer spec, e.g. ``"constant(value=0.5)"`` or ``"kaiming_normal"``.
    source: a :mod:`jaxcnn.data.sources` source (its ``test`` split, if any, gives a final
      accuracy).
    preprocess: the transform of the source's images (e.g. a fitted ``standardize``).
    widths: hidden widths.
    num_steps: SGD steps on batches of ``batch_size`` (the source's order for ``seed``).
    learning_rate: SGD step size.
    population: the :func:`symmetry_population` of these arguments from another init's run,
      whose compiled programs are then reused; None builds one.

  Returns:
    ``{"act_spread": (steps + 1, layers), "kernel_spread": (steps + 1, layers),
    "grad_spread": (steps + 1, layers)`` (:func:`unit_spread` of each hidden layer's activations
    on the first ``batch_size`` training examples (the probe), of its kernel, and of its kernel's
    gradient on the probe, before training and after every step), ``"loss"`` (steps,) of the
    training batches, ``"active_fraction"`` (layers,): the fraction of positive activations on the
    probe after training (0 would make equal units trivial), ``"hidden_first"``: the first hidden
    layer's activations on 16 examples before and after training, ``"test_accuracy"`` (or None),
    ``"params"``: the trained parameters}.
  """
  num_classes = source.max_label + 1
  model = create_model("mlp", widths=tuple(widths), num_classes=num_classes, act="relu",
                       kernel_init=init)
  pop = population if population is not None else symmetry_population(
      widths, num_classes, learning_rate, preprocess)
  if pop.model.clone(kernel_init=init) != model:
    raise ValueError(f"population trains another network than the mlp of widths "
                     f"{tuple(widths)} with {num_classes} classes.")
  # The initial state of this init's network; the training in the shared population.
  state, data_keys = Population(model, pop.tx, preprocess=preprocess).init([seed],
                                                                          source.input_shape)
  train = source.splits["train"]
  probe_images = train["image"][:batch_size]
  probe_x = probe_images.astype(jnp.float32) if preprocess is None else preprocess(probe_images)
  probe_y = train["label"][:batch_size]
  probe = _symmetry_probe(pop.model, len(widths))
  state, hist = pop.train(state, data_keys, source, num_steps=num_steps, batch_size=batch_size,
                          eval_every=1, eval_splits=(), eval_at_start=True,
                          measure=lambda s: probe(s.params, probe_x, probe_y))
  layers = range(len(widths))
  spread = lambda name: np.asarray([[unit_spread(v[0]) for v in hist[f"{name}_{i}"]]  # noqa: E731
                                    for i in layers]).T
  last = [np.asarray(hist[f"act_{i}"][-1, 0]) for i in layers]
  accuracy = None
  if "test" in source.splits:
    accuracy = float(pop.evaluate(state, source, "test")["accuracy"][0])
  return {"act_spread": spread("act"), "kernel_spread": spread("kernel"),
          "grad_spread": spread("grad"), "loss": hist["train_loss"][:, 0],
          "active_fraction": np.asarray([float(np.mean(h > 0)) for h in last]),
          "hidden_first": (np.asarray(hist["act_0"][0, 0, :16]), last[0][:16]),
          "test_accuracy": accuracy,
          "params": jax.tree.map(lambda a: a[0], jax.device_get(state.params))}


# ----------------------------------------------------------------------------------------------
# Data and results.


def load_splits(config) -> dict[str, dict[str, np.ndarray]]:
  """Random train and test subsets (:func:`jaxcnn.data.sources.subsets`; size 0: the whole
  split) of ``config.dataset``: uint8 images ``(N, H, W, C)`` and int32 labels."""
  return sources.subsets(config.dataset, {"train": config.num_train, "test": config.num_test},
                         seed=config.seed, data_dir=config.data_dir or None)


@dataclasses.dataclass(frozen=True)
class Results:
  """What the report shows.

  Attributes:
    mlp: part (a), one :class:`jaxcnn.studies.init_study.Case` per (nonlinearity, init).
    deep: part (b), ``{arch: {init: {"init": stats, "trained": stats, "history": {"loss",
      "test_accuracy", "seconds"}}}}`` with :func:`jaxcnn.diagnostics.network_stats` stats.
    symmetry: part (c), ``{init: symmetry_run(...)}``.
    table: the report's path; figures: the figures' file names (in the run folder).
    seconds: wall time.
  """

  mlp: list[init_study.Case]
  deep: dict[str, dict[str, dict[str, Any]]]
  symmetry: dict[str, dict[str, Any]]
  table: str
  figures: tuple[str, ...]
  seconds: float

  def to_dict(self) -> dict[str, Any]:
    """JSON-able (:func:`jaxcnn.studies.common.jsonable`; trained parameters left out)."""
    return common.jsonable(dataclasses.replace(self, symmetry={
        init: {k: v for k, v in r.items() if k != "params"} for init, r in self.symmetry.items()}))


# ----------------------------------------------------------------------------------------------
# The study.


def _fmt(value: float) -> str:
  return "nan" if not np.isfinite(value) else f"{value:.3g}"


def _deep_row(arch: str, init: str, r: dict[str, Any]) -> list[Any]:
  s0, s1, h = r["init"], r["trained"], r["history"]
  final_loss = float(np.mean(h["loss"][-max(1, len(h["loss"]) // 10):]))
  return [arch, init_label(init), _fmt(s0["act_std"][0]), _fmt(s0["act_std"][-1]),
          _fmt(s0["grad_norm"][0]), _fmt(s0["grad_norm"][-1]), _fmt(s1["act_std"][-1]),
          _fmt(s1["grad_norm"][0]), _fmt(final_loss) if np.isfinite(final_loss) else "diverged",
          f"{100 * h['test_accuracy'][-1]:.1f}"]


def run(config, workdir: str) -> Results:
  """Runs parts (a), (b), (c); writes ``initialization.md``, ``results.json`` and the figures
  ``mlp_std_by_layer.png``, ``deep_at_init.png``, ``deep_after_training.png``,
  ``deep_training.png``, ``symmetry.png``."""
  q = config.get("quick", False)
  pick = lambda section, name: section[name]  # noqa: E731
  dpi = config.dpi
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  figures = []

  # (a) The CS231n MLP experiment.
  m = config.mlp
  cases = init_study.run_init_study(
      nonlinearities=tuple(m.nonlinearities), inits=tuple(m.inits), num_layers=m.num_layers,
      width=pick(m, "width"), num_samples=pick(m, "num_samples"), seed=config.seed)
  plots.plot_std_by_layer(cases, os.path.join(workdir, "mlp_std_by_layer.png"), dpi=dpi)
  figures.append("mlp_std_by_layer.png")

  # (b) Deep plain and residual nets.
  data = load_splits(config)
  source = sources.InMemory(data)
  d = config.deep
  pre = preprocessing.fit("standardize", data["train"]["image"])
  probe_x = pre(jnp.asarray(data["train"]["image"][:config.stats_batch]))
  probe_y = jnp.asarray(data["train"]["label"][:config.stats_batch])
  arch_kwargs = dict(stage_sizes=tuple(pick(d, "stage_sizes")),
                     num_filters=pick(d, "num_filters"), num_classes=10, act=d.act)
  num_epochs = pick(d, "num_epochs")
  inits = pick(d, "inits")
  deep: dict[str, dict[str, dict[str, Any]]] = {}
  for arch in d.archs:
    deep[arch] = {}
    # One population per network: the kernel initializer is not used by apply, so every init
    # but Fixup (a network of its own) trains as one model of the "kaiming_normal" network.
    groups: dict[bool, list[str]] = {}
    for init in inits:
      if init in RESIDUAL_ONLY and arch != "residual":
        continue
      groups.setdefault(init == "fixup", []).append(init)
    for fixup, names in groups.items():
      canonical = build_model(arch, "fixup" if fixup else "kaiming_normal", **arch_kwargs)
      variables, at_init = [], []
      for init in names:
        key = jax.random.key(config.seed, impl="rbg")  # see init_network on "rbg"
        _, v = init_network(arch, init, key, probe_x, **arch_kwargs)
        variables.append(v)
        at_init.append(network_stats(canonical, v, probe_x, probe_y))
      trained, histories = train_inits(
          canonical, variables, source, preprocess=pre, learning_rate=d.learning_rate,
          momentum=d.momentum, batch_size=d.batch_size, num_epochs=num_epochs, seed=config.seed,
          together=d.together, labels=[init_label(i) for i in names])
      for init, s0, v, h in zip(names, at_init, trained, histories):
        after = network_stats(canonical, v, probe_x, probe_y)
        deep[arch][init] = {"init": s0, "trained": after, "history": h}
        print(f"initialization: {arch:8s} {init_label(init):18s} act std {s0['act_std'][0]:.3g}"
              f" -> {s0['act_std'][-1]:.3g}, test acc {h['test_accuracy'][-1]:.3f} "
              f"({h['seconds']:.0f} s)", flush=True)
    deep[arch] = {init: deep[arch][init] for init in inits if init in deep[arch]}
  for when, png in (("init", "deep_at_init.png"), ("trained", "deep_after_training.png")):
    plots.plot_layer_stats(deep, when, os.path.join(workdir, png), dpi=dpi)
    figures.append(png)
  plots.plot_training({a: {i: r["history"] for i, r in v.items()} for a, v in deep.items()},
                      os.path.join(workdir, "deep_training.png"), dpi=dpi)
  figures.append("deep_training.png")

  # (c) Symmetry of constant init.
  s = config.symmetry
  sym_pop = symmetry_population(s.widths, source.max_label + 1, s.learning_rate, pre)
  sym = {init: symmetry_run(init, source, preprocess=pre, widths=tuple(s.widths),
                            num_steps=pick(s, "num_steps"), learning_rate=s.learning_rate,
                            batch_size=s.batch_size, seed=config.seed, population=sym_pop)
         for init in s.inits}
  plots.plot_symmetry(sym, os.path.join(workdir, "symmetry.png"), dpi=dpi)
  figures.append("symmetry.png")

  # The report.
  where = ("offline digits (8x8)" if config.dataset == "digits" else
            f"{config.dataset} from {config.data_dir}")
  n_train, n_test = len(data["train"]["label"]), len(data["test"]["label"])
  depth = 2 * sum(arch_kwargs["stage_sizes"]) + 2
  filters = "/".join(str(arch_kwargs["num_filters"] * 2**i)
                     for i in range(len(arch_kwargs["stage_sizes"])))
  report = common.Report("Weight initialization")
  report.text(
      f"Data: {where}, {n_train} train / {n_test} test images (random subsets, seed "
      f"{config.seed}), standardized. Run took {time.time() - start:.0f} s"
      + (" (quick setting)." if q else "."))
  report.section(f"(a) {m.num_layers}-layer MLP on unit-Gaussian inputs (CS231n)").text(
      f"Width {pick(m, 'width')}, no biases, {pick(m, 'num_samples')} samples "
      "(jaxcnn.studies.init_study). xavier_normal equals CS231n's randn / sqrt(fan_in) here "
      "(square layers).", init_study.summary_table(cases))
  report.figure("mlp_std_by_layer.png")
  report.section(f"(b) {depth}-layer plain and residual ReLU nets without normalization").text(
      f"{depth} weight layers (3x3 convolutions, {filters} filters, blocks per stage "
      f"{arch_kwargs['stage_sizes']}); residual = CIFAR ResNet with zero-padding shortcuts and "
      f"no BatchNorm (Fixup: its Fixup version). Statistics on {config.stats_batch} training "
      "images; grad norm is ||dL/dW||, the L2 norm of the loss gradient w.r.t. a layer's "
      f"kernel. Training: SGD, momentum {d.momentum}, constant learning rate {d.learning_rate}, "
      f"batch {d.batch_size}, {num_epochs} epoch(s), the same batches for every init (one "
      "jaxcnn.train.population.Population per network"
      + (", its inits trained together" if d.together else "") + "). 'loss' is the "
      "mean training loss over the last 10% of steps.")
  report.table(
      [_deep_row(a, i, r) for a, v in deep.items() for i, r in v.items()],
      ("net", "init", "act std first", "act std last", "grad norm first", "grad norm last",
       "trained: act std last", "trained: grad norm first", "loss", "test acc %"))
  report.text("At initialization (Fixup: every gradient but the classifier's is exactly 0, so "
              "those points are missing on the log axis):").figure("deep_at_init.png")
  report.text("After training:").figure("deep_after_training.png").figure("deep_training.png")
  report.section("(c) Constant initialization keeps the units of a layer identical").text(
      f"MLP {tuple(s.widths)} (ReLU, zero biases) trained by plain SGD for "
      f"{pick(s, 'num_steps')} steps (learning rate {s.learning_rate}, batch {s.batch_size}). "
      "Spread = max over examples (or input weights) of (max - min across the units of the "
      f"layer), measured after every step on the first {s.batch_size} training images (grad "
      "spread: of the kernel's gradient on them); 0 means every unit of the layer is the same. "
      "Active fraction: share of positive activations after training (the equal units are "
      "alive, not all zero).")
  rows = []
  for init, r in sym.items():
    for layer in range(r["act_spread"].shape[1]):
      rows.append([init_label(init), layer + 1, _fmt(r["act_spread"][0, layer]),
                   _fmt(r["act_spread"][-1, layer]), _fmt(r["kernel_spread"][0, layer]),
                   _fmt(r["kernel_spread"][-1, layer]), _fmt(np.max(r["grad_spread"][:, layer])),
                   f"{r['active_fraction'][layer]:.2f}", f"{100 * r['test_accuracy']:.1f}"])
  report.table(rows, (
      "init", "hidden layer", "act spread, step 0", f"act spread, step {pick(s, 'num_steps')}",
      "kernel spread, step 0", f"kernel spread, step {pick(s, 'num_steps')}",
      "max grad spread", "active fraction, end", "test acc %")).figure("symmetry.png")
  table = report.write(os.path.join(workdir, "initialization.md"))
  out = Results(mlp=cases, deep=deep, symmetry=sym, table=table, figures=tuple(figures),
                seconds=time.time() - start)
  common.save_results(out, workdir)
  print(f"initialization: wrote {table} in {out.seconds:.0f} s", flush=True)
  return out
