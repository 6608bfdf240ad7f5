"""Figures of the backpropagation study (:mod:`jaxcnn.studies.backprop`): graphs drawn left to
right.

:func:`plot_graph` draws a :class:`~jaxcnn.studies.backprop.Diagram` (e.g. from
:func:`~jaxcnn.studies.backprop.jaxpr_graph`) or an engine
:class:`~jaxcnn.studies.backprop.Graph` (anything with a ``diagram()`` method), placed by
:func:`layout`; it saves a PNG when given a ``path`` and returns the Figure.
"""

from __future__ import annotations

import collections
from typing import Any


def layout(diagram: Any) -> list[tuple[int, float]]:
  """(layer, y) per node, for drawing left to right.

  layer = longest path from a source (literals and constants sit just left of their first
  consumer); within a layer nodes are centred around y = 0 and ordered by the mean y of their
  neighbours (barycentre sweeps forward, backward, forward), which keeps crossings few.
  """
  preds, succs = collections.defaultdict(list), collections.defaultdict(list)
  for src, dst in diagram.edges:
    if src >= dst:
      raise ValueError(f"Edge {src}->{dst} does not go forward; nodes must be in topological order.")
    preds[dst].append(src)
    succs[src].append(dst)
  num = len(diagram.nodes)
  layer = [0] * num
  for i in range(num):
    layer[i] = 1 + max((layer[p] for p in preds[i]), default=-1)
  for i, node in enumerate(diagram.nodes):
    if node.kind in ("literal", "const") and succs[i]:
      layer[i] = max(0, min(layer[d] for d in succs[i]) - 1)
  by_layer = collections.defaultdict(list)
  for i in range(num):
    by_layer[layer[i]].append(i)
  y = [0.0] * num

  def sweep(layers, neighbours):
    for l in layers:
      members = by_layer[l]
      members.sort(key=lambda i: -sum(y[n] for n in neighbours[i]) / len(neighbours[i])
                   if neighbours[i] else -y[i])
      for r, i in enumerate(members):
        y[i] = (len(members) - 1) / 2 - r

  order = sorted(by_layer)
  sweep(order, preds)  # forward, then backward (orders the sources), then forward again
  sweep(order[::-1], succs)
  sweep(order, preds)
  return [(layer[i], y[i]) for i in range(num)]


_COLORS = {"input": "#cfe2f3", "const": "#eeeeee", "literal": "#eeeeee", "op": "#fff2cc",
           "output": "#d9ead3"}


def plot_graph(graph: Any, path: str | None = None, *, title: str | None = None,
               dpi: int = 100):
  """Draws a Diagram (or an engine Graph) left to right; returns the matplotlib Figure.

  Engine graphs carry the lecture's annotations on each node's outgoing wire: the forward value
  in green above, the gradient in red below. Saves a PNG to ``path`` if given.
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  diagram = graph.diagram() if hasattr(graph, "diagram") else graph
  if not diagram.nodes:
    raise ValueError("Cannot draw an empty graph.")
  pos = layout(diagram)
  layers = 1 + max(l for l, _ in pos)
  rows = max(collections.Counter(l for l, _ in pos).values())
  dx, dy = 2.2, 1.0
  fig = Figure(figsize=(max(4.0, 1.7 * layers), max(2.0, 0.85 * rows + 0.8)),
               layout="constrained", dpi=dpi)
  ax = fig.add_subplot()
  ax.set_axis_off()
  xy = [(l * dx, y * dy) for l, y in pos]
  fontsize = 8 if len(diagram.nodes) < 25 else 6
  artists = []
  for node, (x, y) in zip(diagram.nodes, xy):
    artists.append(ax.text(x, y, node.label, ha="center", va="center", fontsize=fontsize,
                           family="monospace", zorder=3,
                           bbox=dict(boxstyle="round,pad=0.3", fc=_COLORS.get(node.kind, "white"),
                                     ec="0.4", lw=0.8)))
  seen = collections.Counter()
  for src, dst in diagram.edges:
    seen[(src, dst)] += 1
    rad = 0.35 * (seen[(src, dst)] - 1)  # parallel edges (x * x) bend apart
    if not rad and pos[dst][0] - pos[src][0] > 1 and abs(pos[dst][1] - pos[src][1]) < 0.5:
      rad = -0.25  # a long straight edge would run behind the nodes between its ends
    ax.annotate("", xy=(0, 0.5), xycoords=artists[dst], xytext=(1, 0.5),
                textcoords=artists[src],
                arrowprops=dict(arrowstyle="-|>", color="0.35", lw=0.8, shrinkA=1, shrinkB=1,
                                connectionstyle=f"arc3,rad={rad}"), zorder=1)
  for node, artist in zip(diagram.nodes, artists):
    if node.value is not None:
      ax.annotate(f"{node.value:.2f}", xy=(1, 0.5), xycoords=artist, xytext=(4, 2),
                  textcoords="offset points", color="green", fontsize=fontsize, va="bottom")
    if node.grad is not None:
      ax.annotate(f"{node.grad:.2f}", xy=(1, 0.5), xycoords=artist, xytext=(4, -2),
                  textcoords="offset points", color="red", fontsize=fontsize, va="top")
  ax.set_xlim(-0.8 * dx, (layers - 0.4) * dx)
  ax.set_ylim(-(rows / 2 + 0.1) * dy, (rows / 2 + 0.1) * dy)
  if title:
    ax.set_title(title, fontsize=9)
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig
