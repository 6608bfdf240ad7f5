"""A tabular NAS benchmark of our own: every cell of ``nasbench201.SMALL`` trained and recorded.

The 256 cells of :data:`~jaxcnn.search.nasbench201.SMALL` (4 free edges x {none, skip_connect,
nor_conv_1x1, nor_conv_3x3}) in the tiny macro network (``num_cells=1, channels=8``) are each
trained with one fixed recipe and several seeds on a fixed train/val split, and their final
validation accuracy and loss, training loss, parameters and multiply-adds are written to a small
JSON file with the recipe and the jax/jaxlib versions. :func:`load` reads it back as a
:class:`Table` whose :meth:`Table.lookup` (an :class:`~jaxcnn.search.evaluators.Lookup`) and
:meth:`Table.dense` (for :func:`~jaxcnn.search.benchmarks.lookup` and
:func:`~jaxcnn.search.benchmarks.simulate`) make a search over the table cost nothing.

Every (cell, seed) pair is one model with its own weights, initialised and trained from its
seed alone. The networks are the children of the shared-weight supernet
(:mod:`jaxcnn.search.supernet`) with the architecture a traced (unbatched) input, so one
compiled program over the seeds (:func:`jaxcnn.train.steps.over_models`: ``vmap`` on GPU/TPU, a
loop on CPU) and a ``lax.scan`` over the steps, trains every cell:
each switch stays a real conditional and a cell computes its own ops only, and a model's unused
ops get zero gradients and no Adam update. A model thus trains what the standalone
``nasbench201.build(SMALL.to_full(a))`` would from the same initial weights, at the cost of one
compilation instead of 256.

Regenerate (the shipped tables, ``digits`` and ``cifar10``; ``--quick`` trains four cells)::

  jaxcnn search-table --dataset digits --seeds 3 --out jaxcnn/search/data/digits.json
  jaxcnn search-table --dataset cifar10 --seeds 3 --out jaxcnn/search/data/cifar10.json

Each trained cell is appended at once to ``<out>.partial.jsonl`` (``digits.partial.jsonl``
here); the same command, run again after an interruption, trains only the cells not yet there.

References:
  Ying et al. 2019, "NAS-Bench-101: Towards Reproducible Neural Architecture Search" (ICML):
  tabular benchmarks, every cell of a space trained and recorded.
  Dong & Yang 2020, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture
  Search" (ICLR), Section 2: the cell space and its macro network.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.nn import conv as conv_lib
from jaxcnn.search import nasbench201 as nb
from jaxcnn.search import supernet as sn
from jaxcnn.search.evaluators import Lookup
from jaxcnn.train import recorder
from jaxcnn.train.steps import cross_entropy, over_models

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data"
DATASETS = ("digits", "cifar10")
METRICS = ("val_accuracy", "val_loss", "train_loss")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """The fixed training recipe of a table (every cell and seed trains with it).

  ``train_loss`` is the mean minibatch loss of the last ``loss_window`` steps.
  """

  dataset: str = "digits"
  num_train: int = 1200
  num_val: int = 418
  data_seed: int = 0
  num_cells: int = 1
  channels: int = 8
  learning_rate: float = 0.003
  num_steps: int = 60
  batch_size: int = 32
  loss_window: int = 10
  seeds: tuple[int, ...] = (0, 1, 2)

  def __post_init__(self):
    if self.dataset not in DATASETS:
      raise ValueError(f"Unknown dataset {self.dataset!r}. Known: {', '.join(DATASETS)}.")
    if self.num_steps < self.loss_window or self.loss_window < 1 or not self.seeds:
      raise ValueError(f"Need 1 <= loss_window <= num_steps and a seed, got loss_window="
                       f"{self.loss_window}, num_steps={self.num_steps}, seeds={self.seeds}.")


# Sizes of the CIFAR-10 variant: a 5,000 / 1,000 subset of the training split, 32x32x3.
CIFAR10 = dict(dataset="cifar10", num_train=5000, num_val=1000)


def load_splits(recipe: Recipe, data_dir: str | os.PathLike | None = None
                ) -> dict[str, dict[str, np.ndarray]]:
  """The recipe's train and val subsets (val carved from the training split, disjoint).

  ``digits`` is offline; ``cifar10`` reads ``data_dir`` (default ``../shared/data/cifar10``
  beside the repository).
  """
  from jaxcnn.data import sources  # pylint: disable=g-import-not-at-top

  if recipe.dataset == "cifar10" and data_dir is None:
    data_dir = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"
  return sources.subsets(recipe.dataset, {"train": recipe.num_train, "val": recipe.num_val},
                         seed=recipe.data_seed, data_dir=data_dir)


def supernet(recipe: Recipe, num_classes: int = 10) -> sn.SuperNet:
  """The supernet whose children are the table's networks."""
  return sn.SuperNet(num_cells=recipe.num_cells, channels=recipe.channels,
                     num_classes=num_classes)


