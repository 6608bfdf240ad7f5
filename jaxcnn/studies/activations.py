"""Activation functions: their shapes and derivatives, and how fast the same CNN trains with each.

The study (CS231n, lecture "Training Neural Networks I"):

* each activation and its derivative (``jax.grad``) on a grid: sigmoid and tanh saturate (the
  derivative vanishes for large ``|x|``; sigmoid's is at most 1/4 and its output is not
  zero-centred), ReLU passes gradient 1 or 0 (a unit that is negative on every input is dead),
  Leaky ReLU / PReLU / ELU / SELU / Swish keep a gradient for ``x < 0``, Maxout is a learned
  convex piecewise-linear function (ReLU and Leaky ReLU are special cases);
* the same small CNN (the registered ``act_cnn``, :class:`jaxcnn.models.small_cnns.ActCNN`: no
  batch normalization, so that nothing rescales the pre-activations and the nonlinearity alone
  decides how signals and gradients flow) trained with each activation, several seeds at once as
  one :class:`~jaxcnn.train.population.Population` on one device-resident source shared by every
  activation: training and validation error against iterations (mean and spread over seeds), the
  fraction of dead ReLUs and of saturated tanh/sigmoid units over training
  (:func:`jaxcnn.diagnostics.unit_stats` on a fixed batch), and the iterations each needs to
  reach a target training error.

:func:`run` composes :func:`load_data`, :func:`train_activation` (one population per activation)
and pure functions over the histories (:func:`jaxcnn.diagnostics.steps_to_target`, :func:`speedup`); it
returns a :class:`Results` and draws with :mod:`jaxcnn.studies.activations_plots`.

The claim checked: "a four-layer convolutional neural network with ReLUs reaches a 25% training
error rate on CIFAR-10 six times faster than an equivalent network with tanh neurons"
(Krizhevsky et al. 2012, Figure 1; learning rates chosen per network, no regularization).

References: Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep
Convolutional Neural Networks"; CS231n (Stanford), "Training Neural Networks I"; Maas et al.
2013 (Leaky ReLU); He et al. 2015 (PReLU); Clevert et al. 2016 (ELU); Klambauer et al. 2017
(SELU); Goodfellow et al. 2013 (Maxout); Ramachandran et al. 2017 (Swish).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.data import preprocessing, sources
from jaxcnn import diagnostics
from jaxcnn.diagnostics import has_unit_stats, unit_stats
from jaxcnn.models import create_model
from jaxcnn.models.small_cnns import ActCNN  # noqa: F401  (the study's network, as before)
from jaxcnn.nn import activations
from jaxcnn.studies import activations_plots as plots
from jaxcnn.studies import common
from jaxcnn.train.population import Population

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


# ----------------------------------------------------------------------------------------------
# Bookkeeping: pure functions of the histories.


def running_errors(step_errors: Any, eval_steps: Sequence[int]) -> np.ndarray:
  """The mean per-step error since the previous evaluation, at every evaluation.

  Args:
    step_errors: ``(steps, models)`` minibatch errors of the steps ``1 .. steps``.
    eval_steps: the step counts of the evaluations, increasing (0: before training).

  Returns:
    ``(len(eval_steps), models)``; NaN where no step lies since the previous evaluation (step 0).
  """
  step_errors = np.asarray(step_errors, np.float64)
  out, last = [], 0
  for step in eval_steps:
    recent = step_errors[last:int(step)]
    out.append(recent.mean(axis=0) if len(recent) else np.full(step_errors.shape[1:], np.nan))
    last = int(step)
  return np.stack(out)


# ----------------------------------------------------------------------------------------------
# Data, network and training with one activation (several seeds at once).


def load_data(config) -> dict[str, dict[str, np.ndarray]]:
  """``{"train", "val"}`` subsets (:func:`jaxcnn.data.sources.subsets`): ``num_train`` and
  ``num_val`` disjoint examples of ``config.dataset``'s training split, drawn with
  ``config.data_seed``."""
  return sources.subsets(config.dataset, {"train": config.num_train, "val": config.num_val},
                         seed=config.data_seed, data_dir=config.data_dir or None)


def build_model(act: str, config, num_classes: int) -> nn.Module:
  """The registered ``act_cnn`` with activation ``act`` and its matched kernel init
  (``config.inits[act]``, He-normal if not listed)."""
  return create_model("act_cnn", num_classes=num_classes, features=tuple(config.model.features),
                      hidden=int(config.model.hidden), kernel_size=int(config.model.kernel_size),
                      act=act, kernel_init=config.inits.get(act, "kaiming_normal"))


def learning_rate(act: str, config) -> float:
  """``config.learning_rates[act]`` if nonzero, else ``config.learning_rate``."""
  return float(config.learning_rates.get(act, 0.0) or config.learning_rate)


@dataclasses.dataclass(frozen=True)
class ActivationRun:
  """One activation, ``len(seeds)`` seeds trained at once.

  Attributes:
    activation, init, learning_rate, num_params, seeds: what was trained.
    eval_steps: ``(E,)`` step counts of the evaluations (0 first).
    step_errors, step_losses: ``(steps, seeds)`` minibatch training error and loss per step.
    train_error: ``(E, seeds)`` mean minibatch error since the previous evaluation (NaN at 0).
    val_error: ``(E, seeds)`` validation error.
    dead, saturated: ``(E, seeds, layers)`` fractions of dead ReLU / saturated tanh-sigmoid
      units on a fixed batch of validation images (NaN where not defined), or None for an
      activation that has neither.
    seconds, compile_time_s: wall time of the run and of its compilation.
  """

  activation: str
  init: str
  learning_rate: float
  num_params: int
  seeds: tuple[int, ...]
  eval_steps: np.ndarray
  step_errors: np.ndarray
  step_losses: np.ndarray
  train_error: np.ndarray
  val_error: np.ndarray
  dead: np.ndarray | None
  saturated: np.ndarray | None
  seconds: float
  compile_time_s: float


def train_activation(act: str, config, source: sources.InMemory, transform: Any, *,
                     seeds: Sequence[int] | None = None,
                     stats_images: jax.Array | None = None) -> ActivationRun:
  """Trains ``act_cnn`` with activation ``act``, one model per seed, as one population.

  SGD with momentum at a constant learning rate (:func:`learning_rate`), no weight decay or
  augmentation (as Krizhevsky et al.'s Figure 1), ``config.batch_size`` examples per step from
  ``source`` (each seed its own data order), evaluated every ``config.eval_every_steps`` steps
  and at step 0: validation error, and dead/saturated fractions
  (:func:`jaxcnn.diagnostics.unit_stats`) on ``stats_images`` (default: the first
  ``config.stats_batch`` validation images, preprocessed).

  Args:
    act: an activation name.
    config: the study config.
    source: the train and val splits (shared by every activation).
    transform: the fitted input transform (:func:`jaxcnn.data.preprocessing.fit`).
    seeds: one seed per model (default ``config.seed .. config.seed + config.num_seeds - 1``).
    stats_images: preprocessed images for the unit statistics.
  """
  seeds = tuple(int(s) for s in (seeds if seeds is not None else
                                 range(config.seed, config.seed + config.num_seeds)))
  model = build_model(act, config, num_classes=source.max_label + 1)
  lr = learning_rate(act, config)
  pop = Population(model, optax.sgd(lr, momentum=config.momentum), num_models=len(seeds),
                   preprocess=transform)
  state, data_keys = pop.init(seeds, source.input_shape)
  if stats_images is None:
    stats_images = transform(source.splits["val"]["image"][:config.stats_batch])
  track = has_unit_stats(act)
  measure = ((lambda s: unit_stats(model, s.params, stats_images, len(seeds))) if track
             else None)
  _, history = pop.train(state, data_keys, source, num_steps=config.num_steps,
                         batch_size=config.batch_size, eval_every=config.eval_every_steps,
                         eval_splits=("val",), eval_at_start=True, measure=measure,
                         labels=[f"{act}, seed {s}" for s in seeds], stop_on_nonfinite=False)
  step_errors = 1.0 - history["train_accuracy"]
  num_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(state.params))
  return ActivationRun(
      activation=act, init=str(model.kernel_init), learning_rate=lr, num_params=num_params,
      seeds=seeds, eval_steps=history["eval_steps"], step_errors=step_errors,
      step_losses=history["train_loss"],
      train_error=running_errors(step_errors, history["eval_steps"]),
      val_error=1.0 - history["val_accuracy"],
      dead=history["dead"] if track else None, saturated=history["saturated"] if track else None,
      seconds=float(history["seconds"]), compile_time_s=float(history["compile_time_s"]))


# ----------------------------------------------------------------------------------------------
# Results.


@dataclasses.dataclass(frozen=True)
class Results:
  """What the report shows.

  Attributes:
    runs: ``{activation: ActivationRun}``.
    iterations: ``{activation: (seeds,) int}`` iterations to ``target_error`` (-1: not reached).
    target_error, num_steps: the target and the step budget.
    speedup_tanh_over_relu: mean iterations of tanh over ReLU (NaN if not measurable).
    speedup_exact: False when the speedup is a lower bound (some tanh seed never reached it).
    measured: the sentence of the report.
    table: the report's path; figures: the figures' file names (in the run folder).
    seconds: the study's wall time.
  """

  runs: dict[str, ActivationRun]
  iterations: dict[str, np.ndarray]
  target_error: float
  num_steps: int
  speedup_tanh_over_relu: float
  speedup_exact: bool
  measured: str
  table: str
  figures: tuple[str, ...]
  seconds: float

  def to_dict(self) -> dict[str, Any]:
    """JSON-able (:func:`jaxcnn.studies.common.jsonable`): arrays as lists, non-finite floats as
    None."""
    return common.jsonable(self)


# ----------------------------------------------------------------------------------------------
# The study.


def _diverged_note(r: ActivationRun) -> str:
  """`` (k/n seeds diverged)`` when some seeds' loss became NaN/inf (their errors are chance)."""
  diverged = int((~np.isfinite(r.step_losses)).any(axis=0).sum())
  return f" ({diverged}/{len(r.seeds)} seeds diverged: NaN loss)" if diverged else ""


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


def tanh_relu_speedup(iterations: dict[str, np.ndarray], num_steps: int) -> tuple[float, bool]:
  """:func:`speedup` of tanh over ReLU, or ``(NaN, True)`` without both runs."""
  if not {"tanh", "relu"} <= set(iterations):
    return float("nan"), True
  return speedup(iterations, "tanh", "relu", num_steps)


def _unit_cell(values: np.ndarray | None) -> str:
  if values is None or np.isnan(values).all():
    return ""
  return f"{np.nanmean(values[0]):.3f} → {np.nanmean(values[-1]):.3f}"


def report_rows(runs: dict[str, ActivationRun], iterations: dict[str, np.ndarray],
                num_steps: int) -> list[tuple[Any, ...]]:
  """One table row per activation (see the headers in :func:`run`)."""
  rows = []
  for act, r in runs.items():
    ratio = (speedup(iterations, act, "relu", num_steps) if "relu" in iterations
             else (float("nan"), True))
    ratio_cell = "" if not np.isfinite(ratio[0]) else f"{'' if ratio[1] else '> '}{ratio[0]:.2f}"
    rows.append((act, r.init, r.learning_rate, r.num_params,
                 _iterations_cell(iterations[act], num_steps), ratio_cell,
                 _mean_std(r.train_error[-1]) + _diverged_note(r), _mean_std(r.val_error[-1]),
                 _unit_cell(r.dead) or _unit_cell(r.saturated), f"{r.seconds:.0f}"))
  return rows


def run(config, workdir: str) -> Results:
  """Trains every activation of ``config.activations`` and writes ``activations.md``,
  ``results.json`` and the figures ``activation_functions.png``, ``curves.png``,
  ``iterations.png`` and (with ReLU, tanh or sigmoid) ``unit_stats.png`` into ``workdir``.

  The data are loaded, preprocessed (``config.preprocessing``, fitted on the training subset)
  and put on the device once, as one source shared by every activation.
  """
  t0 = time.perf_counter()
  unknown = [a for a in config.activations if a not in activations.names()]
  if unknown:
    raise ValueError(f"Unknown activation(s) {unknown}. Known: {', '.join(activations.names())}.")
  if not 1 <= config.smoothing_steps <= config.num_steps:  # the training error's window
    raise ValueError(f"config.smoothing_steps={config.smoothing_steps} must lie in [1, "
                     f"config.num_steps={config.num_steps}].")
  os.makedirs(workdir, exist_ok=True)
  figures = ["activation_functions.png", "curves.png", "iterations.png"]
  plots.plot_activations(tuple(config.plot_activations), os.path.join(workdir, figures[0]),
                         dpi=config.dpi)
  data = load_data(config)
  transform = preprocessing.fit(config.preprocessing, data["train"]["image"])
  source = sources.InMemory(data)
  stats_images = transform(source.splits["val"]["image"][:config.stats_batch])
  runs = {}
  for act in config.activations:
    r = runs[act] = train_activation(act, config, source, transform, stats_images=stats_images)
    print(f"activations: {act:>10}: final train error {_mean_std(r.train_error[-1])}, "
          f"val error {_mean_std(r.val_error[-1])} ({r.seconds:.0f}s)", flush=True)

  window, target, num_steps = config.smoothing_steps, config.target_error, config.num_steps
  iterations = {a: diagnostics.steps_to_target(r.step_errors, target, window=window)
                for a, r in runs.items()}
  plots.plot_curves(runs, os.path.join(workdir, "curves.png"), target=target, dpi=config.dpi)
  plots.plot_iterations(iterations, num_steps, target, os.path.join(workdir, "iterations.png"),
                        dpi=config.dpi)
  if any(r.dead is not None for r in runs.values()):
    plots.plot_unit_stats(runs, os.path.join(workdir, "unit_stats.png"), dpi=config.dpi)
    figures.append("unit_stats.png")

  rows = report_rows(runs, iterations, num_steps)
  ratio, exact = tanh_relu_speedup(iterations, num_steps)
  n_train, seeds = config.num_train, config.num_seeds
  caption = (
      f"{config.dataset} ({n_train} training images, {config.num_val} validation images, both "
      f"from the training split), the same {len(config.model.features) + 2}-layer CNN "
      f"(`act_cnn`: conv {tuple(config.model.features)} "
      f"{config.model.kernel_size}x{config.model.kernel_size} + max-pool, dense "
      f"{config.model.hidden}, linear head; no batch normalization), {seeds} seeds trained at "
      f"once as one population (one compiled step); SGD momentum {config.momentum}, batch "
      f"{config.batch_size}, {num_steps} iterations, no weight decay or augmentation. Training "
      f"error = mean minibatch error over the last {window} iterations (for the target) or since "
      f"the last evaluation (final column); ± is the std over seeds. Dead = fraction of ReLU units "
      f"zero on a fixed batch of {config.stats_batch} validation images; saturated = fraction of "
      f"tanh/sigmoid outputs within 1% of a bound (mean over layers, at step 0 → at the end). "
      f"Speed is iterations to target relative to ReLU (> : a lower bound, some seeds never "
      f"reached the target).")
  headers = ("activation", "init", "lr", "params", f"iterations to {target:.0%} train error",
             "x ReLU", "final train error", "final val error", "dead / saturated", "seconds")
  claim = ("Krizhevsky et al. 2012 (Figure 1): with ReLUs a four-layer CNN reaches 25% training "
           "error on CIFAR-10 six times faster than with tanh.")
  measured = ("not measured: needs tanh and relu runs, with relu reaching the target with "
              "every seed" if not np.isfinite(ratio) else
              f"tanh needs {'more than ' if not exact else ''}{ratio:.2f}x the iterations of "
              f"ReLU to reach {target:.0%} training error here (per seed: tanh "
              f"{iterations['tanh'].tolist()}, relu {iterations['relu'].tolist()}; -1 = not "
              f"reached in {num_steps}).")
  report = common.Report("Activation functions").figure(figures[0], alt="activation functions")
  report.section("Training the same CNN with each activation").table(rows, headers,
                                                                      caption=caption)
  report.text(f"**Claim.** {claim}", f"**Measured.** {measured}")
  for f in figures[1:]:
    report.figure(f, alt=f)
  path = report.write(os.path.join(workdir, "activations.md"))
  print(f"activations: {measured}", flush=True)
  results = Results(runs=runs, iterations=iterations, target_error=float(target),
                    num_steps=int(num_steps), speedup_tanh_over_relu=float(ratio),
                    speedup_exact=bool(exact), measured=measured, table=path,
                    figures=tuple(figures), seconds=time.perf_counter() - t0)
  common.save_results(results, workdir)
  return results
