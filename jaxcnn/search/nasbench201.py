"""The NAS-Bench-201 cell space: a 4-node cell DAG (6 edges, 5 ops) stacked into a CIFAR network.

Node 0 is the cell's input, node ``j`` the sum over ``i < j`` of ``op(i -> j)(node i)``, node 3
its output. The ops are ``none`` (zeros), ``skip_connect``, ``nor_conv_1x1`` and
``nor_conv_3x3`` (ReLU-Conv-BN) and ``avg_pool_3x3`` (stride 1, padding excluded from the mean),
so there are ``5 ** 6 = 15,625`` cells. The macro network: a 3x3 stem convolution and BN, three
stages of ``num_cells`` cells with ``channels``, ``2 * channels``, ``4 * channels`` channels, a
residual reduction block (3x3 stride 2 ReLU-Conv-BN, 3x3 ReLU-Conv-BN; shortcut 2x2 average pool
and 1x1 convolution) between stages, BN-ReLU, global pooling and a linear classifier. The
published setting is ``num_cells=5, channels=16``; CPU tests use ``num_cells=1, channels=8``.

An architecture is an int32 vector over the six edges, in the order of the cell string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (edges ``1<-0``, ``2<-0``, ``2<-1``, ``3<-0``, ``3<-1``,
``3<-2``)::

  arch = SPACE.encode(dict(zip(SPACE.names, from_string(s))))
  model = build(arch, num_classes=10)          # == create_model("nasbench201", arch=s)

References:
  Dong & Yang 2020, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture
  Search" (ICLR), Section 2.1 and Figure 1.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import create_model
from jaxcnn.models._common import CIFAR_INPUT, check_nhwc, register_model
from jaxcnn.nn.layers import Ops, OpsModule
from jaxcnn.search.space import Space

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
EDGES = tuple((j, i) for j in range(1, NUM_NODES) for i in range(j))  # (to, from), string order
SPACE = Space({f"{j}<-{i}": OPS for j, i in EDGES})
KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}  # the ops with weights


def to_string(ops: Sequence[str]) -> str:
  """Six op names (edge order) -> ``"|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"``."""
  ops = check_ops(ops)
  nodes, k = [], 0
  for j in range(1, NUM_NODES):
    nodes.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
    k += j
  return "+".join(nodes)


def from_string(s: str) -> tuple[str, ...]:
  """The cell string of NAS-Bench-201 -> six op names in edge order.

  Raises:
    ValueError naming the malformed part, or the unknown op and the known ones.
  """
  nodes = s.split("+")
  if len(nodes) != NUM_NODES - 1:
    raise ValueError(f"A NAS-Bench-201 cell string has {NUM_NODES - 1} nodes joined by '+', got "
                     f"{s!r}.")
  ops = []
  for j, node in enumerate(nodes, start=1):
    parts = [p for p in node.strip().strip("|").split("|")]
    if len(parts) != j:
      raise ValueError(f"Node {j} of {s!r} needs {j} inputs ('|op~i|'), got {node!r}.")
    for i, part in enumerate(parts):
      op, _, src = part.partition("~")
      if src != str(i):
        raise ValueError(f"Input {i} of node {j} in {s!r} reads {part!r}, expected 'op~{i}'.")
      ops.append(op)
  return check_ops(ops)


def check_ops(ops: Sequence[str]) -> tuple[str, ...]:
  """Validates six op names; returns them as a tuple."""
  if isinstance(ops, str):
    raise TypeError(f"Expected six op names, got the string {ops!r} (use from_string).")
  ops = tuple(ops)
  if len(ops) != len(EDGES):
    raise ValueError(f"A NAS-Bench-201 cell has {len(EDGES)} edges, got {len(ops)} ops: {ops}.")
  for op in ops:
    if op not in OPS:
      raise ValueError(f"Unknown NAS-Bench-201 op {op!r}. Known ops: {', '.join(OPS)}.")
  return ops


LARGEST = to_string(("nor_conv_3x3",) * 6)  # the default: every edge a 3x3 convolution


class Subspace:
  """Cells of NAS-Bench-201 with some edges free (each over a subset of the ops) and the others
  fixed to one op; its :attr:`space` indexes the free edges only.

  Args:
    free: ordered mapping edge name (``"j<-i"``) -> the ops it may take.
    fixed: the op of every other edge.

  Example:
    >>> SMALL.space.size, SMALL.to_full([3, 3, 3, 1]).tolist()
    (256, [3, 0, 3, 1, 0, 3])
  """

  def __init__(self, free: dict[str, Sequence[str]], fixed: str = "none"):
    for name, ops in free.items():
      if name not in SPACE.names:
        raise ValueError(f"Unknown edge {name!r}. Edges: {', '.join(SPACE.names)}.")
      check_ops(list(ops) + [fixed] * (len(EDGES) - len(ops)))
    check_ops([fixed] * len(EDGES))
    self.space = Space({name: tuple(ops) for name, ops in free.items()})
    self.fixed = fixed
    self._edge = np.asarray([SPACE.names.index(n) for n in free], np.int32)
    self._op = [np.asarray([OPS.index(o) for o in ops], np.int32) for ops in free.values()]

  def to_full(self, archs: Any) -> np.ndarray:
    """Architectures of :attr:`space` (int [k] or [n, k]) -> NAS-Bench-201 ones (int32 [.., 6])."""
    a = self.space.validate(archs)
    out = np.full(a.shape[:-1] + (len(EDGES),), OPS.index(self.fixed), np.int32)
    for k, (edge, ops) in enumerate(zip(self._edge, self._op)):
      out[..., edge] = ops[a[..., k]]
    return out

  @property
  def mask(self) -> np.ndarray:
    """bool [6, 5]: the ops each edge may take (a fixed edge: only its op), e.g. for DARTS."""
    m = np.zeros((len(EDGES), len(OPS)), bool)
    m[:, OPS.index(self.fixed)] = True
    for edge, ops in zip(self._edge, self._op):
      m[edge] = False
      m[edge, ops] = True
    return m

  def all(self) -> np.ndarray:
    """Every architecture of :attr:`space`, int32 [size, k], in row-major index order."""
    n = np.asarray(self.space.num_options)
    return np.stack(np.unravel_index(np.arange(self.space.size), tuple(n)), -1).astype(np.int32)


# 4 free edges (the chain 0->1->2->3 and the skip 0->3) x 4 ops = 256 cells; the table
# benchmark of jaxcnn.search and study 7 use it.
SMALL = Subspace({name: ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")
                  for name in ("1<-0", "2<-1", "3<-2", "3<-0")})


def arch_ops(arch: Any) -> tuple[str, ...]:
  """An architecture as six op names: from int indices [6], a cell string or op names."""
  if isinstance(arch, str):
    return from_string(arch)
  a = np.asarray(arch)
  if a.dtype.kind in "iu":
    return tuple(SPACE.decode(a).values())
  return check_ops(list(arch))


def encode(arch: Any) -> np.ndarray:
  """An architecture (cell string, op names or indices) -> int32 [6] option indices."""
  return np.asarray([OPS.index(op) for op in arch_ops(arch)], np.int32)


def build(arch: Any, **overrides: Any) -> nn.Module:
  """The network of one cell, through the zoo: ``create_model("nasbench201", arch=...)``."""
  return create_model("nasbench201", arch=to_string(arch_ops(arch)), **overrides)


# ----------------------------------------------------------------------------------------------
# Modules. The supernet (jaxcnn.search.supernet) reuses these names, so a child's variables are
# a subtree of the supernet's.


class ReLUConvBN(OpsModule):
  """ReLU, ``k x k`` convolution (no bias), normalization: NAS-Bench-201's ``nor_conv`` op."""

  features: int
  kernel_size: int = 3
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    x = ops.activate(x)
    p = self.kernel_size // 2  # PyTorch's symmetric padding, also at stride 2
    x = ops.conv(self.features, (self.kernel_size,) * 2, strides=(self.strides,) * 2,
                 padding=((p, p), (p, p)), use_bias=False)(x)
    return ops.normalize(x, train=train)


