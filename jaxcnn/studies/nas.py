"""Study 7, NAS strategies: sample-based search on a table, and weight-sharing search.

Two questions on the 256-cell space :data:`jaxcnn.search.nasbench201.SMALL` (4 free edges x
{none, skip_connect, nor_conv_1x1, nor_conv_3x3}), whose every cell was trained and recorded on
the offline digits (:mod:`jaxcnn.search.tabular`):

1. **Sample-based strategies at equal budgets.** Random search, regularized evolution and
   REINFORCE read their rewards from the table (the mean validation accuracy over the table's
   seeds), so a search of ``budget`` evaluations costs nothing and ``num_seeds`` searches of each
   strategy run as one compiled program (:func:`jaxcnn.search.benchmarks.simulate`). Per budget:
   the probability of having found the best cell and a top-``top_fraction`` cell, and the regret
   (best table accuracy minus the best accuracy found). Random search's success probability and
   expected regret are also computed exactly (:func:`random_success`, :func:`random_regret`).
2. **Weight-sharing searches.** ENAS (:mod:`jaxcnn.search.enas`), random search with the same
   shared-weight trainer (one-shot random search, Li & Talwalkar 2019) and DARTS, first and
   second order (:mod:`jaxcnn.search.darts`), each trained on the table's own train/val split
   with the same number of weight steps, a few seeds each; the cell each derives is looked up in
   the table: its regret, its rank, and how many of its 4 edges are parameter-free (``none`` or
   ``skip_connect``), the collapse that Dong & Yang 2020 report for weight-sharing methods on
   NAS-Bench-201.

:func:`run` composes them from a config (``experiments/configs/nas.py``), draws the figures with
:mod:`jaxcnn.studies.nas_plots` and writes the report with :class:`jaxcnn.studies.common.Report`.

References:
  Dong & Yang 2020, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture
  Search" (ICLR), Section 5 and Table 5 (the same methods on the full space).
  Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search" (AAAI).
  Williams 1992, "Simple Statistical Gradient-Following Algorithms" (REINFORCE).
  Pham et al. 2018, "Efficient Neural Architecture Search via Parameter Sharing" (ICML).
  Liu, Simonyan & Yang 2019, "DARTS: Differentiable Architecture Search" (ICLR).
  Li & Talwalkar 2019, "Random Search and Reproducibility for Neural Architecture Search" (UAI).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.data import sources
from jaxcnn.search import benchmarks, nasbench201 as nb, strategies
from jaxcnn.search import supernet as sn
from jaxcnn.studies import common

SUBSPACE = nb.SMALL
PARAMETER_FREE = ("none", "skip_connect")
WS_METHODS = ("enas", "random_ws", "darts_v1", "darts_v2")


# ----------------------------------------------------------------------------------------------
# The table and its cells.


def cell_string(arch: Any) -> str:
  """The NAS-Bench-201 cell string of a SMALL architecture (int [4])."""
  return nb.to_string(nb.arch_ops(SUBSPACE.to_full(np.asarray(arch))))


def parameter_free_edges(arch: Any) -> int:
  """How many of the free edges of a SMALL architecture (int [4]) are ``none`` or
  ``skip_connect``."""
  ops = SUBSPACE.space.decode(np.asarray(arch))
  return sum(op in PARAMETER_FREE for op in ops.values())


def top_threshold(table: np.ndarray, fraction: float) -> float:
  """The accuracy of the ``ceil(fraction * size)``-th best cell: a cell at or above it is in the
  top ``fraction`` (ties included)."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"top_fraction must lie in (0, 1], got {fraction}.")
  values = np.sort(np.asarray(table, np.float64).reshape(-1))[::-1]
  return float(values[max(1, math.ceil(fraction * values.size)) - 1])


