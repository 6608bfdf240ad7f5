"""Figures of the batch-normalization study (:mod:`jaxcnn.studies.batchnorm`).

Part 1 (at initialization) draws :func:`~jaxcnn.studies.batchnorm.init_analysis` results keyed by
network label; part 2 draws the learning-rate x batch-size grid cells. Each ``plot_*`` saves a
PNG when given a ``path`` and returns the matplotlib Figure.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np


def plot_histograms(results: Mapping[str, Mapping[str, Any]], layers_shown: Sequence[int],
                    path: str | None = None, *, title: str | None = None):
  """Histogram grid: one row per network, one column per layer (1-based indices).

  Each panel shows the density of the layer's nonzero activations pooled over inputs and units
  (blue) and the density of the units' mean activations (red outline; red ticks: each unit's
  mean). Where the two coincide, the spread of the layer is all between units: every unit is
  nearly constant over the inputs. The x range is cut at the 99.5th percentile. Returns the
  Figure.
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  rows, cols = len(results), len(layers_shown)
  fig = Figure(figsize=(1.9 * cols, 2.0 * rows + 0.6), layout="constrained")
  axes = fig.subplots(rows, cols, squeeze=False)
  for r, (label, res) in enumerate(results.items()):
    for c, layer in enumerate(layers_shown):
      ax, h = axes[r, c], res["hidden"][layer - 1]
      positive, unit_means = h[h > 0], h.mean(axis=0)
      hi = max(float(np.percentile(positive, 99.5)) if positive.size else 0.0,
               float(unit_means.max()), 1e-12)
      top = 1.0 / hi
      if positive.size:
        density, *_ = ax.hist(positive, bins=40, range=(0.0, hi), density=True,
                              color="tab:blue", alpha=0.7)
        top = float(density.max())
      ax.hist(unit_means, bins=40, range=(0.0, hi), density=True, histtype="step",
              color="tab:red", lw=1.2)
      ax.plot(unit_means, np.zeros_like(unit_means), "|", color="tab:red", ms=8, mew=0.6)
      ax.set_xlim(0.0, hi)
      ax.set_ylim(0.0, 1.6 * top)  # a spike of unit means is cut, the blue stays readable
      ax.set_yticks([])
      ax.tick_params(labelsize="x-small")
      ax.set_title(f"layer {layer}: zeros {np.mean(h == 0):.0%}\n"
                   f"cos {res['cosine'][layer - 1]:.2f}, between-input "
                   f"{res['variance_fraction'][layer - 1]:.2f}", fontsize="x-small")
      if c == 0:
        ax.set_ylabel(label, fontsize="small")
  if title:
    fig.suptitle(title, fontsize="medium")
  if path:
    fig.savefig(path, format="png", dpi=90)
  return fig


def plot_constancy(results: Mapping[str, Mapping[str, Any]], path: str | None = None):
  """Mean cosine similarity and input-variance fraction per layer, one line per network."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(9, 3.2), layout="constrained")
  axes = fig.subplots(1, 2)
  for (label, res), color in zip(results.items(), ("tab:blue", "tab:orange", "tab:green")):
    layers_ = np.arange(1, len(res["cosine"]) + 1)
    axes[0].plot(layers_, res["cosine"], ".-", color=color, label=label)
    axes[1].plot(layers_, res["direction_variance_fraction"], ".-", color=color,
                 label=f"{label}, unit-length rows")
    axes[1].plot(layers_, res["variance_fraction"], ":", color=color, label=f"{label}, raw")
  first = next(iter(results.values()))
  axes[0].plot(np.arange(1, len(first["cosine"]) + 1), first["predicted_cosine"], "k--", lw=1,
               label="no BN, infinite-width prediction")
  axes[0].axhline(1 / math.pi, color="0.6", ls=":", lw=1, label="1/pi (independent units)")
  axes[0].set_title("mean cosine similarity between inputs", fontsize="medium")
  axes[1].set_title("between-input share of the layer's variance", fontsize="medium")
  for ax in axes:
    ax.set_xlabel("hidden layer")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="x-small")
  if path:
    fig.savefig(path, format="png", dpi=90)
  return fig


def plot_predictions(results: Mapping[str, Mapping[str, Any]], path: str | None = None):
  """Bar chart of the predicted classes (softmax argmax) at init, one panel per network."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(3.2 * len(results), 2.6), layout="constrained")
  axes = fig.subplots(1, len(results), squeeze=False)[0]
  for ax, (label, res) in zip(axes, results.items()):
    k = res["logits"].shape[-1]
    counts = np.bincount(res["logits"].argmax(-1), minlength=k)
    ax.bar(np.arange(k), counts / counts.sum())
    ax.set_xticks(np.arange(k))
    ax.set_ylim(0, 1)
    ax.set_title(f"{label}: {res['concentration']:.0%} get class {res['majority_class']}",
                 fontsize="small")
    ax.set_xlabel("predicted class")
  axes[0].set_ylabel("fraction of inputs")
  if path:
    fig.savefig(path, format="png", dpi=90)
  return fig


def plot_training(cells: Sequence[Any], path: str | None = None, *,
                  metric: str = "test_accuracy"):
  """Curves of ``metric`` per epoch: one panel per batch size, color = learning rate,
  solid = BN, dashed = no BN; a diverged run stops at its last finite epoch.

  ``cells``: the study's :class:`~jaxcnn.studies.batchnorm.GridCell` results (``norm``,
  ``batch_size``, ``learning_rates``, ``finite`` and the per-epoch metrics).
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  batch_sizes = sorted({c.batch_size for c in cells})
  fig = Figure(figsize=(3.2 * len(batch_sizes), 3.0), layout="constrained")
  axes = fig.subplots(1, len(batch_sizes), squeeze=False, sharey=True)[0]
  colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
  for ax, bs in zip(axes, batch_sizes):
    for cell in cells:
      if cell.batch_size != bs:
        continue
      values = getattr(cell, metric)
      for j, lr in enumerate(cell.learning_rates):
        y = np.where(cell.finite[:, j], values[:, j], np.nan)
        epochs = np.arange(1, len(y) + 1)
        ax.plot(epochs, y, "-" if cell.norm != "none" else "--", marker=".",
                color=colors[j % len(colors)],
                label=f"{'BN' if cell.norm != 'none' else 'no BN'}, lr {lr:g}")
    ax.set_title(f"batch size {bs}", fontsize="small")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
  axes[0].set_ylabel(metric.replace("_", " "))
  axes[-1].legend(fontsize="xx-small")
  if path:
    fig.savefig(path, format="png", dpi=90)
  return fig