def avg_pool_3x3(x: jax.Array) -> jax.Array:
  """3x3 average pool, stride 1, padding excluded from the mean (``count_include_pad=False``)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def apply_op(module: nn.Module, op: str, x: jax.Array, *, train: bool) -> jax.Array:
  """Applies op ``op`` of a cell edge; a weighted op is the submodule ``module.<op>``."""
  if op == "none":
    return jnp.zeros_like(x)
  if op == "skip_connect":
    return x
  if op == "avg_pool_3x3":
    return avg_pool_3x3(x)
  return getattr(module, op)(x, train=train)


class Edge(OpsModule):
  """One edge of a cell with a fixed op (a weighted op is the child module named after it)."""

  features: int
  op: str

  def setup(self):
    if self.op in KERNEL:
      setattr(self, self.op, ReLUConvBN(self.features, KERNEL[self.op], ops=self.get_ops()))

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return apply_op(self, self.op, x, train=train)


def cell(edge: Callable[[int, jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """The cell DAG: node ``j = sum_i edge(k, node_i)``, ``k`` the edge's index; returns node 3."""
  nodes, k = [x], 0
  for j in range(1, NUM_NODES):
    total = None
    for i in range(j):
      y = edge(k, nodes[i])
      total = y if total is None else total + y
      k += 1
    nodes.append(total)
  return nodes[-1]


