"""Figures of the NAS-strategies study (:mod:`jaxcnn.studies.nas`).

Each ``plot_*`` takes the study's rows, draws one matplotlib Figure, saves it as PNG when given a
``path`` and returns it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

_MARKERS = {"enas": "o", "random_ws": "s", "darts_v1": "^", "darts_v2": "v"}


def plot_strategies(rows: Sequence[dict[str, Any]], path: str | None = None, *,
                    dpi: int = 100, title: str | None = None):
  """Two panels against budget, one colour per strategy: mean regret (percentage points, band
  from the 25% to the 75% quantile of the searches) and the success probabilities (best cell
  solid, top cell dashed); random search's exact values dotted, in black."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  labels = list(dict.fromkeys(r["strategy"] for r in rows))
  if not labels:
    raise ValueError("plot_strategies needs at least one row.")
  fig = Figure(figsize=(11, 4.2), layout="constrained")
  ax_regret, ax_success = fig.subplots(1, 2)
  for i, label in enumerate(labels):
    rs = sorted((r for r in rows if r["strategy"] == label), key=lambda r: r["budget"])
    b = np.array([r["budget"] for r in rs])
    color = f"C{i}"
    ax_regret.plot(b, [100 * r["regret_mean"] for r in rs], "o-", color=color, ms=3, label=label)
    ax_regret.fill_between(b, [100 * r["regret_q25"] for r in rs],
                           [100 * r["regret_q75"] for r in rs], color=color, alpha=0.15, lw=0)
    ax_success.plot(b, [r["success_best"] for r in rs], "o-", color=color, ms=3,
                    label=f"{label}: best")
    ax_success.plot(b, [r["success_top"] for r in rs], "o--", color=color, ms=3,
                    label=f"{label}: top")
    if "regret_exact" in rs[0]:
      ax_regret.plot(b, [100 * r["regret_exact"] for r in rs], ":", color="k", lw=1.2,
                     label=f"{label}, exact")
      ax_success.plot(b, [r["success_best_exact"] for r in rs], ":", color="k", lw=1.2,
                      label=f"{label}, exact")
      ax_success.plot(b, [r["success_top_exact"] for r in rs], ":", color="0.5", lw=1.2)
  ax_regret.set_xlabel("evaluations (budget)")
  ax_regret.set_ylabel("regret: best - found (accuracy points)")
  ax_regret.set_yscale("symlog", linthresh=0.1)
  ax_regret.set_title("regret (mean; band 25-75%)", fontsize="medium")
  ax_success.set_xlabel("evaluations (budget)")
  ax_success.set_ylabel("probability")
  ax_success.set_ylim(-0.02, 1.02)
  ax_success.set_title("found the best cell (solid) / a top cell (dashed)", fontsize="medium")
  for ax in (ax_regret, ax_success):
    ax.grid(True, ls=":", lw=0.6)
    ax.legend(fontsize="x-small")
  if title:
    fig.suptitle(title, fontsize="medium")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_weight_sharing(rows: Sequence[dict[str, Any]], table: np.ndarray,
                        path: str | None = None, *, dpi: int = 100, title: str | None = None):
  """Every cell's table accuracy against its rank (grey), and the cells each weight-sharing
  run derived (one marker per run, labelled with its parameter-free edges)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  if not rows:
    raise ValueError("plot_weight_sharing needs at least one row.")
  values = np.sort(np.asarray(table, np.float64).reshape(-1))[::-1]
  fig = Figure(figsize=(7, 4.2), layout="constrained")
  ax = fig.add_subplot()
  ax.plot(np.arange(1, values.size + 1), values, color="0.6", lw=1.5, label="all cells")
  methods = list(dict.fromkeys(r["method"] for r in rows))
  for i, method in enumerate(methods):
    rs = [r for r in rows if r["method"] == method]
    ax.scatter([r["rank"] for r in rs], [r["table_accuracy"] for r in rs], s=40,
               marker=_MARKERS.get(method, "o"), color=f"C{i}", edgecolors="0.2", lw=0.6,
               zorder=3, label=method)
    for r in rs:
      ax.annotate(str(r["parameter_free"]), (r["rank"], r["table_accuracy"]), fontsize=7,
                  xytext=(4, 4), textcoords="offset points", color=f"C{i}")
  ax.set_xscale("log")
  ax.set_xlabel("rank in the table (1 = best)")
  ax.set_ylabel("table validation accuracy")
  ax.set_title(title or "cells derived by weight sharing (number: parameter-free edges)",
               fontsize="medium")
  ax.grid(True, ls=":", lw=0.6)
  ax.legend(fontsize="x-small")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig
