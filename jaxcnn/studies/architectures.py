"""Architectures under one budget: accuracy against multiply-adds and parameters (CIFAR scale).

One representative of each family of the zoo that accepts 32x32 images is trained on the same
CIFAR-10 subset with the same recipe for the same number of optimizer steps, through the engine
(:func:`jaxcnn.train.loop.fit` on in-memory data). Its test accuracy is then set against its
multiply-adds per image and its parameters (:func:`jaxcnn.models.flops`,
:func:`jaxcnn.models.count_params`), the chart of Canziani et al. 2017 (ImageNet top-1 against
operations, bubble size = parameters), here at CIFAR scale and limited by the training budget,
not by the architectures. The measured training throughput is set against the multiply-adds too:
Canziani et al. found operations a good predictor of inference time on a GPU.

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

import numpy as np

from jaxcnn.studies import common, zoo


@dataclasses.dataclass(frozen=True)
class ArchResult:
  """One trained architecture.

  Attributes:
    label: the name shown in tables and plots.
    spec: the model spec given to ``jaxcnn.models.create_model``.
    family: the ``jaxcnn.models`` module defining it.
    params: trainable parameters (``num_classes`` outputs).
    macs: multiply-accumulates per image at the training resolution.
    test_accuracy, train_accuracy: after the last epoch (train: mean over the last epoch's steps).
    steps: optimizer steps taken.
    images_per_s: the engine's training throughput (median over epochs, compile excluded).
    compile_s, wall_s: compile time of the train step and the whole fit.
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


HEADERS = ("model", "spec", "family", "params", "MACs / image", "test acc", "train acc",
           "steps", "train images/s", "compile s", "fit s")


def load_data(config) -> dict[str, dict[str, np.ndarray]]:
  """Random train and test subsets: ``{"train": {"image", "label"}, "test": ...}`` (uint8, int32).

  ``config.dataset`` from ``config.data_dir`` (relative paths resolved against the repository
  root); the quick setting uses the offline digits (8x8x1).
  """
  from jaxcnn.data import datasets  # pylint: disable=g-import-not-at-top

  name, data_dir, sizes = config.dataset, config.data_dir, (config.num_train, config.num_test)
  if name == "digits":
    data_dir = None
  elif data_dir and not os.path.isabs(data_dir):
    data_dir = str(common.REPO_ROOT / data_dir)
  out = {}
  for split, size in zip(("train", "test"), sizes):
    d = datasets.load(name, split, data_dir=data_dir or None)
    order = np.random.default_rng(config.seed).permutation(len(d["label"]))[:size]
    out[split] = {"image": np.asarray(d["image"])[order], "label": np.asarray(d["label"])[order].astype(np.int32)}
  return out


def model_costs(spec: str, input_shape: Sequence[int], num_classes: int) -> tuple[int, float]:
  """(trainable parameters, multiply-adds per image) of ``create_model(spec, num_classes=...)``
  on NHWC ``input_shape`` images (batch dimension included); nothing is compiled."""
  from jaxcnn.models import count_params, create_model, flops  # pylint: disable=g-import-not-at-top

  model = create_model(spec, num_classes=num_classes)
  return count_params(model, input_shape), flops(model, input_shape)


def family(spec: str) -> str:
  """The ``jaxcnn.models`` module that defines the model of ``spec``."""
  from jaxcnn.registry import parse_spec  # pylint: disable=g-import-not-at-top

  return zoo.family(parse_spec(spec)[0])


def train_config(config, spec: str):
  """The engine config (``jaxcnn.train.config``) for one model: the study's shared recipe.

  ``config.model`` holds only the name, so every model keeps its own activation, normalization
  and initialization.
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
  t.log_every_steps = 10_000  # only at epoch ends: no extra host syncs
  t.progress_bar = False
  return t


def train_one(config, label: str, spec: str, data: dict[str, dict[str, np.ndarray]],
              workdir: str) -> ArchResult:
  """Trains one model with :func:`train_config` on ``data``; its run folder is ``workdir``."""
  from jaxcnn.train.loop import fit  # pylint: disable=g-import-not-at-top

  num_classes = int(max(s["label"].max() for s in data.values()) + 1)
  params, macs = model_costs(spec, (1, *data["train"]["image"].shape[1:]), num_classes)
  res = fit(train_config(config, spec), workdir, data=data)
  return ArchResult(label=label, spec=spec, family=family(spec), params=params, macs=macs,
                    test_accuracy=float(res["test_accuracy"]),
                    train_accuracy=float(res["train_accuracy"]), steps=int(res["steps"]),
                    images_per_s=float(res["images_per_s"]), compile_s=float(res["compile_time_s"]),
                    wall_s=float(res["wall_time_s"]))


def _family_colors(results: Sequence[ArchResult]) -> dict[str, str]:
  return {f: f"C{i % 10}" for i, f in enumerate(sorted({r.family for r in results}))}


def bubble_sizes(params: Sequence[float], *, smallest: float = 30.0,
                 largest: float = 900.0) -> np.ndarray:
  """Marker areas (points^2) proportional to ``params``, clipped to ``[smallest, largest]``; the
  largest model gets ``largest``."""
  params = np.asarray(params, np.float64)
  if params.size == 0 or np.any(params <= 0):
    raise ValueError(f"bubble_sizes needs positive parameter counts, got {params.tolist()}.")
  return np.clip(largest * params / params.max(), smallest, largest)


def plot_accuracy_vs_cost(results: Sequence[ArchResult], path: str | None = None, *,
                          title: str | None = None, chance: float | None = None):
  """Two panels: test accuracy against multiply-adds (bubble area = parameters) and against
  parameters, log x axes, one colour per family. Returns the Figure; saves a PNG to ``path``."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  if not results:
    raise ValueError("plot_accuracy_vs_cost needs at least one result.")
  colors = _family_colors(results)
  sizes = bubble_sizes([r.params for r in results])
  fig = Figure(figsize=(11, 4.6), layout="constrained")
  axes = fig.subplots(1, 2)
  for ax, key, xlabel in ((axes[0], "macs", "multiply-adds per image"),
                          (axes[1], "params", "trainable parameters")):
    for r, s in zip(results, sizes):
      ax.scatter([getattr(r, key)], [100 * r.test_accuracy], s=s if key == "macs" else 40,
                 color=colors[r.family], alpha=0.55 if key == "macs" else 0.9,
                 edgecolors="0.2", lw=0.6, zorder=3)
    ax.set_xscale("log")
    zoo.place_labels(ax, [(r.label, getattr(r, key), 100 * r.test_accuracy, "0.1")
                          for r in results], fontsize=7)
    if chance is not None:
      ax.axhline(100 * chance, color="0.6", ls=":", lw=1, label="chance")
      ax.legend(fontsize="x-small", loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, ls=":", lw=0.6)
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo / 1.5, hi * 2.5)  # room for the labels
  axes[0].set_title("accuracy vs operations (bubble area ~ parameters)", fontsize="medium")
  axes[1].set_title("accuracy vs parameters", fontsize="medium")
  if title:
    fig.suptitle(title, fontsize="medium")
  if path:
    fig.savefig(path, format="png", dpi=100)
  return fig


