"""Figures of the architectures study (:mod:`jaxcnn.studies.architectures`).

Each ``plot_*`` takes the study's :class:`~jaxcnn.studies.architectures.ArchResult` list, draws
one matplotlib Figure, saves it as PNG when given a ``path`` and returns it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jaxcnn.studies import zoo


def _family_colors(results: Sequence[Any]) -> dict[str, str]:
  return {f: f"C{i % 10}" for i, f in enumerate(sorted({r.family for r in results}))}


def bubble_sizes(params: Sequence[float], *, smallest: float = 30.0,
                 largest: float = 900.0) -> np.ndarray:
  """Marker areas (points^2) proportional to ``params``, clipped to ``[smallest, largest]``; the
  largest model gets ``largest``."""
  params = np.asarray(params, np.float64)
  if params.size == 0 or np.any(params <= 0):
    raise ValueError(f"bubble_sizes needs positive parameter counts, got {params.tolist()}.")
  return np.clip(largest * params / params.max(), smallest, largest)


def plot_accuracy_vs_cost(results: Sequence[Any], path: str | None = None, *,
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


def plot_time_vs_macs(results: Sequence[Any], path: str | None = None, *,
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