def random_success(table: np.ndarray, threshold: float, budget: int) -> float:
  """P(at least one of ``budget`` uniform draws, with replacement, reaches ``threshold``):
  ``1 - (1 - k / N) ** budget``, ``k`` the cells at or above it."""
  values = np.asarray(table, np.float64).reshape(-1)
  p = np.mean(values >= threshold)
  return float(1.0 - (1.0 - p) ** budget)


def random_regret(table: np.ndarray, budget: int) -> float:
  """Expected regret of random search after ``budget`` uniform draws with replacement, exactly:
  ``best - E[max]``, with ``P(max <= v) = (#{cells <= v} / N) ** budget``."""
  values = np.sort(np.asarray(table, np.float64).reshape(-1))
  distinct, counts = np.unique(values, return_counts=True)
  cdf = (np.cumsum(counts) / values.size) ** budget
  expected_max = float(np.sum(distinct * np.diff(np.concatenate([[0.0], cdf]))))
  return float(values[-1] - expected_max)


def load_table(name: str) -> tuple[np.ndarray, Any]:
  """The shipped table ``name`` (:func:`jaxcnn.search.tabular.load`): its mean validation
  accuracy as a dense float32 array of SMALL's shape ``(4, 4, 4, 4)``, and the table itself."""
  from jaxcnn.search import tabular  # pylint: disable=g-import-not-at-top

  table = tabular.load(name)
  return np.asarray(table.dense("val_accuracy"), np.float32), table


# ----------------------------------------------------------------------------------------------
# Part 1: sample-based strategies on the table.


def simulate(strategy: Any, table: np.ndarray, budget: int, num_seeds: int, seed: int = 0
             ) -> np.ndarray:
  """Rewards float32 [num_seeds, budget] of ``num_seeds`` searches reading ``table``, one
  evaluation per step (search ``i`` has key ``fold_in(PRNGKey(seed), i)``)."""
  if budget < 1 or num_seeds < 1:
    raise ValueError(f"Need budget >= 1 and num_seeds >= 1, got {budget} and {num_seeds}.")
  base = jax.random.PRNGKey(seed)
  keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_seeds))
  _, _, rewards = benchmarks.simulate(strategy, SUBSPACE.space, benchmarks.lookup(table), budget,
                                      keys)
  return np.asarray(rewards, np.float32)


def curves(rewards: np.ndarray, table: np.ndarray, budgets: Sequence[int], *,
           top_fraction: float = 0.01) -> dict[str, np.ndarray]:
  """Per budget ``b`` (after the first ``b`` evaluations of each search in ``rewards`` [m, B]):
  ``regret_mean``, ``regret_std``, ``regret_q25``, ``regret_q75``, ``success_best`` (fraction of
  searches that found a cell of the best accuracy) and ``success_top``, float64 [len(budgets)].
  """
  rewards = np.asarray(rewards, np.float64)
  budgets = [int(b) for b in budgets]
  if rewards.ndim != 2 or not budgets or min(budgets) < 1 or max(budgets) > rewards.shape[1]:
    raise ValueError(f"Need rewards [searches, evaluations] and budgets in [1, "
                     f"{rewards.shape[-1]}], got shape {rewards.shape} and {budgets}.")
  best = float(np.max(table))
  threshold = top_threshold(table, top_fraction)
  found = np.maximum.accumulate(rewards, axis=1)[:, np.asarray(budgets) - 1]  # [m, len(budgets)]
  regret = best - found
  return {"budget": np.asarray(budgets), "regret_mean": regret.mean(0),
          "regret_std": regret.std(0), "regret_q25": np.quantile(regret, 0.25, axis=0),
          "regret_q75": np.quantile(regret, 0.75, axis=0),
          "success_best": (found >= best).mean(0), "success_top": (found >= threshold).mean(0)}