class Cell(OpsModule):
  """A NAS-Bench-201 cell with fixed ops (six op names in edge order)."""

  features: int
  ops_per_edge: tuple[str, ...]

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    edges = [Edge(self.features, op, ops=ops, name=f"edge_{j}_{i}")
             for (j, i), op in zip(EDGES, self.ops_per_edge)]
    return cell(lambda k, h: edges[k](h, train=train), x)


class ResidualReduction(OpsModule):
  """NAS-Bench-201's reduction block: a stride-2 basic residual block with a pooled shortcut."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    y = ReLUConvBN(self.features, 3, strides=2, ops=ops, name="conv_a")(x, train=train)
    y = ReLUConvBN(self.features, 3, ops=ops, name="conv_b")(y, train=train)
    s = nn.avg_pool(x, (2, 2), strides=(2, 2))
    s = ops.conv(self.features, (1, 1), use_bias=False, name="shortcut")(s)
    return s + y


class CellNetwork(OpsModule):
  """The macro skeleton shared by the fixed-cell network and the supernet.

  Subclasses implement ``_cell(ops, features, name) -> fn(x, train) -> y``.
  """

  num_cells: int = 5
  channels: int = 16
  num_classes: int = 10

  def _check(self, x: jax.Array) -> None:
    check_nhwc(x, type(self).__name__)
    if self.num_cells < 1 or self.channels < 1:
      raise ValueError(f"num_cells and channels must be >= 1, got {self.num_cells} and "
                       f"{self.channels}.")

  def _forward(self, x: jax.Array, cell_fn: Callable[..., jax.Array], *, train: bool
               ) -> jax.Array:
    ops = self.get_ops()
    x = ops.conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                 name="stem_conv")(x)
    x = ops.normalize(x, train=train, name="stem_norm")
    for stage in range(3):
      features = self.channels * 2 ** stage
      if stage:
        x = ResidualReduction(features, ops=ops, name=f"reduce_{stage}")(x, train=train)
      for k in range(self.num_cells):
        x = cell_fn(ops, features, f"cell_{stage}_{k}", x)
    x = ops.normalize(x, train=train, name="last_norm")
    x = ops.activate(x, name="last_act")
    return ops.dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


class NASBench201Net(CellNetwork):
  """The NAS-Bench-201 network of one cell, ``arch`` a cell string or six op names.

  References:
    Dong & Yang 2020, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture
    Search", Figure 1.
  """

  arch: Any = LARGEST

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    self._check(x)
    ops_per_edge = arch_ops(self.arch)

    def cell_fn(ops: Ops, features: int, name: str, h: jax.Array) -> jax.Array:
      return Cell(features, ops_per_edge, ops=ops, name=name)(h, train=train)

    return self._forward(x, cell_fn, train=train)


nasbench201 = register_model(NASBench201Net, name="nasbench201", family="nasbench201",
                             input_size=CIFAR_INPUT)