@functools.lru_cache(maxsize=8)
def _program(recipe: Recipe, num_classes: int, input_shape: tuple[int, ...]):
  """``train(arch [6], seeds [S], train_x, train_y, val_x, val_y) -> metrics [S]``, jitted.

  The architecture is traced but not batched: every switch of the supernet stays a real
  conditional, so a call computes its cell's ops only (over the seeds as a population step is:
  :func:`jaxcnn.train.steps.over_models`), and one compilation serves every cell.
  """
  net = supernet(recipe, num_classes)
  tx = optax.adam(recipe.learning_rate)
  steps, batch = recipe.num_steps, recipe.batch_size

  def one(arch, seed, train_x, train_y, val_x, val_y):
    model_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    init_key = jax.random.split(model_key)[0]
    variables = net.init(init_key, jnp.zeros((1,) + input_shape), arch, train=False)
    params, stats = variables["params"], variables["batch_stats"]
    n = train_y.shape[0]
    per_epoch = n // batch

    def loss_fn(params, stats, x, y):
      logits, new = net.apply({"params": params, "batch_stats": stats}, x, arch, train=True,
                              mutable=["batch_stats"])
      return cross_entropy(logits, y).mean(), new["batch_stats"]

    def step(carry, s):
      params, stats, opt_state = carry
      epoch, position = s // per_epoch, s % per_epoch
      order = jax.random.permutation(jax.random.fold_in(data_key, epoch), n)
      ids = jax.lax.dynamic_slice_in_dim(order, position * batch, batch)
      x, y = train_x[ids].astype(jnp.float32) / 255.0, train_y[ids]
      (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, y)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), stats, opt_state), loss

    (params, stats, _), losses = jax.lax.scan(step, (params, stats, tx.init(params)),
                                              jnp.arange(steps))
    logits = net.apply({"params": params, "batch_stats": stats},
                       val_x.astype(jnp.float32) / 255.0, arch, train=False)
    return {"val_accuracy": (jnp.argmax(logits, -1) == val_y).mean(),
            "val_loss": cross_entropy(logits, val_y).mean(),
            "train_loss": losses[-recipe.loss_window:].mean()}

  seeds_of = over_models(one, len(recipe.seeds), in_axes=(None, 0, None, None, None, None))
  return conv_lib.jit(seeds_of)


