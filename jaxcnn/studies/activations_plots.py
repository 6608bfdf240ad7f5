"""Figures of the activation-function study (:mod:`jaxcnn.studies.activations`).

Each ``plot_*`` takes the study's data (activation names, :class:`ActivationRun` results,
iterations to target), draws one matplotlib Figure, saves it as PNG when given a ``path`` and
returns it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def plot_activations(names: Sequence[str], path: str | None = None, *,
                     x_range: tuple[float, float] = (-4.0, 4.0), num: int = 401, dpi: int = 100):
  """A panel per activation with f (solid) and f' (dashed); returns the matplotlib Figure."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  from jaxcnn.studies.activations import activation_curve  # pylint: disable=g-import-not-at-top

  if not names:
    raise ValueError("plot_activations needs at least one activation name.")
  x = np.linspace(*x_range, num)
  cols = min(3, len(names))
  rows = -(-len(names) // cols)
  fig = Figure(figsize=(3.2 * cols, 2.5 * rows), layout="constrained", dpi=dpi)
  for ax, name in zip(fig.subplots(rows, cols, squeeze=False).ravel(), names):
    y, dy = activation_curve(name, x)
    ax.plot(x, y, label="f(x)")
    ax.plot(x, dy, "--", label="f'(x)")
    ax.axhline(0, color="0.7", lw=0.6)
    ax.axvline(0, color="0.7", lw=0.6)
    ax.set_title(name + (" (slope 0.25)" if name == "prelu" else
                         " max(x, 0.25x-0.5)" if name == "maxout" else ""), fontsize=9)
    ax.set_ylim(-2.0, 4.0)
    ax.tick_params(labelsize=7)
  fig.axes[0].legend(fontsize=7)
  for ax in fig.axes[len(names):]:
    ax.set_axis_off()
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def _band(ax, x, values, label, **kwargs):
  """Mean line and min-max band over the seed axis (last axis) of ``values``."""
  mean = np.nanmean(values, axis=-1)
  (line,) = ax.plot(x, mean, label=label, **kwargs)
  if values.shape[-1] > 1:
    ax.fill_between(x, np.nanmin(values, axis=-1), np.nanmax(values, axis=-1),
                    color=line.get_color(), alpha=0.15, lw=0)
  return line


def plot_curves(runs: Mapping[str, Any], path: str | None = None, *,
                target: float | None = None, dpi: int = 100):
  """Training (running) and validation error against iterations, mean and min-max over seeds.

  ``runs``: ``{activation: ActivationRun}`` (``eval_steps``, ``train_error``, ``val_error``).
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(11, 4), layout="constrained", dpi=dpi)
  axes = fig.subplots(1, 2, sharey=True)
  for i, (act, r) in enumerate(runs.items()):
    style = dict(color=f"C{i % 10}", ls="-" if i < 10 else "--")
    _band(axes[0], r.eval_steps[1:], r.train_error[1:], act, **style)
    _band(axes[1], r.eval_steps, r.val_error, act, **style)
  for ax, title in zip(axes, ("training error (running mean since last evaluation)",
                              "validation error")):
    if target is not None:
      ax.axhline(target, color="k", lw=0.8, ls=":")
    ax.set(title=title, xlabel="iteration", yscale="log")
    ax.grid(alpha=0.3, which="both")
  axes[0].set_ylabel("error (mean, band: min-max over seeds)")
  axes[1].legend(fontsize=8, ncol=2)
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_unit_stats(runs: Mapping[str, Any], path: str | None = None, *, dpi: int = 100):
  """Dead fraction (ReLU) and saturated fraction (tanh, sigmoid) per layer over training."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  panels = [(act, key) for act, r in runs.items() for key in ("dead", "saturated")
            if getattr(r, key) is not None and np.isfinite(getattr(r, key)).any()]
  if not panels:
    raise ValueError("No run recorded dead or saturated units (needs relu, tanh or sigmoid).")
  fig = Figure(figsize=(4 * len(panels), 3.3), layout="constrained", dpi=dpi)
  for ax, (act, key) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
    r = runs[act]
    values = getattr(r, key)
    for layer in range(values.shape[-1]):
      _band(ax, r.eval_steps, values[:, :, layer], f"layer {layer + 1}")
    ax.set(title=f"{act}: {key} fraction", xlabel="iteration", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_iterations(iterations: Mapping[str, np.ndarray], num_steps: int, target: float,
                    path: str | None = None, *, dpi: int = 100):
  """Bar chart: iterations to the target training error, mean and min-max over seeds.

  Seeds that never reached the target count as ``num_steps`` (a lower bound); such bars are
  hatched and labelled with ``>``.
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  names = list(iterations)
  fig = Figure(figsize=(1.0 * len(names) + 2.5, 3.6), layout="constrained", dpi=dpi)
  ax = fig.subplots()
  for i, name in enumerate(names):
    its = np.asarray(iterations[name])
    missed = its < 0
    values = np.where(missed, num_steps, its).astype(float)
    mean = values.mean()
    ax.bar(i, mean, color=f"C{i % 10}", hatch="//" if missed.any() else None,
           edgecolor="k" if missed.any() else None)
    ax.errorbar(i, mean, yerr=[[mean - values.min()], [values.max() - mean]], color="k",
                capsize=3)
    ax.text(i, values.max(), (">" if missed.any() else "") + f"{mean:.0f}", ha="center",
            va="bottom", fontsize=8)
  ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
  ax.set(ylabel="iterations", title=f"iterations to {target:.0%} training error\n"
         f"(hatched: some seed did not reach it in {num_steps})")
  ax.title.set_fontsize(9)
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig
