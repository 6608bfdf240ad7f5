"""Figures of a search: reward per evaluation with the best so far, a found cell's DAG, the
Pareto front of reward against cost, and accuracy against multiply-adds per scaling method.

``plot_rewards`` draws what ``history.jsonl`` holds; ``draw_cell``/``plot_cell`` draw a
NAS-Bench-201 cell (Dong & Yang 2020, Figure 1): nodes 0 (input) to 3 (output), one arrow
``i -> j`` per edge labelled with its op, ``none`` edges (zeros) omitted; ``plot_pareto`` the
candidates against their cost with the front (:func:`~jaxcnn.search.costs.pareto_front`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from jaxcnn.search import nasbench201
from jaxcnn.search.costs import pareto_front


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _finish(plt: Any, fig: Any, ax: Any, path: str, *, xlabel: str, ylabel: str,
            title: str | None, title_size: float | None = None, dpi: int = 120) -> None:
  """Labels, the optional title, grid and legend of a reward-style axis; saves and closes."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title, fontsize=title_size)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def best_so_far(rewards: Any) -> np.ndarray:
  """float64 [n]: the running maximum of ``rewards`` [n]."""
  rewards = np.asarray(rewards, np.float64).reshape(-1)
  return np.maximum.accumulate(rewards) if rewards.size else rewards


def plot_rewards(rewards: Any, path: str, *, reward_label: str = "reward",
                 title: str | None = None) -> np.ndarray:
  """Reward of every evaluation (dots) and the best so far (a staircase), in evaluation order.

  Args:
    rewards: ``[n]`` rewards in the order they were evaluated (``Result.rewards``).
    path: the PNG to write.
    reward_label: the y axis label.
    title: optional figure title.

  Returns:
    The best-so-far curve, float64 [n].
  """
  rewards = np.asarray(rewards, np.float64).reshape(-1)
  if not rewards.size:
    raise ValueError("plot_rewards needs at least one reward, got none.")
  best = best_so_far(rewards)
  plt = _pyplot()
  steps = np.arange(1, rewards.size + 1)
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.scatter(steps, rewards, s=10, c="0.55", label="evaluation")
  ax.step(steps, best, where="post", c="C3", lw=1.6, label=f"best so far ({best[-1]:.4g})")
  _finish(plt, fig, ax, path, xlabel="evaluation", ylabel=reward_label, title=title)
  return best


# Nodes on a line, input on the left; edge i -> i+1 straight, 0 -> 2 arcs above, 1 -> 3 below
# and 0 -> 3 higher above, so no arc passes behind a node and the labels stay apart.
_NODE_XY = {k: (1.4 * k, 0.0) for k in range(nasbench201.NUM_NODES)}
_ARC = {1: 0.0, 2: -0.25, 3: -0.35}  # arc3 ``rad`` by how many nodes an edge skips
_ARC_1_3 = 0.25