def train_cells(archs: Any, recipe: Recipe, splits: dict[str, dict[str, np.ndarray]], *,
                progress: bool = True, on_row: Callable[[dict[str, Any]], None] | None = None
                ) -> dict[str, np.ndarray]:
  """Trains every cell of ``archs`` (SMALL indices, int [n, 4]) with every seed of the recipe.

  ``on_row``, if given, receives each cell's row (``index``, ``seconds`` and the metrics over the
  seeds, as lists) as soon as that cell is trained.

  Returns:
    ``{metric: float32 [n, seeds]}`` for :data:`METRICS`, and ``seconds`` float32 [n]: each
    cell's wall time (its seeds together; the first cell's includes the one compilation).
  """
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

  small = nb.SMALL.space.validate(np.asarray(archs))
  if small.ndim != 2:
    raise ValueError(f"archs must be SMALL indices int [n, {len(nb.SMALL.space)}], got shape "
                     f"{small.shape}.")
  tr, va = splits["train"], splits["val"]
  num_classes = int(max(tr["label"].max(), va["label"].max())) + 1
  data = [jnp.asarray(tr["image"]), jnp.asarray(tr["label"], jnp.int32),
          jnp.asarray(va["image"]), jnp.asarray(va["label"], jnp.int32)]
  program = _program(recipe, num_classes, tuple(tr["image"].shape[1:]))
  seeds = jnp.asarray(recipe.seeds, jnp.int32)
  out: dict[str, list[np.ndarray]] = {k: [] for k in METRICS + ("seconds",)}
  for index, arch in zip(tqdm(small, desc="cells", disable=not progress), nb.SMALL.to_full(small)):
    t0 = time.perf_counter()
    result = jax.device_get(program(jnp.asarray(arch), seeds, *data))
    out["seconds"].append(np.float32(time.perf_counter() - t0))
    for k in METRICS:
      out[k].append(np.asarray(result[k], np.float32))
    if on_row is not None:
      on_row({"index": index.tolist(), "seconds": float(out["seconds"][-1]),
              **{k: out[k][-1].tolist() for k in METRICS}})
  return {k: np.stack(v) for k, v in out.items()}


def costs(archs: Any, recipe: Recipe, input_shape: Sequence[int], num_classes: int = 10
          ) -> dict[str, np.ndarray]:
  """``{"params": int64 [n], "macs": float64 [n]}`` of the standalone networks of ``archs``."""
  from jaxcnn.search.costs import Costs  # pylint: disable=g-import-not-at-top

  build = lambda a: nb.build(nb.SMALL.to_full(a), num_cells=recipe.num_cells,
                             channels=recipe.channels, num_classes=num_classes)
  return Costs(build, input_shape)(nb.SMALL.space.validate(np.asarray(archs)))


def _recipe_json(recipe: Recipe) -> dict[str, Any]:
  return dict(dataclasses.asdict(recipe), seeds=list(recipe.seeds))


def read_partial(path: str | os.PathLike, recipe: Recipe) -> dict[tuple[int, ...], dict[str, Any]]:
  """The finished rows of an interrupted :func:`generate` (``{SMALL index: row}``), from the
  JSON-lines file it appends to (:func:`jaxcnn.train.recorder.read_rows`: a file of another
  recipe is refused by field, a last row cut short is dropped); ``{}`` if there is none yet."""
  rows = recorder.read_rows(path, _recipe_json(recipe), what="partial table")
  return {tuple(row["index"]): row for row in rows}


