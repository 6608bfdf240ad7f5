"""Figures of the weight-initialization study (:mod:`jaxcnn.studies.initialization`).

Every ``plot_*`` takes the study's results (or parts of them) and an optional PNG ``path`` and
returns the matplotlib figure.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from jaxcnn.studies import init_study


def init_label(spec: str) -> str:
  """Short label of an init spec: ``"orthogonal(gain=1.4142135623730951)"`` -> ``"orthogonal(1.41)"``."""
  spec = re.sub(r"\w+=", "", spec)
  return re.sub(r"\d+\.\d+(e-?\d+)?", lambda m: format(float(m.group(0)), ".3g"), spec)



_COLORS = ("tab:gray", "tab:orange", "tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown",
           "tab:pink", "tab:olive", "tab:cyan")


def _color(init: str, inits: Sequence[str]) -> str:
  return _COLORS[list(inits).index(init) % len(_COLORS)]


def _positive(values: np.ndarray) -> np.ndarray:
  """Zeros and non-finite values become NaN (gaps on a log axis)."""
  values = np.asarray(values, np.float64)
  return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def plot_layer_stats(stats: dict[str, dict[str, dict[str, Any]]], when: str, path: str | None = None,
                     *, dpi: int = 100):
  """Per-layer activation std and kernel-gradient norm, one line per init, one row per
  architecture. ``stats[arch][init][when]`` is a :func:`jaxcnn.diagnostics.network_stats` dict. Zero values (Fixup's
  gradients at init) are left out of the log plot."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  archs = list(stats)
  fig = Figure(figsize=(10, 3.2 * len(archs)), layout="constrained", dpi=dpi)
  axes = fig.subplots(len(archs), 2, squeeze=False)
  all_inits = list(dict.fromkeys(i for a in archs for i in stats[a]))
  for row, arch in zip(axes, archs):
    for init, by_when in stats[arch].items():
      s = by_when[when]
      style = dict(color=_color(init, all_inits), marker=".", label=init_label(init))
      row[0].semilogy(np.arange(1, len(s["act_std"]) + 1), _positive(s["act_std"]), "-", **style)
      row[1].semilogy(np.arange(1, len(s["grad_norm"]) + 1), _positive(s["grad_norm"]), "-",
                      **style)
    row[0].set(title=f"{arch}: std of activations ({when})", xlabel="activation layer (forward order)")
    row[1].set(title=f"{arch}: ||dL/dW|| per layer ({when})", xlabel="weight layer (forward order)")
    for ax in row:
      ax.xaxis.get_major_locator().set_params(integer=True)
    row[1].legend(fontsize="x-small")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_training(histories: dict[str, dict[str, dict[str, Any]]], path: str | None = None, *,
                  window: int = 10, dpi: int = 100):
  """Training loss (moving average over ``window`` steps) per init, one panel per architecture."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  archs = list(histories)
  fig = Figure(figsize=(5 * len(archs), 3.4), layout="constrained", dpi=dpi)
  axes = fig.subplots(1, len(archs), squeeze=False)[0]
  all_inits = list(dict.fromkeys(i for a in archs for i in histories[a]))
  for ax, arch in zip(axes, archs):
    for init, h in histories[arch].items():
      loss = np.asarray(h["loss"], np.float64)
      w = max(1, min(window, len(loss)))
      smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
      ax.plot(np.arange(w, len(loss) + 1), smooth, color=_color(init, all_inits),
              label=f"{init_label(init)}: {100 * h['test_accuracy'][-1]:.1f}%")
    ax.set(title=f"{arch}: training loss", xlabel="step", ylabel="cross-entropy")
    ax.set_ylim(0, 3.5)
    ax.legend(fontsize="x-small", title="final test accuracy", title_fontsize="x-small")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_std_by_layer(cases: Sequence[init_study.Case], path: str | None = None, *, dpi: int = 100):
  """Part (a): std of each hidden layer's activations, one line per init, a panel per nonlinearity."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  acts = list(dict.fromkeys(c.nonlinearity for c in cases))
  fig = Figure(figsize=(5 * len(acts), 3.6), layout="constrained", dpi=dpi)
  for ax, act in zip(fig.subplots(1, len(acts), squeeze=False)[0], acts):
    for c in (c for c in cases if c.nonlinearity == act):
      ax.semilogy(range(1, len(c.stats) + 1), _positive([s.std for s in c.stats]), "o-",
                  label=f"{init_label(c.init)}: {c.verdict}")
    ax.set(title=f"{act}, {len(c.stats)}-layer MLP", xlabel="hidden layer",
           ylabel="std of activations")
    ax.legend(fontsize="x-small")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_symmetry(runs: dict[str, dict[str, Any]], path: str | None = None, *, dpi: int = 100):
  """Left: largest spread across the units of each hidden layer during training, per init.
  Right: the first hidden layer's activations (16 examples x units) after training, per init:
  under constant init every row is one colour (all units equal)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(4.2 * (1 + len(runs)), 3.2), layout="constrained", dpi=dpi)
  axes = fig.subplots(1, 1 + len(runs))
  for (init, r), color in zip(runs.items(), _COLORS[1:]):
    for layer in range(r["act_spread"].shape[1]):
      axes[0].plot(r["act_spread"][:, layer], color=color, ls=("-", "--", ":")[layer % 3],
                   label=f"{init_label(init)}, hidden layer {layer + 1}")
  axes[0].set(title="max spread of activations across units", xlabel="SGD step")
  axes[0].legend(fontsize="xx-small")
  for ax, (init, r) in zip(axes[1:], runs.items()):
    image = ax.imshow(r["hidden_first"][1], aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set(title=f"{init_label(init)}: hidden layer 1 after training", xlabel="unit",
           ylabel="example")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig
