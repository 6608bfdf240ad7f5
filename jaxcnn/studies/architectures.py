"""Architectures under one budget: accuracy against multiply-adds and parameters (CIFAR scale).

One representative of each family of the zoo that accepts 32x32 images is trained on the same
CIFAR-10 subset with the same recipe for the same number of optimizer steps: the data go to the
device once (one :class:`jaxcnn.data.sources.InMemory` shared by every architecture) and each
architecture is a population of ``config.num_seeds`` models
(:class:`jaxcnn.train.population.Population`) trained with the optax chain and schedule that
:func:`jaxcnn.train.loop.fit` builds from :func:`train_config`. Its test accuracy is then set
against its multiply-adds per image and its parameters (:func:`jaxcnn.models.flops`,
:func:`jaxcnn.models.count_params`), the chart of Canziani et al. 2017 (ImageNet top-1 against
operations, bubble size = parameters), here at CIFAR scale and limited by the training budget,
not by the architectures. The measured training throughput is set against the multiply-adds too:
Canziani et al. found operations a good predictor of inference time on a GPU.

:func:`run` composes :func:`load_data`, :func:`train_one` (one population per architecture) and
:func:`log_correlation`; it returns a :class:`Results`, draws with
:mod:`jaxcnn.studies.architectures_plots` and writes its report with
:class:`jaxcnn.studies.common.Report`.

References: Canziani, Paszke & Culurciello 2017, "An Analysis of Deep Neural Network Models for
Practical Applications"; the papers of each family (see ``jaxcnn.models``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.data import preprocessing, sources
from jaxcnn.models import count_params, create_model, flops, model_info
from jaxcnn.studies import architectures_plots as plots
from jaxcnn.studies import common
from jaxcnn.train import recorder
from jaxcnn.train.optim import make_optimizer, make_schedule
from jaxcnn.train.population import Population


@dataclasses.dataclass(frozen=True)
class ArchResult:
  """One trained architecture (``seeds`` models of it, trained at once).

  Attributes:
    label: the name shown in tables and plots.
    spec: the model spec given to ``jaxcnn.models.create_model``.
    family: its family (registry metadata, :func:`jaxcnn.models.model_info`).
    params: trainable parameters (``num_classes`` outputs).
    macs: multiply-accumulates per image at the training resolution.
    test_accuracy: on the test subset after the last step (mean over seeds).
    train_accuracy: mean minibatch accuracy over the last epoch's steps (mean over seeds).
    steps: optimizer steps taken.
    images_per_s: training throughput (images of all seeds per second, compilation excluded).
    compile_s: compile time of the train step.
    wall_s: the whole architecture: initialization, compilation, training and the test.
    seeds: models trained at once (seeds ``config.seed ..``).
    test_accuracy_std: the spread over seeds (0 for one seed).
  """

  label: str
  spec: str
  family: str
  params: int
  macs: float
  test_accuracy: float
  train_accuracy: float
  steps: int
  images_per_s: float
  compile_s: float
  wall_s: float
  seeds: int = 1
  test_accuracy_std: float = 0.0


HEADERS = ("model", "spec", "family", "params", "MACs / image", "test acc", "train acc",
           "steps", "train images/s", "compile s", "wall s")


def load_data(config) -> dict[str, dict[str, np.ndarray]]:
  """Random train and test subsets (:func:`jaxcnn.data.sources.subsets`, seed ``config.seed``):
  ``{"train": {"image", "label"}, "test": ...}`` (uint8, int32).

  ``config.dataset`` from ``config.data_dir`` (an absolute path in the config file; "" for the
  offline digits of the quick setting).
  """
  return sources.subsets(config.dataset, {"train": config.num_train, "test": config.num_test},
                         seed=config.seed, data_dir=config.data_dir or None)


def model_costs(spec: str, input_shape: Sequence[int] | None = None,
                num_classes: int = 10) -> tuple[int, float]:
  """(trainable parameters, multiply-adds per image) of ``create_model(spec, num_classes=...)``
  on NHWC ``input_shape`` images (batch dimension included; default: one image of the
  registry's ``input_size``); nothing is compiled."""
  if input_shape is None:
    input_shape = (1, *model_info(spec).input_size)
  model = create_model(spec, num_classes=num_classes)
  return count_params(model, tuple(input_shape)), flops(model, tuple(input_shape))


def family(spec: str) -> str:
  """The family of the model of ``spec`` (registry metadata, e.g. ``"resnet"``)."""
  return model_info(spec).family


def train_config(config, spec: str):
  """The engine config (``jaxcnn.train.config``) for one model: the study's shared recipe.

  ``config.model`` holds only the name, so every model keeps its own activation, normalization
  and initialization. :func:`make_population` builds what :func:`jaxcnn.train.loop.fit` would
  build from it.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top

  from jaxcnn.train.config import get_config  # pylint: disable=g-import-not-at-top

  t = get_config()
  t.dataset = config.dataset  # for the log; data come in memory
  t.model = ml_collections.ConfigDict({"name": spec})
  t.val_size = 0
  t.preprocessing = config.preprocessing
  t.augment = tuple(config.augment)
  t.batch_size = int(config.batch_size)
  t.eval_batch_size = int(config.eval_batch_size)
  t.num_epochs = int(config.num_epochs)
  t.steps_per_epoch = int(config.steps_per_epoch)
  t.optimizer.name = config.optimizer
  t.optimizer.learning_rate = float(config.learning_rate)
  t.optimizer.weight_decay = float(config.weight_decay)
  t.schedule.name = "cosine"
  t.schedule.warmup_epochs = float(config.warmup_epochs)
  t.seed = int(config.seed)
  t.num_models = int(config.get("num_seeds", 1))
  t.log_every_steps = 10_000  # only at epoch ends: no extra host syncs
  t.progress_bar = False
  return t


def budget_steps(config, num_train: int) -> tuple[int, int]:
  """``(steps_per_epoch, total steps)`` of the budget: ``config.steps_per_epoch`` (0: one pass
  over ``num_train`` images at ``config.batch_size``) times ``config.num_epochs``."""
  full = int(num_train) // int(config.batch_size)
  if full < 1:
    raise ValueError(f"batch_size={config.batch_size} exceeds the {num_train} training images.")
  per_epoch = int(config.steps_per_epoch) or full
  if per_epoch > full:
    raise ValueError(f"steps_per_epoch={per_epoch} exceeds one pass over the {num_train} "
                     f"training images ({full} steps).")
  return per_epoch, per_epoch * int(config.num_epochs)


def make_population(config, spec: str, *, num_classes: int, transform: Any,
                    num_train: int) -> Population:
  """The population of one architecture: ``config.num_seeds`` models of ``spec`` with the optax
  chain, schedule, augmentation and dtype that ``fit(train_config(config, spec))`` uses."""
  t = train_config(config, spec)
  steps_per_epoch, _ = budget_steps(config, num_train)
  schedule = make_schedule(t.schedule, learning_rate=1.0, steps_per_epoch=steps_per_epoch,
                           num_epochs=int(t.num_epochs))
  tx = make_optimizer(t.optimizer, t.optimizer.learning_rate, schedule=schedule)
  augment = None
  if t.augment:
    from jaxcnn.data.augment import make_augment  # pylint: disable=g-import-not-at-top
    augment = make_augment(tuple(t.augment))
  model = create_model(spec, num_classes=num_classes)
  return Population(model, tx, num_models=int(t.num_models), label_smoothing=t.label_smoothing,
                    augment=augment, preprocess=transform, compute_dtype=jnp.dtype(t.dtype),
                    ema_decay=t.ema_decay)


def train_one(config, label: str, spec: str, source: sources.InMemory,
              transform: Any) -> ArchResult:
  """Trains ``config.num_seeds`` models of ``spec`` (:func:`make_population`) on ``source``
  for the budget (:func:`budget_steps`) and tests them on its ``test`` split.

  The step budget runs through :meth:`Population.train` with ``fit``'s epoch length, so every
  model sees the batches that ``fit`` would show it, under a progress bar (stderr); a NaN loss
  stops it at the end of that epoch.
  """
  t0 = time.perf_counter()
  num_classes = source.max_label + 1
  params, macs = model_costs(spec, (1, *source.input_shape), num_classes)
  steps_per_epoch, num_steps = budget_steps(config, source.num_train)
  pop = make_population(config, spec, num_classes=num_classes, transform=transform,
                        num_train=source.num_train)
  seeds = [int(config.seed) + m for m in range(pop.num_models)]
  state, data_keys = pop.init(seeds, source.input_shape)
  # eval_every with no splits: the NaN check at every epoch end, so a diverged model stops early.
  state, history = pop.train(state, data_keys, source, num_steps=num_steps,
                             batch_size=int(config.batch_size), eval_every=steps_per_epoch,
                             eval_splits=(), labels=[f"{label}, seed {s}" for s in seeds],
                             steps_per_epoch=steps_per_epoch, progress=True)
  train_s = float(history["seconds"]) - float(history["compile_time_s"])
  test = pop.evaluate(state, source, "test")["accuracy"]
  train_acc = history["train_accuracy"][-steps_per_epoch:].mean(axis=0)
  return ArchResult(label=label, spec=spec, family=family(spec), params=params, macs=macs,
                    test_accuracy=float(test.mean()), train_accuracy=float(train_acc.mean()),
                    steps=num_steps,
                    images_per_s=num_steps * int(config.batch_size) * pop.num_models / train_s,
                    compile_s=float(history["compile_time_s"]),
                    wall_s=time.perf_counter() - t0, seeds=pop.num_models,
                    test_accuracy_std=float(test.std()))


def log_correlation(x: Sequence[float], y: Sequence[float]) -> float:
  """Pearson correlation of ``log x`` and ``log y`` (nan for fewer than 3 points)."""
  x, y = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
  if x.size < 3:
    return float("nan")
  return float(np.corrcoef(x, y)[0, 1])


def _millions(value: float) -> str:
  return f"{value / 1e6:.3g}M"


def _accuracy(mean: float, std: float, seeds: int) -> str:
  return f"{100 * mean:.1f}%" + (f" ± {100 * std:.1f}" if seeds > 1 else "")


def table_rows(results: Sequence[ArchResult]) -> list[tuple[Any, ...]]:
  """The cells of :data:`HEADERS` for each result."""
  return [(r.label, f"`{r.spec}`", r.family, f"{r.params:,}", _millions(r.macs),
           _accuracy(r.test_accuracy, r.test_accuracy_std, r.seeds),
           f"{100 * r.train_accuracy:.1f}%", r.steps, f"{r.images_per_s:,.0f}",
           f"{r.compile_s:.1f}", f"{r.wall_s:.0f}") for r in results]


def warm_up(source: sources.InMemory, batch_size: int, num_models: int) -> None:
  """Compiles the source's batch gathers once, so that no architecture's throughput pays for
  them (the first one would otherwise)."""
  keys = sources.put(jnp.zeros((num_models, 2), jnp.uint32), sources.replicated(source.mesh))
  jax.block_until_ready(next(source.train_batches(keys, 0, 0, 1, batch_size)))
  jax.block_until_ready(next(source.eval_batches("test")))


@dataclasses.dataclass(frozen=True)
class Results:
  """What the report shows.

  Attributes:
    models: one :class:`ArchResult` per entry of ``config.models``, in order.
    num_train, num_test, image_shape: the data (``image_shape`` is ``(H, W, C)``).
    budget: the budget in words; device: ``jax.devices()[0].device_kind``.
    corr_time_macs, corr_accuracy_macs: :func:`log_correlation` of the time per image and of
      the test accuracy with the multiply-adds (NaN for fewer than 3 models).
    table: the report's path; figures: the figures' file names (in the run folder).
    seconds: the wall time of this call (each model keeps its own ``wall_s``, also when it was
      trained by an earlier, interrupted call).
  """

  models: tuple[ArchResult, ...]
  num_train: int
  num_test: int
  image_shape: tuple[int, int, int]
  budget: str
  device: str
  corr_time_macs: float
  corr_accuracy_macs: float
  table: str
  figures: tuple[str, ...]
  seconds: float

  def to_dict(self) -> dict[str, Any]:
    """JSON-able (:func:`jaxcnn.studies.common.jsonable`)."""
    return common.jsonable(self)


def recipe(config) -> dict[str, Any]:
  """What every model of a run shares: the config without its list of models. The models
  already trained in a run folder are reused only under the same recipe (:func:`run`)."""
  shared = json.loads(config.to_json())
  shared.pop("models", None)
  return shared


def run(config, workdir: str) -> Results:
  """Trains every model of ``config.models`` under the same budget, on one device-resident
  source; writes ``architectures.md`` (the report), ``results.json``, ``accuracy_vs_cost.png``
  and ``time_vs_macs.png`` to ``workdir``, again after each model.

  Each trained model is appended at once to ``workdir/models.jsonl``
  (:func:`jaxcnn.train.recorder.append_row`); a run in a folder that has one trains only the
  models it lacks, so an interrupted run loses the model in training at most, and models added
  to ``config.models`` later are trained alone. A folder of another :func:`recipe` is refused,
  naming the fields that differ.
  """
  t0 = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  models = [tuple(m) for m in config.models]
  if not models:
    raise ValueError("config.models is empty: give at least one (label, spec).")
  for m in models:
    if len(m) != 2:
      raise ValueError(f"Each entry of config.models must be (label, spec), got {m!r}.")
  log = os.path.join(workdir, "models.jsonl")
  shared = recipe(config)
  done = {(r["label"], r["spec"]): ArchResult(**r)
          for r in recorder.read_rows(log, shared, what="study log")}
  data = load_data(config)
  shape = data["train"]["image"].shape
  transform = preprocessing.fit(config.preprocessing, data["train"]["image"])
  source = sources.InMemory(data, eval_batch_size=int(config.eval_batch_size))
  where = ("digits (8x8, offline)" if config.dataset == "digits" else
           f"{config.dataset} ({config.data_dir})")
  print(f"architectures: {len(models)} models on {shape[0]} training images {shape[1:]} of "
        f"{where}", flush=True)
  reused = [m for m in models if m in done]
  if reused:
    print(f"  {len(reused)} of {len(models)} already trained in {log}: "
          f"{', '.join(label for label, _ in reused)}", flush=True)
  if len(reused) < len(models):
    warm_up(source, int(config.batch_size), int(config.get("num_seeds", 1)))
  results, out = [], None
  for label, spec in models:
    r = done.get((label, spec))
    fresh = r is None
    if fresh:
      r = train_one(config, label, spec, source, transform)
      recorder.append_row(log, shared, dataclasses.asdict(r))
      print(f"  {label}: test accuracy {r.test_accuracy:.3f}, {r.params:,} params, "
            f"{_millions(r.macs)} MACs, {r.images_per_s:.0f} images/s, {r.wall_s:.0f} s",
            flush=True)
    results.append(r)
    if fresh or len(results) == len(models):
      out = write_report(config, results, shape=shape, num_test=len(data["test"]["label"]),
                         num_classes=source.max_label + 1, where=where, workdir=workdir,
                         seconds=time.perf_counter() - t0)
  fmt = "n/a" if math.isnan(out.corr_time_macs) else f"{out.corr_time_macs:.2f}"
  print(f"architectures: done in {out.seconds:.0f} s; corr(log time, log MACs) = {fmt}",
        flush=True)
  return out


def write_report(config, results: Sequence[ArchResult], *, shape: tuple[int, ...], num_test: int,
                 num_classes: int, where: str, workdir: str, seconds: float) -> Results:
  """The report, ``results.json`` and the figures of ``results`` (the models trained so far):
  ``shape`` is the training images' NHWC shape, ``where`` the data in words."""
  steps = results[0].steps if results else 0
  seen = steps * int(config.batch_size)
  budget = (f"{steps} optimizer steps of batch {config.batch_size} "
            f"({seen:,} images seen, {seen / shape[0]:.1f} epochs of {shape[0]:,} images)")
  title = (f"{'digits (quick)' if config.dataset == 'digits' else config.dataset}, "
           f"{shape[0]:,} images of {shape[1]}x{shape[2]}, same budget: {steps} steps of batch "
           f"{config.batch_size}")
  device = device_kind()
  figures = ("accuracy_vs_cost.png", "time_vs_macs.png")
  plots.plot_accuracy_vs_cost(results, os.path.join(workdir, figures[0]), title=title,
                              chance=1.0 / num_classes)
  plots.plot_time_vs_macs(results, os.path.join(workdir, figures[1]),
                          title=f"Training time vs operations ({device})")
  corr = log_correlation([r.macs for r in results], [1.0 / r.images_per_s for r in results])
  corr_acc = log_correlation([r.macs for r in results], [r.test_accuracy for r in results])
  seeds = int(config.get("num_seeds", 1))
  fmt = lambda c: "n/a (fewer than 3 models)" if math.isnan(c) else f"{c:.2f}"  # noqa: E731
  report = common.Report("Architectures under one budget")
  report.text(
      f"Data: {where}, {shape[0]:,} training and {num_test:,} test images of "
      f"{shape[1]}x{shape[2]}x{shape[3]}, on the device once for every model. Budget: {budget}, "
      f"the same for every model"
      + (f"; {seeds} seeds per model trained at once (± is their std)" if seeds > 1 else "")
      + f". Recipe: {config.optimizer} (lr {config.learning_rate}, cosine, "
      f"{config.warmup_epochs} warm-up epochs, weight decay {config.weight_decay}), "
      f"preprocessing `{config.preprocessing}`, augmentation {tuple(config.augment)}. "
      f"MACs: multiply-adds per {shape[1]}x{shape[2]} image. Train images/s: compilation "
      f"excluded; wall s: initialization, compilation, training and test. Device: {device}.")
  report.table(table_rows(results), HEADERS)
  report.text(f"Correlation of log(time per image) with log(MACs): {fmt(corr)}; of log(test "
              f"accuracy) with log(MACs): {fmt(corr_acc)}.")
  for f in figures:
    report.figure(f)
  table = report.write(os.path.join(workdir, "architectures.md"))
  out = Results(models=tuple(results), num_train=int(shape[0]), num_test=int(num_test),
                image_shape=tuple(int(d) for d in shape[1:]), budget=budget, device=device,
                corr_time_macs=corr, corr_accuracy_macs=corr_acc, table=table, figures=figures,
                seconds=seconds)
  common.save_results(out, workdir)
  return out


def device_kind() -> str:
  """The kind of ``jax.devices()[0]`` (e.g. ``cpu``, ``NVIDIA H100 80GB HBM3``)."""
  return jax.devices()[0].device_kind