def generate(recipe: Recipe, archs: Any = None, *, data_dir: str | os.PathLike | None = None,
             progress: bool = True, partial: str | os.PathLike | None = None) -> dict[str, Any]:
  """The table of ``archs`` (default: all of SMALL) as the JSON-ready dict :func:`load` reads.

  ``partial``: a JSON-lines file that each trained cell is appended to at once. Cells already
  there (an earlier run with the same recipe, interrupted) are read instead of trained
  (:func:`read_partial`), so an interrupted run loses one cell at most and the same call resumes
  it. ``seconds_total`` is the sum of the cells' times (over every session).
  """
  archs = nb.SMALL.all() if archs is None else nb.SMALL.space.validate(np.asarray(archs))
  done = {} if partial is None else read_partial(partial, recipe)
  todo = np.asarray([a for a in archs.tolist() if tuple(a) not in done], np.int32).reshape(
      -1, archs.shape[1])
  splits = load_splits(recipe, data_dir)
  if len(todo):
    if done and progress:
      print(f"Resuming from {partial}: {len(done)} of {len(archs)} cells already trained.")

    def on_row(row: dict[str, Any]) -> None:
      done[tuple(row["index"])] = row
      if partial is not None:
        recorder.append_row(partial, _recipe_json(recipe), row)

    train_cells(todo, recipe, splits, progress=progress, on_row=on_row)
  rows = [done[tuple(a)] for a in archs.tolist()]
  metrics = {k: np.asarray([r[k] for r in rows], np.float64) for k in METRICS + ("seconds",)}
  cost = costs(archs, recipe, splits["train"]["image"].shape[1:])
  import jaxlib  # pylint: disable=g-import-not-at-top
  return {
      "recipe": _recipe_json(recipe),
      "versions": {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                   "backend": jax.default_backend()},
      "seconds_total": round(float(metrics["seconds"].sum()), 1),
      "space": {name: list(nb.SMALL.space.options(name)) for name in nb.SMALL.space.names},
      "cells": [nb.to_string(nb.arch_ops(a)) for a in nb.SMALL.to_full(archs)],
      "indices": archs.tolist(),
      "params": cost["params"].tolist(),
      "macs": cost["macs"].tolist(),
      "seconds": np.round(metrics["seconds"], 3).tolist(),
      **{k: np.round(metrics[k].astype(np.float64), 6).tolist() for k in METRICS},
  }


@dataclasses.dataclass
class Table:
  """A loaded table: per-cell metrics over seeds, and lookups for search.

  Attributes:
    space: the search space (``SMALL.space``), whose indices address the table.
    recipe: the training recipe.
    versions: jax / jaxlib versions and backend it was made with.
    indices: int32 [n, 4] SMALL indices of the rows.
    cells: the NAS-Bench-201 cell strings of the rows.
    metrics: ``{"val_accuracy", "val_loss", "train_loss": float32 [n, seeds]}``.
    params, macs, seconds: [n] per row (``seconds``: wall time of the row's seeds together).
  """

  space: Any
  recipe: Recipe
  versions: dict[str, str]
  indices: np.ndarray
  cells: list[str]
  metrics: dict[str, np.ndarray]
  params: np.ndarray
  macs: np.ndarray
  seconds: np.ndarray

  def mean(self, metric: str = "val_accuracy") -> np.ndarray:
    """float32 [n]: ``metric`` averaged over the seeds."""
    if metric not in self.metrics:
      raise ValueError(f"Unknown metric {metric!r}. Known: {', '.join(self.metrics)}.")
    return self.metrics[metric].mean(-1)

  def _column(self, metric: str, seed: int | None) -> np.ndarray:
    if seed is None:
      return self.mean(metric)
    self.mean(metric)  # checks the name
    values = self.metrics[metric]
    if not 0 <= seed < values.shape[1]:
      raise ValueError(f"seed must index one of the {values.shape[1]} seeds, got {seed}.")
    return values[:, seed]

  def dense(self, metric: str = "val_accuracy", seed: int | None = None) -> np.ndarray:
    """float32 array of shape ``space.num_options``: the mean (or seed ``seed``'s) ``metric``
    at each architecture (for :func:`~jaxcnn.search.benchmarks.lookup`)."""
    shape = tuple(int(k) for k in self.space.num_options)
    if len(self.indices) != int(np.prod(shape)):
      raise ValueError(f"The table holds {len(self.indices)} of the {int(np.prod(shape))} cells.")
    out = np.full(shape, np.nan, np.float32)
    out[tuple(self.indices.T)] = self._column(metric, seed)
    return out

  def lookup(self, metric: str = "val_accuracy", seed: int | None = None) -> Lookup:
    """An :class:`~jaxcnn.search.evaluators.Lookup` rewarding the mean ``metric`` over seeds,
    or, with ``seed``, one training run's value (a noisy benchmark: the search sees seed
    ``seed``'s result, as if it had trained each cell once); its metrics also hold ``regret``."""
    dense, best = self.dense(metric, seed), self.mean(metric).max()
    mean = self.dense(metric)
    return Lookup(lambda a: {"reward": dense[tuple(a)], "regret": best - mean[tuple(a)]},
                  reward_key="reward")

  def regret(self, archs: Any, metric: str = "val_accuracy") -> np.ndarray:
    """float32 [n]: best mean ``metric`` minus the mean of each architecture (int [n, 4]); like
    :meth:`top` and the ``regret`` of :meth:`lookup`, for a higher-is-better metric."""
    a = self.space.validate(np.asarray(archs))
    return self.mean(metric).max() - self.dense(metric)[tuple(np.moveaxis(a, -1, 0))]

  def top(self, fraction: float = 0.01, metric: str = "val_accuracy") -> np.ndarray:
    """bool [n]: the rows whose mean ``metric`` is at least the ``ceil(fraction * n)``-th best
    (ties at the threshold are all in, so there may be more rows than the fraction)."""
    values = self.mean(metric)
    k = int(np.ceil(fraction * len(values)))
    if not 1 <= k <= len(values):
      raise ValueError(f"fraction must select 1..{len(values)} rows, got {fraction}.")
    return values >= np.sort(values)[::-1][k - 1]


