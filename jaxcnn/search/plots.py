"""Figures of a search: the Pareto front of reward against cost."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jaxcnn.search.costs import pareto_front


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
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

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
  ax.set_xlabel(cost_label)
  ax.set_ylabel(reward_label)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return front
