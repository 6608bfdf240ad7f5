"""Figures of the compound-scaling study: accuracy against multiply-adds per scaling method."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

_STYLE = {"compound": ("C3", "o"), "width": ("C0", "s"), "depth": ("C2", "^"),
          "resolution": ("C1", "D")}


def plot_scaling(rows: Sequence[Mapping[str, Any]], path: str, *, title: str | None = None,
                 dpi: int = 100) -> None:
  """One line per method through its ``phi = 0 .. N`` models: multiply-adds (log) against
  accuracy (Tan & Le 2019, Figure 3 / Figure 8), each point labelled with its phi.

  Args:
    rows: :func:`jaxcnn.search.scaling.scale_up` rows (``method``, ``phi``, ``macs``,
      ``accuracy``, optionally ``accuracy_std``).
    path: the PNG to write.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  methods = list(dict.fromkeys(r["method"] for r in rows))
  if not methods:
    raise ValueError("plot_scaling needs at least one row.")
  fig, ax = plt.subplots(figsize=(6, 4.2))
  for method in methods:
    pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["phi"])
    x = np.array([r["macs"] for r in pts], np.float64)
    y = np.array([r["accuracy"] for r in pts], np.float64)
    err = np.array([r.get("accuracy_std", 0.0) for r in pts], np.float64)
    color, marker = _STYLE.get(method, (None, "o"))
    ax.errorbar(x, y, yerr=err, color=color, marker=marker, ms=5, lw=1.5, capsize=2,
                label=f"{method} scaling")
    for r in pts:
      ax.annotate(f"φ={r['phi']}", (r["macs"], r["accuracy"]), fontsize=6, xytext=(3, 3),
                  textcoords="offset points", color=color)
  ax.set_xscale("log")
  ax.set_xlabel("multiply-adds per image")
  ax.set_ylabel("validation accuracy")
  if title:
    ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