def read(path: str | os.PathLike) -> Table:
  """A :class:`Table` from a JSON file that :func:`generate` wrote."""
  raw = json.loads(pathlib.Path(path).read_text())
  recipe = raw["recipe"]
  recipe = Recipe(**dict(recipe, seeds=tuple(recipe["seeds"])))
  return Table(space=nb.SMALL.space, recipe=recipe, versions=raw["versions"],
               indices=np.asarray(raw["indices"], np.int32), cells=list(raw["cells"]),
               metrics={k: np.asarray(raw[k], np.float32) for k in METRICS},
               params=np.asarray(raw["params"], np.int64),
               macs=np.asarray(raw["macs"], np.float64),
               seconds=np.asarray(raw["seconds"], np.float32))


def load(name: str = "digits") -> Table:
  """A shipped table by name (``jaxcnn/search/data/<name>.json``)."""
  known = sorted(p.stem for p in DATA_DIR.glob("*.json"))
  if name not in known:
    raise ValueError(f"No shipped table {name!r}. Shipped: {', '.join(known) or 'none'}.")
  return read(DATA_DIR / f"{name}.json")


QUICK = np.asarray([[3, 3, 3, 3], [2, 1, 0, 3], [0, 0, 0, 1], [0, 0, 0, 0]], np.int32)


def main(argv: Sequence[str] | None = None) -> None:
  """``jaxcnn search-table --dataset digits --seeds 3 --out FILE [--quick]``."""
  parser = argparse.ArgumentParser(prog="jaxcnn search-table", description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", default="digits", choices=DATASETS)
  parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per cell")
  parser.add_argument("--out", required=True, help="the JSON file to write")
  parser.add_argument("--quick", action="store_true", help=f"only {len(QUICK)} cells")
  parser.add_argument("--data_dir", default=None, help="cifar10: the .npz folder")
  args = parser.parse_args(argv)
  if args.seeds < 1:
    parser.error(f"--seeds must be >= 1, got {args.seeds}.")
  recipe = Recipe(**(CIFAR10 if args.dataset == "cifar10" else {}),
                  seeds=tuple(range(args.seeds)))
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  partial = out.with_suffix(".partial.jsonl")  # the same command resumes an interrupted run
  table = generate(recipe, QUICK if args.quick else None, data_dir=args.data_dir, partial=partial)
  out.write_text(json.dumps(table, separators=(",", ":")) + "\n")
  partial.unlink(missing_ok=True)
  acc = np.asarray(table["val_accuracy"]).mean(-1)
  print(f"{len(acc)} cells in {table['seconds_total']} s -> {out}; mean val accuracy best "
        f"{acc.max():.4f}, median {np.median(acc):.4f}, worst {acc.min():.4f}")