def table_study(table: np.ndarray, specs: Sequence[tuple[str, str]], budgets: Sequence[int], *,
                num_seeds: int, seed: int = 0, top_fraction: float = 0.01) -> list[dict[str, Any]]:
  """Part 1: every strategy of ``specs`` ((label, :func:`jaxcnn.search.strategies.get` spec))
  simulated ``num_seeds`` times on ``table``; one row per (strategy, budget), with random
  search's exact values beside (``*_exact``) for the ``random`` strategy."""
  table = np.asarray(table, np.float32)
  threshold = top_threshold(table, top_fraction)
  rows = []
  for label, spec in specs:
    strategy = strategies.get(spec)
    t0 = time.perf_counter()
    c = curves(simulate(strategy, table, max(budgets), num_seeds, seed), table, budgets,
               top_fraction=top_fraction)
    seconds = time.perf_counter() - t0
    for i, b in enumerate(c["budget"]):
      row = {"strategy": label, "spec": spec, "budget": int(b), "seeds": num_seeds,
             **{k: float(v[i]) for k, v in c.items() if k != "budget"}, "seconds": seconds}
      if isinstance(strategy, strategies.RandomSearch):
        row.update(success_best_exact=random_success(table, float(table.max()), int(b)),
                   success_top_exact=random_success(table, threshold, int(b)),
                   regret_exact=random_regret(table, int(b)))
      rows.append(row)
  return rows


# ----------------------------------------------------------------------------------------------
# Part 2: weight-sharing searches, their derived cells looked up in the table.


def _preprocess(x: jax.Array) -> jax.Array:
  return x.astype(jnp.float32) / 255.0  # as the table's recipe


def _shared_trainer(config, source: Any, seed: int, tx: optax.GradientTransformation) -> Any:
  from jaxcnn.search import enas  # pylint: disable=g-import-not-at-top

  supernet = sn.SuperNet(num_cells=int(config.num_cells), channels=int(config.channels),
                         num_classes=int(config.num_classes))
  return enas.SharedTraining(supernet, tx, source, train_steps=int(config.enas_train_steps),
                             batch_size=int(config.ws_batch_size), subspace=SUBSPACE, seed=seed,
                             preprocess=_preprocess)


def optimizers(config) -> dict[str, optax.GradientTransformation]:
  """The optax chains of part 2, made once so that every seed reuses the compiled steps:
  ``shared`` (ENAS's and random's shared weights: SGD, Nesterov momentum 0.9), ``darts_w`` and
  ``darts_alpha`` (DARTS's, :func:`jaxcnn.search.darts.weight_optimizer` and
  :func:`~jaxcnn.search.darts.alpha_optimizer`)."""
  from jaxcnn.search import darts  # pylint: disable=g-import-not-at-top

  return {"shared": optax.sgd(float(config.ws_learning_rate), momentum=0.9, nesterov=True),
          "darts_w": darts.weight_optimizer(int(config.ws_steps)),
          "darts_alpha": darts.alpha_optimizer()}


def spearman(a: Any, b: Any) -> float:
  """Spearman's rank correlation of two vectors (average ranks for ties)."""
  def ranks(x):
    x = np.asarray(x, np.float64).reshape(-1)
    order = np.argsort(x, kind="stable")
    r = np.empty_like(x)
    r[order] = np.arange(x.size)
    for v in np.unique(x):  # ties share their mean rank
      r[x == v] = r[x == v].mean()
    return r
  ra, rb = ranks(a), ranks(b)
  if ra.std() == 0 or rb.std() == 0:
    return float("nan")
  return float(np.corrcoef(ra, rb)[0, 1])


def run_sampled_ws(method: str, config, source: Any, seed: int,
                   tx: optax.GradientTransformation) -> dict[str, Any]:
  """ENAS (``"enas"``) or one-shot random search (``"random_ws"``): the controller (or uniform
  sampling) asks ``enas_train_steps`` cells per call and the shared weights train one step on
  each, for ``ws_steps`` weight steps in all; then ``final_samples`` cells drawn from the final
  policy are scored with the shared weights and the best is the derived cell (Pham et al. 2018,
  Section 2.2; Li & Talwalkar 2019, Section 4). Also scores all 256 cells with the final shared
  weights, for the rank correlation with the table."""
  from jaxcnn.search import enas  # pylint: disable=g-import-not-at-top

  trainer = _shared_trainer(config, source, seed, tx)
  per_call = int(config.enas_train_steps)
  budget = max(1, int(config.ws_steps) // per_call) * per_call  # cells asked = weight steps
  if method == "enas":
    strategy = strategies.get("enas", learning_rate=float(config.enas_learning_rate))
  elif method == "random_ws":
    strategy = strategies.get("random")
  else:
    raise ValueError(f"Unknown sampled weight-sharing method {method!r}; known: enas, random_ws.")
  key = jax.random.PRNGKey(seed)
  result = enas.search(SUBSPACE.space, strategy, trainer, budget, key, batch_size=per_call,
                       progress=False)
  k_final = jax.random.fold_in(key, 1)
  if method == "enas":
    final = enas.final(strategy, result.state, trainer, k_final,
                       num_samples=int(config.final_samples), top_k=1)
    arch, shared = final.archs[0], float(final.rewards[0])
  else:
    candidates = np.unique(np.asarray(SUBSPACE.space.sample(k_final, int(config.final_samples))),
                           axis=0)
    scores, _ = trainer.score(candidates)
    arch, shared = candidates[int(np.argmax(scores))], float(np.max(scores))
  all_scores, _ = trainer.score(SUBSPACE.all())
  return {"arch": np.asarray(arch, np.int32), "shared_accuracy": shared,
          "all_shared": np.asarray(all_scores, np.float32), "weight_steps": budget}


def run_darts(config, source: Any, seed: int, txs: dict[str, optax.GradientTransformation], *,
              second_order: bool) -> dict[str, Any]:
  """DARTS on SMALL (its mask), ``ws_steps`` alpha-and-weight steps; the derived cell keeps
  ``none`` where it wins (NAS-Bench-201's rule)."""
  from jaxcnn.search import darts  # pylint: disable=g-import-not-at-top

  net = darts.DARTSNet(num_cells=int(config.num_cells), channels=int(config.channels),
                       num_classes=int(config.num_classes), mask=SUBSPACE.mask)
  result = darts.search(net, source, num_steps=int(config.ws_steps),
                        batch_size=int(config.ws_batch_size), key=jax.random.PRNGKey(seed),
                        xi=float(config.darts_xi) if second_order else 0.0,
                        w_tx=txs["darts_w"], alpha_tx=txs["darts_alpha"],
                        preprocess=_preprocess, progress=False)
  weights = np.asarray(darts.edge_weights(result.alpha, SUBSPACE.mask))
  return {"arch": darts.to_subspace(result.arch, SUBSPACE), "shared_accuracy": None,
          "all_shared": None, "weight_steps": int(config.ws_steps),
          "alpha_weights": weights[[nb.SPACE.names.index(n) for n in SUBSPACE.space.names]]}


def ws_row(method: str, seed: int, out: dict[str, Any], table: np.ndarray, seconds: float
           ) -> dict[str, Any]:
  """One weight-sharing run as a report row: the derived cell and its table figures."""
  arch = np.asarray(out["arch"], np.int32)
  accuracy = float(table[tuple(arch)])
  flat = np.asarray(table, np.float64).reshape(-1)
  row = {"method": method, "seed": seed, "cell": cell_string(arch),
         "ops": list(SUBSPACE.space.decode(arch).values()), "indices": arch.tolist(),
         "table_accuracy": accuracy, "regret": float(flat.max() - accuracy),
         "rank": int(np.sum(flat > accuracy)) + 1, "parameter_free": parameter_free_edges(arch),
         "shared_accuracy": out["shared_accuracy"], "weight_steps": out["weight_steps"],
         "seconds": seconds, "spearman": None}
  if out.get("all_shared") is not None:
    row["spearman"] = spearman(out["all_shared"], flat)
  return row


def ws_study(config, table: np.ndarray, splits: dict[str, dict[str, np.ndarray]]
             ) -> list[dict[str, Any]]:
  """Part 2: every method of ``config.ws_methods`` with seeds ``seed .. seed + ws_seeds - 1``,
  one row each (:func:`ws_row`)."""
  unknown = [m for m in config.ws_methods if m not in WS_METHODS]
  if unknown:
    raise ValueError(f"Unknown weight-sharing methods {unknown}; known: {', '.join(WS_METHODS)}.")
  source = sources.InMemory(splits, eval_batch_size=int(config.eval_batch_size))
  txs = optimizers(config)
  rows = []
  for method in config.ws_methods:
    for seed in range(int(config.seed), int(config.seed) + int(config.ws_seeds)):
      t0 = time.perf_counter()
      if method.startswith("darts"):
        out = run_darts(config, source, seed, txs, second_order=method == "darts_v2")
      else:
        out = run_sampled_ws(method, config, source, seed, txs["shared"])
      rows.append(ws_row(method, seed, out, table, time.perf_counter() - t0))
      r = rows[-1]
      print(f"nas: {method}, seed {seed}: {r['cell']} (table accuracy {r['table_accuracy']:.4f}, "
            f"rank {r['rank']}, {r['parameter_free']} parameter-free edges), {r['seconds']:.0f} s",
            flush=True)
  return rows


# ----------------------------------------------------------------------------------------------
# The study.


@dataclasses.dataclass(frozen=True)
class Results:
  """What :func:`run` returns (and writes to results.json).

  Attributes:
    table: the table's summary: cells, best accuracy and cell(s), top-fraction threshold, the
      parameter-free edges of the best cell, the accuracy of the all-``none`` cell.
    strategies: :func:`table_study` rows.
    weight_sharing: :func:`ws_study` rows.
    seconds: wall time of each part.
  """

  table: dict[str, Any]
  strategies: list[dict[str, Any]]
  weight_sharing: list[dict[str, Any]]
  seconds: dict[str, float]


def summarize_table(table: np.ndarray, top_fraction: float) -> dict[str, Any]:
  """The figures of a table the report quotes."""
  flat = np.asarray(table, np.float64).reshape(-1)
  best = SUBSPACE.all()[flat == flat.max()]
  threshold = top_threshold(table, top_fraction)
  free = np.asarray([parameter_free_edges(a) for a in SUBSPACE.all()])
  return {"cells": int(flat.size), "best_accuracy": float(flat.max()),
          "best_cells": [cell_string(a) for a in best], "num_best": int(len(best)),
          "best_parameter_free": [parameter_free_edges(a) for a in best],
          "top_fraction": top_fraction, "top_threshold": threshold,
          "num_top": int(np.sum(flat >= threshold)), "median_accuracy": float(np.median(flat)),
          "worst_accuracy": float(flat.min()),
          "mean_accuracy_by_parameter_free": {int(k): float(flat[free == k].mean())
                                              for k in np.unique(free)}}


def run(config, workdir: str) -> Results:
  """The whole study from ``config`` (experiments/configs/nas.py); writes ``nas.md``,
  ``results.json``, ``regret.png``, ``success.png`` and ``weight_sharing.png`` to ``workdir``."""
  from jaxcnn.search import tabular  # pylint: disable=g-import-not-at-top

  table, recipe_table = load_table(config.table)
  top = float(config.top_fraction)
  t0 = time.perf_counter()
  specs = [tuple(s) for s in config.strategies]
  rows = table_study(table, specs, list(config.budgets), num_seeds=int(config.num_seeds),
                     seed=int(config.seed), top_fraction=top)
  t1 = time.perf_counter()
  ws = []
  if config.ws_methods and int(config.ws_seeds) > 0:
    splits = tabular.load_splits(recipe_table.recipe)
    ws = ws_study(config, table, splits)
  t2 = time.perf_counter()
  results = Results(table=summarize_table(table, top), strategies=rows, weight_sharing=ws,
                    seconds={"table": t1 - t0, "weight_sharing": t2 - t1})
  write_report(config, results, workdir, table, getattr(recipe_table, "recipe", None))
  common.save_results(results, workdir)
  return results


def strategy_table_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
  """Part 1 rows for the report: strategy, budget, P(best), P(top), regret mean and spread."""
  out = []
  for r in rows:
    exact = r.get("success_best_exact")
    out.append([r["strategy"], r["budget"], r["success_best"],
                None if exact is None else exact, r["success_top"],
                r.get("success_top_exact"), 100 * r["regret_mean"], 100 * r["regret_std"],
                None if r.get("regret_exact") is None else 100 * r["regret_exact"]])
  return out


STRATEGY_HEADERS = ("strategy", "budget", "P(best)", "P(best) exact", "P(top)", "P(top) exact",
                    "regret (pt)", "regret std (pt)", "regret exact (pt)")
WS_HEADERS = ("method", "seed", "derived cell", "table acc", "regret (pt)", "rank of 256",
              "param-free edges", "shared-weight acc", "Spearman(shared, table)", "weight steps",
              "s")


def ws_table_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
  """Part 2 rows for the report."""
  return [[r["method"], r["seed"], f"`{r['cell']}`", r["table_accuracy"], 100 * r["regret"],
           r["rank"], r["parameter_free"], r["shared_accuracy"], r["spearman"],
           r["weight_steps"], r["seconds"]] for r in rows]


def ws_summary_rows(rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
  """Per method: mean regret, mean rank, mean parameter-free edges, all-parameter-free runs."""
  out = []
  for method in dict.fromkeys(r["method"] for r in rows):
    rs = [r for r in rows if r["method"] == method]
    spear = [r["spearman"] for r in rs if r["spearman"] is not None]
    out.append([method, len(rs), 100 * np.mean([r["regret"] for r in rs]),
                np.mean([r["rank"] for r in rs]), np.mean([r["parameter_free"] for r in rs]),
                sum(r["parameter_free"] == len(SUBSPACE.space) for r in rs),
                float(np.mean(spear)) if spear else None])
  return out


WS_SUMMARY_HEADERS = ("method", "runs", "mean regret (pt)", "mean rank", "mean param-free edges",
                      "runs with 4 of 4 param-free", "mean Spearman")


def write_report(config, results: Results, workdir: str, table: np.ndarray,
                 recipe: Any = None) -> str:
  """Writes the figures and ``nas.md`` into ``workdir``; returns the report's path.

  ``table``: the dense accuracies the study read; ``recipe``: the table's training recipe (for
  the report's first paragraph), or None.
  """
  from jaxcnn.studies import nas_plots as plots  # pylint: disable=g-import-not-at-top

  t = results.table
  dpi = int(config.dpi)
  regret_png = os.path.join(os.path.abspath(workdir), "regret.png")
  plots.plot_strategies(results.strategies, regret_png, dpi=dpi)
  report = common.Report("NAS strategies on a 256-cell table")
  report.text(
      f"Space: `nasbench201.SMALL`, the NAS-Bench-201 cell with 4 free edges (1<-0, 2<-1, 3<-2, "
      f"3<-0) x {{none, skip_connect, nor_conv_1x1, nor_conv_3x3}} and the other two edges "
      f"`none`: {t['cells']} cells. Table: `tabular.load({config.table!r})`"
      + (f", every cell trained {recipe.num_steps} Adam steps (lr {recipe.learning_rate}, batch "
         f"{recipe.batch_size}) on {recipe.num_train} {recipe.dataset} images, seeds "
         f"{tuple(recipe.seeds)}, macro network num_cells={recipe.num_cells}, channels="
         f"{recipe.channels}" if recipe is not None else "")
      + "; the reward is the mean validation accuracy over the seeds.",
      f"Best table accuracy {t['best_accuracy']:.4f} ({t['num_best']} cell(s): "
      + ", ".join(f"`{c}`" for c in t["best_cells"][:3])
      + f"); top {100 * t['top_fraction']:g}%: accuracy >= {t['top_threshold']:.4f} "
      f"({t['num_top']} cells); median {t['median_accuracy']:.4f}, worst "
      f"{t['worst_accuracy']:.4f}. Mean table accuracy by the number of parameter-free edges: "
      + ", ".join(f"{k}: {v:.3f}" for k, v in t["mean_accuracy_by_parameter_free"].items()) + ".")
  report.section("Part 1: sample-based strategies at equal budgets")
  report.text(
      f"{results.strategies[0]['seeds'] if results.strategies else 0} searches per strategy "
      f"(one compiled program each, `benchmarks.simulate`), one evaluation per step; budgets "
      f"{tuple(config.budgets)}. Strategies: "
      + ", ".join(f"{label} = `{spec}`" for label, spec in config.strategies)
      + ". P(best): the fraction of searches that evaluated a cell of the best accuracy; P(top): "
      f"a top-{100 * t['top_fraction']:g}% cell; regret: best table accuracy minus the best "
      "accuracy found, in percentage points. The `exact` columns are random search's values "
      "computed from the table (uniform draws with replacement), beside its measured ones.")
  report.table(strategy_table_rows(results.strategies), STRATEGY_HEADERS, floatfmt=".3g")
  report.figure(regret_png, "Left: mean regret against budget (band: 25-75% of the searches); "
                "right: probability of having found the best cell (solid) and a top cell "
                "(dashed); random search's exact values dotted.")
  if results.weight_sharing:
    ws_png = os.path.join(os.path.abspath(workdir), "weight_sharing.png")
    plots.plot_weight_sharing(results.weight_sharing, table,
                              ws_png, dpi=dpi)
    report.section("Part 2: weight-sharing searches, derived cells looked up in the table")
    report.text(
        f"Trained on the table's own train/val split, {config.ws_steps} weight steps each of "
        f"batch {config.ws_batch_size}, seeds {config.seed}..{config.seed + config.ws_seeds - 1}"
        f", macro network num_cells={config.num_cells}, channels={config.channels}. ENAS and "
        f"one-shot random search: shared weights trained by SGD (lr {config.ws_learning_rate}, "
        f"Nesterov momentum 0.9), one step per asked cell, {config.enas_train_steps} cells per "
        f"controller update (ENAS controller: Adam {config.enas_learning_rate}); the derived "
        f"cell is the best by shared-weight accuracy of {config.final_samples} cells drawn from "
        "the final policy (uniform for random). DARTS: the paper's optimizers "
        f"(`darts.weight_optimizer`, `darts.alpha_optimizer`), first order (darts_v1) and "
        f"second order with xi = {config.darts_xi} (darts_v2); the argmax keeps `none`, "
        "NAS-Bench-201's rule. Spearman: rank correlation of the 256 cells' shared-weight "
        "accuracies with the table's.")
    report.table(ws_summary_rows(results.weight_sharing), WS_SUMMARY_HEADERS, floatfmt=".3g",
                 title=None)
    report.table(ws_table_rows(results.weight_sharing), WS_HEADERS, floatfmt=".3g")
    report.figure(ws_png, "Table accuracy of every cell (grey, by rank) and of the cells the "
                  "weight-sharing searches derived (one marker per seed; the number: its "
                  "parameter-free edges).")
    report.text(
        "Dong & Yang 2020 (NAS-Bench-201, Section 5) ran the same families on the full "
        "15,625-cell space: REA, REINFORCE and random search ended near the best cell, while "
        "the weight-sharing methods (DARTS in particular) converged to cells of parameter-free "
        "operations. Here: the mean parameter-free edges above against the table's "
        "accuracy by parameter-free edges in the first paragraph.")
  report.text(f"Wall time: table part {results.seconds['table']:.0f} s, weight-sharing part "
              f"{results.seconds['weight_sharing']:.0f} s.")
  return report.write(os.path.join(workdir, "nas.md"))