def plot_time_vs_macs(results: Sequence[ArchResult], path: str | None = None, *,
                      title: str | None = None):
  """Training time per image (1 / images/s) against multiply-adds per image, log-log, with the
  least-squares line of slope 1 (time proportional to operations). Returns the Figure."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  if not results:
    raise ValueError("plot_time_vs_macs needs at least one result.")
  colors = _family_colors(results)
  fig = Figure(figsize=(6.2, 4.6), layout="constrained")
  ax = fig.add_subplot()
  macs = np.array([r.macs for r in results])
  ms = np.array([1e3 / r.images_per_s for r in results])
  for r, x, y in zip(results, macs, ms):
    ax.scatter([x], [y], s=40, color=colors[r.family], edgecolors="0.2", lw=0.6, zorder=3)
  offset = float(np.mean(np.log(ms) - np.log(macs)))  # log t = log MACs + c
  grid = np.geomspace(macs.min() / 1.5, macs.max() * 1.5, 20)
  ax.plot(grid, np.exp(offset) * grid, "k--", lw=1, label="time proportional to MACs (fit)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  zoo.place_labels(ax, [(r.label, x, y, "0.1") for r, x, y in zip(results, macs, ms)], fontsize=7)
  ax.set_xlabel("multiply-adds per image")
  ax.set_ylabel("training time per image (ms)")
  ax.grid(True, which="major", ls=":", lw=0.6)
  ax.legend(fontsize="x-small")
  ax.set_title(title or "Do operations predict time?", fontsize="medium")
  if path:
    fig.savefig(path, format="png", dpi=100)
  return fig


def log_correlation(x: Sequence[float], y: Sequence[float]) -> float:
  """Pearson correlation of ``log x`` and ``log y`` (nan for fewer than 3 points)."""
  x, y = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
  if x.size < 3:
    return float("nan")
  return float(np.corrcoef(x, y)[0, 1])


def _millions(value: float) -> str:
  return f"{value / 1e6:.3g}M"


def table_rows(results: Sequence[ArchResult]) -> list[tuple[Any, ...]]:
  """The cells of :data:`HEADERS` for each result."""
  return [(r.label, f"`{r.spec}`", r.family, f"{r.params:,}", _millions(r.macs),
           f"{100 * r.test_accuracy:.1f}%", f"{100 * r.train_accuracy:.1f}%", r.steps,
           f"{r.images_per_s:,.0f}", f"{r.compile_s:.1f}", f"{r.wall_s:.0f}") for r in results]


def run(config, workdir: str) -> dict[str, Any]:
  """Trains every model of ``config.models`` under the
  same budget; writes ``architectures.md`` (table), ``accuracy_vs_cost.png`` and
  ``time_vs_macs.png`` (and ``architectures.json``) to ``workdir`` and one engine run folder per model under
  ``workdir/runs/``.

  Returns ``{"results": [ArchResult], "data": {...}, "corr_time_macs": float, "table": path,
  "figures": [...]}``.
  """
  t0 = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  models = [tuple(m) for m in config.models]
  for m in models:
    if len(m) != 2:
      raise ValueError(f"Each entry of config.models must be (label, spec), got {m!r}.")
  data = load_data(config)
  shape = data["train"]["image"].shape
  source = ("digits (8x8, offline)" if config.dataset == "digits" else
            f"{config.dataset} ({config.data_dir})")
  print(f"architectures: {len(models)} models on {shape[0]} training images {shape[1:]} of "
        f"{source}", flush=True)
  results = []
  for label, spec in models:
    r = train_one(config, label, spec, data, os.path.join(workdir, "runs", label))
    print(f"  {label}: test accuracy {r.test_accuracy:.3f}, {r.params:,} params, "
          f"{_millions(r.macs)} MACs, {r.images_per_s:.0f} images/s, fit {r.wall_s:.0f} s",
          flush=True)
    results.append(r)
  num_classes = int(data["train"]["label"].max() + 1)
  steps = results[0].steps if results else 0
  budget = (f"{steps} optimizer steps of batch {config.batch_size} "
            f"({steps * int(config.batch_size):,} images seen, "
            f"{steps * int(config.batch_size) / shape[0]:.1f} epochs of {shape[0]:,} images)")
  title = (f"{'digits (quick)' if config.dataset == 'digits' else 'CIFAR-10 subset'}, "
           f"{shape[1]}x{shape[2]}, "
           f"same budget: {steps} steps of batch {config.batch_size}")
  figures = ["accuracy_vs_cost.png", "time_vs_macs.png"]
  plot_accuracy_vs_cost(results, os.path.join(workdir, figures[0]), title=title,
                        chance=1.0 / num_classes)
  plot_time_vs_macs(results, os.path.join(workdir, figures[1]),
                    title=f"Training time vs operations ({device_kind()})")
  corr = log_correlation([r.macs for r in results], [1.0 / r.images_per_s for r in results])
  corr_acc = log_correlation([r.macs for r in results], [r.test_accuracy for r in results])
  with open(os.path.join(workdir, "architectures.json"), "w") as f:
    json.dump({"device": device_kind(), "budget": budget,
               "results": [dataclasses.asdict(r) for r in results]}, f, indent=1)
  table = os.path.join(workdir, "architectures.md")
  with open(table, "w") as f:
    f.write("# Architectures under one budget\n\n"
            f"Data: {source}, {shape[0]:,} training and {len(data['test']['label']):,} test "
            f"images of {shape[1]}x{shape[2]}x{shape[3]}. Budget: {budget}, the same for every "
            f"model. Recipe: {config.optimizer} (lr {config.learning_rate}, cosine, "
            f"{config.warmup_epochs} warm-up epochs, weight decay {config.weight_decay}), "
            f"preprocessing `{config.preprocessing}`, augmentation "
            f"{tuple(config.augment)}. "
            f"MACs: multiply-adds per {shape[1]}x{shape[2]} image. Device: {device_kind()}.\n\n")
    f.write(common.markdown_table(table_rows(results), HEADERS) + "\n\n")
    fmt = lambda c: "n/a (fewer than 3 models)" if math.isnan(c) else f"{c:.2f}"  # noqa: E731
    f.write(f"Correlation of log(time per image) with log(MACs): {fmt(corr)}; of log(test "
            f"accuracy) with log(MACs): {fmt(corr_acc)}.\n\n")
    f.write("".join(f"![{p[:-4]}]({p})\n\n" for p in figures))
  print(f"architectures: done in {time.perf_counter() - t0:.0f} s; corr(log time, log MACs) = "
        f"{corr:.2f}", flush=True)
  return dict(results=results, num_train=shape[0], num_test=len(data["test"]["label"]),
              image_shape=shape[1:], budget=budget, corr_time_macs=corr,
              corr_accuracy_macs=corr_acc, table=table, figures=figures)


def device_kind() -> str:
  """The kind of ``jax.devices()[0]`` (e.g. ``cpu``, ``NVIDIA H100 80GB HBM3``)."""
  import jax  # pylint: disable=g-import-not-at-top

  return jax.devices()[0].device_kind