def draw_cell(ax: Any, arch: Any) -> list[tuple[int, int, str]]:
  """Draws a NAS-Bench-201 cell on a matplotlib axis.

  Every non-``none`` edge is one ``FancyArrowPatch`` with ``gid`` ``"edge i->j"`` and one text
  label (the op name) with the same ``gid``; nodes are circles with ``gid`` ``"node k"``.

  Args:
    ax: a matplotlib ``Axes``.
    arch: the cell: int option indices [6], a cell string or six op names.

  Returns:
    The drawn edges ``[(from, to, op)]`` in the cell string's order.
  """
  from matplotlib.patches import Circle, FancyArrowPatch  # pylint: disable=g-import-not-at-top

  ops = nasbench201.arch_ops(arch)
  edges = [(i, j, op) for (j, i), op in zip(nasbench201.EDGES, ops) if op != "none"]
  radius = 0.16
  for k, (x, y) in _NODE_XY.items():
    face = {0: "#cde5f7", nasbench201.NUM_NODES - 1: "#f7d9cd"}.get(k, "white")
    ax.add_patch(Circle((x, y), radius, facecolor=face, edgecolor="k", lw=1.2, zorder=3,
                        gid=f"node {k}"))
    ax.text(x, y, str(k), ha="center", va="center", fontsize=11, zorder=4)
  for i, j, op in edges:
    (x0, y0), (x1, y1) = _NODE_XY[i], _NODE_XY[j]
    rad = _ARC_1_3 if (i, j) == (1, 3) else _ARC[j - i]
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), connectionstyle=f"arc3,rad={rad}",
                                 arrowstyle="-|>", mutation_scale=14, lw=1.3, color="0.25",
                                 shrinkA=radius * 72, shrinkB=radius * 72, zorder=2,
                                 gid=f"edge {i}->{j}"))
    # The label sits at the arc's midpoint: the chord's midpoint moved by rad * chord length
    # along the chord's normal (arc3's control point is twice as far).
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    dx, dy = x1 - x0, y1 - y0
    lx, ly = mx + rad * dy / 2, my - rad * dx / 2
    ax.text(lx, ly, op, ha="center", va="center", fontsize=8, zorder=5, gid=f"edge {i}->{j}",
            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
  ax.set_xlim(-0.3, 4.5)
  ax.set_ylim(-0.65, 0.95)
  ax.set_aspect("equal")
  ax.axis("off")
  return edges


def plot_cell(arch: Any, path: str, *, title: str | None = None) -> list[tuple[int, int, str]]:
  """Writes the cell DAG of ``arch`` (see :func:`draw_cell`) to the PNG ``path``.

  Returns:
    The drawn edges ``[(from, to, op)]``.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 2.8))
  edges = draw_cell(ax, arch)
  if title is None:
    title = nasbench201.to_string(nasbench201.arch_ops(arch))
  ax.set_title(title, fontsize=8)
  if not edges:
    ax.text(2.1, -0.5, "every edge is 'none': the cell outputs zeros", ha="center", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return edges


def plot_pareto(cost: Any, reward: Any, path: str, *, cost_label: str = "multiply-adds",
                reward_label: str = "accuracy", labels: Sequence[str] | None = None,
                log_cost: bool = True, title: str | None = None) -> np.ndarray:
  """Scatter of every candidate with the front (lower cost, higher reward) drawn as a staircase.

  Args:
    cost, reward: ``[n]`` arrays.
    path: the PNG to write.
    labels: optional names of the candidates; the front's are written beside their points.
    log_cost: a logarithmic cost axis.

  Returns:
    The indices of the front, by increasing cost.
  """
  plt = _pyplot()
  cost = np.asarray(cost, np.float64).reshape(-1)
  reward = np.asarray(reward, np.float64).reshape(-1)
  if cost.shape != reward.shape:
    raise ValueError(f"cost and reward need one value per candidate, got {cost.shape} and "
                     f"{reward.shape}.")
  front = pareto_front(np.stack([reward, cost], 1), maximize=(True, False))
  front = front[np.lexsort((-reward[front], cost[front]))]
  fig, ax = plt.subplots(figsize=(6, 4.2))
  ax.scatter(cost, reward, s=12, c="0.6", label=f"candidates ({len(cost)})")
  ax.step(cost[front], reward[front], where="post", c="C3", lw=1.5)
  ax.scatter(cost[front], reward[front], s=28, c="C3", label=f"Pareto front ({len(front)})",
             zorder=3)
  if labels is not None:
    for i in front:
      ax.annotate(str(labels[i]), (cost[i], reward[i]), fontsize=6, xytext=(3, -8),
                  textcoords="offset points")
  if log_cost:
    ax.set_xscale("log")
  _finish(plt, fig, ax, path, xlabel=cost_label, ylabel=reward_label, title=title)
  return front


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
  plt = _pyplot()

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
  _finish(plt, fig, ax, path, xlabel="multiply-adds per image", ylabel="validation accuracy",
          title=title, title_size=9, dpi=dpi)


def plot_edge_weights(alpha_history: Any, mask: Any, path: str, *, title: str | None = None
                      ) -> Any:
  """Every edge's op weights ``softmax(alpha)`` (over the allowed ops) against the DARTS step, one
  panel per edge, one line per allowed op; writes the PNG ``path``.

  Returns:
    The plotted weights, float [steps + 1, 6, 5] (0 for the masked ops).
  """
  from matplotlib.ticker import MaxNLocator  # pylint: disable=g-import-not-at-top
  from jaxcnn.search import darts  # pylint: disable=g-import-not-at-top

  weights = np.asarray(darts.edge_weights(np.asarray(alpha_history), mask))
  allowed = darts.check_mask(mask)
  plt = _pyplot()
  fig, axes = plt.subplots(2, 3, figsize=(10, 5.5), sharex=True)  # each edge its own y range
  steps = np.arange(weights.shape[0])
  for e, ax in enumerate(axes.flat):
    for o, op in enumerate(nasbench201.OPS):
      if allowed[e, o]:
        ax.plot(steps, weights[:, e, o], c=f"C{o}", lw=1.4, label=op, gid=f"edge {e} {op}")
    ax.set_title(f"edge {nasbench201.SPACE.names[e]}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
  for ax in axes[-1]:
    ax.set_xlabel("DARTS step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  for ax in axes[:, 0]:
    ax.set_ylabel("op weight")
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return weights
