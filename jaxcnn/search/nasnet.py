"""The NASNet search space: a normal and a reduction cell of B = 5 blocks over 13 operations.

Each block ``b`` of a cell picks two inputs among the cell's inputs ``h`` (state 0), ``p``
(state 1) and the blocks before it (states ``2 .. b + 1``), and one operation of
:data:`~jaxcnn.models.nasnet.OPS` for each; the block is the sum of the two (Zoph et al. 2018,
Section 3 and Figure 3). The cell concatenates "the unused hidden states", the blocks that no
block reads, and the states whose ``concat`` choice is True: NASNet-A's cells also concatenate
states they read (``p`` in the normal cell, block 1 in the reduction cell, Figure 4), so the
space has one such choice for each state that a block can read (in a reduction cell, blocks
only: its inputs are at twice the blocks' size). An architecture is 50 choices; each cell in
turn has, per block, ``{cell}_{b}_input_1``, ``_input_2`` (``2 + b`` options, the state
indices), ``_op_1``, ``_op_2`` (the 13 op names), then ``{cell}_concat_{s}`` (False, True) for
``s`` in ``h, p, 0 .. 3`` (normal) or ``0 .. 3`` (reduction; blocks by index)::

  arch = encode((NASNET_A_NORMAL, NASNET_A_REDUCTION))  # the genotypes of jaxcnn.models.nasnet
  normal, reduction = decode(arch)                      # back to the two Genotypes
  model = build(arch, num_classes=10)  # create_model("nasnet", normal_cell=normal, ...)

A ``concat`` choice of an unread block changes nothing (it is concatenated anyway), so
``decode`` is many-to-one there; ``encode`` sets those choices True. ``create_model("nasnet")``
is the NASNet skeleton (:class:`~jaxcnn.models.nasnet.NASNet`, mobile 4 @ 1056 by default) with
the cells as fields ``normal_cell`` and ``reduction_cell``; with NASNet-A's cells it is
``nasnet_a_mobile``.

The shared-weight :class:`SuperNet` of the space (the CIFAR skeleton, every cell a mixed cell
driven by a traced architecture) over an op subset (:class:`Subspace`, e.g. :data:`ENAS_OPS`)
is what ENAS searches (:mod:`jaxcnn.search.enas`); :func:`child` and :func:`child_variables`
give the standalone child of an architecture and its weights.

References:
  Zoph et al. 2018, "Learning Transferable Architectures for Scalable Image Recognition" (CVPR),
  Section 3, Figures 2, 3 and 4.
  Pham et al. 2018, "Efficient Neural Architecture Search via Parameter Sharing" (ICML),
  Section 2.3 (the micro search space: ENAS's five ops, weights shared by every child).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import create_model
from jaxcnn.models._common import register_model
from jaxcnn.models.nasnet import (CELL_OPS, OPS, Adjust, Genotype, NASNet, NASNetSkeleton,
                                  check_genotype)
from jaxcnn.nn.layers import CHOICES, OpsModule
from jaxcnn.search.space import Space

NUM_BLOCKS = 5
CELLS = ("normal", "reduction")
FIELDS = ("input_1", "input_2", "op_1", "op_2")
# The states with a concat choice, by label: every state a block can read (block 4 cannot).
CONCAT = {"normal": {"h": 0, "p": 1, **{str(b): 2 + b for b in range(NUM_BLOCKS - 1)}},
          "reduction": {str(b): 2 + b for b in range(NUM_BLOCKS - 1)}}


def _choices() -> dict[str, tuple[Any, ...]]:
  choices = {}
  for cell in CELLS:
    for b in range(NUM_BLOCKS):
      for field in FIELDS:
        choices[f"{cell}_{b}_{field}"] = tuple(range(2 + b)) if field.startswith("input") else OPS
    choices.update({f"{cell}_concat_{label}": (False, True) for label in CONCAT[cell]})
  return choices


SPACE = Space(_choices())


def unread_blocks(blocks: Sequence[Sequence[tuple[str, int]]]) -> tuple[int, ...]:
  """The states of the blocks that no block reads (always concatenated)."""
  read = {i for pair in blocks for _, i in pair}
  return tuple(2 + b for b in range(len(blocks)) if 2 + b not in read)


def decode(arch: Any) -> tuple[Genotype, Genotype]:
  """int [50] option indices -> the ``(normal, reduction)`` genotypes (concat in state order)."""
  choice = SPACE.decode(arch)
  genotypes = []
  for cell in CELLS:
    blocks = tuple(tuple((choice[f"{cell}_{b}_op_{j}"], int(choice[f"{cell}_{b}_input_{j}"]))
                         for j in (1, 2)) for b in range(NUM_BLOCKS))
    kept = {s for label, s in CONCAT[cell].items() if choice[f"{cell}_concat_{label}"]}
    genotypes.append(Genotype(blocks, tuple(sorted(kept | set(unread_blocks(blocks))))))
  return genotypes[0], genotypes[1]


def encode(genotypes: tuple[Any, Any]) -> np.ndarray:
  """The ``(normal, reduction)`` genotypes -> int32 [50] option indices.

  Raises:
    ValueError for an invalid genotype, one without 5 blocks, or one that leaves a block unread
    and unconcatenated (the space concatenates every unread block).
  """
  if len(genotypes) != len(CELLS):
    raise ValueError(f"encode takes (normal, reduction) genotypes, got {len(genotypes)} items.")
  choice = {}
  for cell, genotype in zip(CELLS, genotypes):
    genotype = check_genotype(genotype, reduction=cell == "reduction")
    if len(genotype.blocks) != NUM_BLOCKS:
      raise ValueError(f"The {cell} cell has {len(genotype.blocks)} blocks; the space's have "
                       f"{NUM_BLOCKS}.")
    dropped = sorted(set(unread_blocks(genotype.blocks)) - set(genotype.concat))
    if dropped:
      raise ValueError(f"The {cell} cell neither reads nor concatenates state {dropped[0]} "
                       f"(concat {genotype.concat}); the space concatenates every unread block.")
    for b, pair in enumerate(genotype.blocks):
      for j, (op, i) in enumerate(pair, start=1):
        choice[f"{cell}_{b}_op_{j}"], choice[f"{cell}_{b}_input_{j}"] = op, i
    for label, s in CONCAT[cell].items():
      choice[f"{cell}_concat_{label}"] = s in genotype.concat
  return np.asarray(SPACE.encode(choice))


def build(arch: Any, **overrides: Any) -> nn.Module:
  """The NASNet of one architecture (int [50]), through the zoo:
  ``create_model("nasnet", normal_cell=..., reduction_cell=..., **overrides)``."""
  normal, reduction = decode(arch)
  return create_model("nasnet", normal_cell=normal, reduction_cell=reduction, **overrides)


nasnet = register_model(NASNet, name="nasnet", family="nasnet")


# ----------------------------------------------------------------------------------------------
# Op subsets, and the shared-weight supernet of the space (ENAS's micro search).

# ENAS's five cell ops (Pham et al. 2018, Section 2.3): identity, separable convolutions 3x3 and
# 5x5, average and max pooling 3x3; each is the NASNet op of that name here (a separable
# convolution is applied twice, as in NASNet and ENAS).
ENAS_OPS = ("identity", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")
# The columns of SPACE that choose an op (the others choose inputs and concatenations).
OP_COLUMNS = np.asarray([j for j, name in enumerate(SPACE.names) if "_op_" in name], np.int32)


def check_ops(ops: Sequence[str]) -> tuple[str, ...]:
  """Validates an op subset (distinct names of :data:`~jaxcnn.models.nasnet.OPS`)."""
  if isinstance(ops, str):
    raise ValueError(f"ops is a sequence of op names, got the string {ops!r}.")
  ops = tuple(ops)
  if not ops:
    raise ValueError("An op subset needs at least one op.")
  for op in ops:
    if op not in OPS:
      raise ValueError(f"Unknown NASNet cell op {op!r}. Known ops: {', '.join(OPS)}.")
  if len(set(ops)) != len(ops):
    raise ValueError(f"ops lists an op twice: {ops}.")
  return ops


def check_archs(archs: Any, ops: Sequence[str] = OPS) -> np.ndarray:
  """Validates architectures of :data:`SPACE` (int [50] or [n, 50]) whose ops are all in
  ``ops``; returns them as int32.

  Raises:
    ValueError for a wrong shape or index, or naming the first op outside ``ops``.
  """
  a = SPACE.validate(archs)
  allowed = np.isin(np.arange(len(OPS)), [OPS.index(o) for o in ops])
  bad = ~allowed[a[..., OP_COLUMNS]]
  if bad.any():
    where = tuple(np.argwhere(bad)[0])
    column = int(OP_COLUMNS[where[-1]])
    raise ValueError(f"Op {OPS[int(a[where[:-1] + (column,)])]!r} of choice "
                     f"{SPACE.names[column]!r} is outside the supernet's ops: {', '.join(ops)}.")
  return a


class OpsSpace(Space):
  """:data:`SPACE` (the same choices and indices) with every op in ``ops``: the architectures of
  a :class:`SuperNet` built over an op subset. ``validate`` raises for an op outside it."""

  def __init__(self, ops: Sequence[str]):
    super().__init__(SPACE.choices)
    self.ops = check_ops(ops)

  def validate(self, archs: Any) -> np.ndarray:
    return check_archs(archs, self.ops)

  def __eq__(self, other) -> bool:
    return super().__eq__(other) and getattr(other, "ops", OPS) == self.ops

  def __hash__(self) -> int:
    return hash((super().__hash__(), self.ops))

  def __repr__(self) -> str:
    return f"nasnet.OpsSpace(ops={self.ops!r})"


class Subspace:
  """The NASNet cells whose ops are all in ``ops``; its :attr:`space` indexes the ops by their
  position in ``ops`` (inputs and concatenations as in :data:`SPACE`).

  The interface of :class:`~jaxcnn.search.nasbench201.Subspace`: ``space``, ``to_full``;
  ``op_index``: each op's index in :data:`~jaxcnn.models.nasnet.OPS`.

  Example:
    >>> sub = Subspace(ENAS_OPS)
    >>> sub.space.options("normal_0_op_1") == ENAS_OPS, int(sub.to_full(np.zeros(50, int))[2])
    (True, 0)
  """

  def __init__(self, ops: Sequence[str]):
    self.ops = check_ops(ops)
    self.space = Space({name: self.ops if "_op_" in name else options
                        for name, options in SPACE.choices.items()})
    self.op_index = np.asarray([OPS.index(o) for o in self.ops], np.int32)

  def to_full(self, archs: Any) -> np.ndarray:
    """Architectures of :attr:`space` (int [50] or [n, 50]) -> ones of :data:`SPACE`."""
    a = self.space.validate(archs).copy()
    a[..., OP_COLUMNS] = self.op_index[a[..., OP_COLUMNS]]
    return a

  def from_full(self, archs: Any) -> np.ndarray:
    """Architectures of :data:`SPACE` with ops in ``ops`` -> ones of :attr:`space`."""
    a = check_archs(archs, self.ops).copy()
    position = np.zeros(len(OPS), np.int32)
    position[self.op_index] = np.arange(len(self.ops))
    a[..., OP_COLUMNS] = position[a[..., OP_COLUMNS]]
    return a

  def __repr__(self) -> str:
    return f"nasnet.Subspace(ops={self.ops!r})"


def _columns(cell: str) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
  """A cell's columns of :data:`SPACE`: inputs [5, 2], ops [5, 2], concat choice by state."""
  index = SPACE.names.index
  inputs = np.asarray([[index(f"{cell}_{b}_input_{j}") for j in (1, 2)]
                       for b in range(NUM_BLOCKS)])
  ops = np.asarray([[index(f"{cell}_{b}_op_{j}") for j in (1, 2)] for b in range(NUM_BLOCKS)])
  concat = {s: index(f"{cell}_concat_{label}") for label, s in CONCAT[cell].items()}
  return inputs, ops, concat


def _first_state(reduction: bool) -> int:
  """The first concatenable state: a reduction cell's inputs are at twice the blocks' size."""
  return 2 if reduction else 0


class _Op(OpsModule):
  """One op of :data:`~jaxcnn.models.nasnet.CELL_OPS` at ``filters``; its modules are named as
  the child cell's (``SeparableConv_0``, ``ReLUConvBN_0`` or ``Adjust_0``), renumbered by
  :func:`child_variables`. Called at stride 2 on a reduction cell's inputs and at stride 1 on
  its blocks, with the same weights."""

  op: str
  filters: int

  @nn.compact
  def __call__(self, x: jax.Array, strides: int, *, train: bool) -> jax.Array:
    return CELL_OPS[self.op](x, self.filters, strides, self.get_ops(), train)


def _branch(module: nn.Module, xs: tuple[jax.Array, ...], *, name: str, kind: int, strides: int,
            train: bool) -> jax.Array:
  return getattr(module, name)(xs[kind], strides, train=train)


class MixedSlot(OpsModule):
  """One (block, slot) of a mixed cell: every op's weights; the traced ``index`` (a state) and
  ``op`` (a position in ``cell_ops``) select the input and the op.

  The states fall into kinds of equal shape (a reduction cell's inputs, at stride 2, and its
  blocks; the first cell's ``p``, the stem's output, and the rest): within a kind the input is a
  ``lax.select_n``; the op and the kind are one ``flax.linen.switch``. An op has one set of
  weights for every kind of ``filters`` channels and, ``on_stem``, one more (``<op>_on_stem``)
  for the stem's output.
  """

  filters: int
  cell_ops: tuple[str, ...]
  on_stem: bool = False

  def setup(self):
    for op in self.cell_ops:
      setattr(self, op, _Op(op, self.filters, ops=self.get_ops()))
      if self.on_stem:
        setattr(self, f"{op}_on_stem", _Op(op, self.filters, ops=self.get_ops()))

  def __call__(self, states: list[jax.Array], index: jax.Array, op: jax.Array, *,
               reduction: bool, train: bool) -> jax.Array:
    kinds: list[list[int]] = []
    for s, x in enumerate(states):
      for members in kinds:
        if states[members[0]].shape == x.shape:
          members.append(s)
          break
      else:
        kinds.append([s])
    kind_of = np.zeros(len(states), np.int32)
    xs = []
    for k, members in enumerate(kinds):
      kind_of[members] = k
      local = np.zeros(len(states), np.int32)
      local[members] = np.arange(len(members))
      xs.append(jax.lax.select_n(jnp.asarray(local)[index], *[states[s] for s in members]))
    branches = []
    for name in self.cell_ops:
      for k, members in enumerate(kinds):
        stem = states[members[0]].shape[-1] != self.filters  # only the first cell's p
        branches.append(functools.partial(
            _branch, name=f"{name}_on_stem" if stem else name, kind=k,
            strides=2 if reduction and members[0] < 2 else 1, train=train))
    xs = tuple(xs)
    if self.is_mutable_collection("params"):  # create every op's weights at init
      outs = [branch(self, xs) for branch in branches]
      if self.is_initializing():  # only the shape matters: skip tracing the branches again
        return outs[0]
    return nn.switch(op * len(kinds) + jnp.asarray(kind_of)[index], branches, self, xs)


class MixedCell(OpsModule):
  """A cell of :class:`MixedSlot` s driven by a traced architecture (int32 [50]).

  The preprocessing is :class:`~jaxcnn.models.nasnet.Cell`'s (``p`` through ``Adjust`` named
  ``adjust``, ``h`` through a 1x1 convolution and norm, with the child's module names). The
  output concatenates every concatenable state (a normal cell: ``h``, ``p`` and the five
  blocks; a reduction cell: the blocks), each zeroed unless the child concatenates it, so its
  channels are fixed. ``__call__`` returns it and the number of states the child concatenates.

  ``p_count``: that number for the cell that produced ``p``, given where that cell has
  ``filters`` too (None otherwise, and for the stem). Where ``p`` is such a cell's output at
  ``h``'s size holding one state (block 4, ``filters`` channels), the child's ``Adjust`` leaves it
  as it is; the supernet then takes those channels instead of its own ``Adjust``'s output
  (which it still computes: its batch statistics update).
  """

  filters: int
  cell_ops: tuple[str, ...]
  reduction: bool = False

  @nn.compact
  def __call__(self, h: jax.Array, p: jax.Array | None, arch: jax.Array,
               p_count: jax.Array | None = None, *, train: bool) -> tuple[jax.Array, jax.Array]:
    ops = self.get_ops()
    on_stem = p is None and h.shape[-1] != self.filters  # the first cell reads the stem twice
    if p is None:
      p = h
    else:
      adjusted = Adjust(self.filters, name="adjust", ops=ops)(p, h.shape, train=train)
      if p_count is not None and p.shape[1] == h.shape[1]:
        adjusted = jnp.where(p_count == 1, p[..., -self.filters:], adjusted)
      p = adjusted
    h = ops.conv(self.filters, (1, 1), use_bias=False)(ops.activate(h))
    h = ops.normalize(h, train=train)
    inputs, op_columns, concat = _columns("reduction" if self.reduction else "normal")
    position = np.zeros(len(OPS), np.int32)  # full op index -> its branch (others: validated)
    position[[OPS.index(o) for o in self.cell_ops]] = np.arange(len(self.cell_ops))
    states = [h, p]
    for b in range(NUM_BLOCKS):
      outs = [MixedSlot(self.filters, self.cell_ops, on_stem, name=f"block{b}_{j}", ops=ops)(
          states, arch[inputs[b, j - 1]], jnp.asarray(position)[arch[op_columns[b, j - 1]]],
          reduction=self.reduction, train=train) for j in (1, 2)]
      states.append(outs[0] + outs[1])
    read = arch[inputs.reshape(-1)]
    kept = []
    for s in range(_first_state(self.reduction), len(states)):
      keep = arch[concat[s]] == 1 if s in concat else jnp.asarray(True)  # block 4: unread
      if s >= 2:
        keep = keep | ~(read == s).any()  # an unread block is concatenated
      kept.append(keep)
    out = jnp.concatenate([jnp.where(k, x, jnp.zeros_like(x))
                           for k, x in zip(kept, states[_first_state(self.reduction):])], -1)
    return out, jnp.stack(kept).sum()


class SuperNet(NASNetSkeleton):
  """The NASNet CIFAR skeleton with every cell a :class:`MixedCell`: one program for the space.

  The :class:`~jaxcnn.models.nasnet.NASNetSkeleton` with ``stem="cifar"`` (Zoph et al. 2018,
  Figure 2: a 3x3 stem convolution, then ``num_cells`` normal cells, a reduction cell,
  ``num_cells`` normal, a reduction, ``num_cells`` normal), the module names of the child's. All
  normal cells read the normal half of one architecture, all reduction cells the reduction half
  (ENAS's micro search, Pham et al. 2018, Section 2.3). Only the ops in ``cell_ops`` are built
  (:attr:`space`: the architectures it takes).

  ``__call__(x, arch=None, *, train)``: ``arch`` int32 [50] of :data:`SPACE` (may be traced).
  Without one, a training call draws a uniform architecture over ``cell_ops`` from the ``"dropout"``
  rng (one-shot training by uniform single-path sampling, Guo et al. 2020); an evaluation call
  needs one.

  A child's path equals the standalone child (:func:`child`, with :func:`child_variables`) to
  float noise, not bitwise: besides the switches (see :mod:`jaxcnn.search.supernet`), each
  cell's 1x1 convolutions and the classifier sum over the zeroed states too, a longer reduction
  than the child's, which XLA may order differently.

  Attributes are :class:`~jaxcnn.models.nasnet.NASNet`'s (``dropout_rate`` needs the
  ``"dropout"`` rng when training; 0 here, as the ENAS evaluator passes no rng) and
  ``cell_ops``, the ops built (names of :data:`~jaxcnn.models.nasnet.OPS`, e.g.
  :data:`ENAS_OPS`). Example (ENAS's five ops; :func:`child` and :func:`child_variables` give a
  child and its weights)::

    supernet = SuperNet(num_cells=1, penultimate_filters=96, stem_features=8,
                        cell_ops=ENAS_OPS)
    sub = Subspace(ENAS_OPS)
    arch = sub.to_full(sub.space.sample(jax.random.PRNGKey(0), 1)[0])
    logits = supernet.apply(variables, x, arch, train=False)
  """

  dropout_rate: float = 0.0
  num_classes: int = 10
  stem: str = "cifar"
  cell_ops: tuple[str, ...] = OPS

  @property
  def space(self) -> Space:
    """The architectures this supernet takes: :data:`SPACE` with its ops."""
    ops = check_ops(self.cell_ops)
    return SPACE if ops == OPS else OpsSpace(ops)

  def _arch(self, arch: Any, train: bool) -> jax.Array:
    sub = Subspace(check_ops(self.cell_ops))
    if arch is None:
      if self.is_initializing():  # every op's weights are created whatever the architecture
        default = np.zeros(len(SPACE), np.int32)
        default[OP_COLUMNS] = OPS.index(sub.ops[0])
        return jnp.asarray(default)
      if not train:
        raise ValueError("SuperNet needs an architecture (int32 [50]) for an evaluation call; "
                         "only a training call draws one from the 'dropout' rng.")
      drawn = sub.space.sample(self.make_rng("dropout"), 1)[0]
      return drawn.at[OP_COLUMNS].set(jnp.asarray(sub.op_index)[drawn[OP_COLUMNS]])
    arch = jnp.asarray(arch, jnp.int32)
    if arch.shape != (len(SPACE),):
      raise ValueError(f"arch must be int32 [{len(SPACE)}] (an architecture of nasnet.SPACE), "
                       f"got shape {arch.shape}.")
    try:
      concrete = np.asarray(arch)
    except jax.errors.TracerArrayConversionError:
      concrete = None
    if concrete is not None:  # a traced one is validated by its caller (child_logits)
      self.space.validate(concrete)
    return arch

  @nn.compact
  def __call__(self, x: jax.Array, arch: jax.Array | None = None, *, train: bool) -> jax.Array:
    if self.stem != "cifar":
      raise ValueError(f"nasnet.SuperNet has the CIFAR skeleton only: stem must be 'cifar', got "
                       f"{self.stem!r}.")
    arch = self._arch(arch, train)
    cell_ops = check_ops(self.cell_ops)
    ops = self.get_ops()
    # Per output so far (the stem's, then each cell's): the states it concatenates and their
    # channels (the stem: None, None); a cell's p is the output before its h.
    outputs = [(None, None)]

    def cell_fn(filters, reduction, name, h, p):
      p_count, p_filters = outputs[-2] if len(outputs) > 1 else (None, None)
      out, count = MixedCell(filters, cell_ops, reduction, name=name, ops=ops)(
          h, p, arch, p_count if p_filters == filters else None, train=train)
      outputs.append((count, filters))
      return out

    return self._forward(x, cell_fn, train=train)


def child_config(net: NASNetSkeleton) -> dict[str, Any]:
  """The :func:`build` overrides of a child on ``net``'s skeleton (a :class:`SuperNet` or
  ``darts.NASNetDARTS``): its sizes, stem and layer choices."""
  fields = ("num_cells", "penultimate_filters", "stem_features", "filter_multiplier",
            "dropout_rate", "num_classes", "stem", "ops") + CHOICES
  return {f: getattr(net, f) for f in fields}


def child(supernet: SuperNet, arch: Any) -> nn.Module:
  """The standalone :class:`~jaxcnn.models.nasnet.NASNet` of ``arch`` (int [50])."""
  return build(supernet.space.validate(arch), **child_config(supernet))


def _op_modules(op: str, reads_stem: bool, strided: bool) -> tuple[str, ...]:
  """The module classes a child's op creates (see ``CELL_OPS``)."""
  if op.startswith("sep_conv"):
    return ("SeparableConv",)
  if op.startswith(("conv", "dil_conv")):
    return ("ReLUConvBN",)
  if op == "identity":
    return ("Adjust",) if reads_stem or strided else ()
  return ("Adjust",) if reads_stem else ()  # a pool: a 1x1 convolution if channels differ


def child_variables(supernet: SuperNet, variables: Any, arch: Any) -> dict[str, Any]:
  """The variables of :func:`child` ``(supernet, arch)`` read out of the supernet's.

  Every slot keeps its op's modules, renumbered in the child cell's order; the kernels that read
  a cell's output (the next cells' ``adjust`` and 1x1 convolution, the classifier) keep the
  input channels of the states the child concatenates.
  """
  genotypes = dict(zip(CELLS, decode(supernet.space.validate(arch))))
  cells = supernet.cell_plan()
  # The channels of each cell output the child keeps (None: the stem's output, all kept), and
  # their number.
  kept: list[np.ndarray | None] = [None]
  width = [supernet.stem_features]
  for c, (cell_filters, reduction, _) in enumerate(cells):
    genotype = genotypes["reduction" if reduction else "normal"]
    start, offset, channels = _first_state(reduction), 0, []
    for s in range(start, 2 + NUM_BLOCKS):
      w = supernet.stem_features if (c == 0 and s == 1) else cell_filters
      if s in genotype.concat:
        channels.append(np.arange(offset, offset + w))
      offset += w
    kept.append(np.concatenate(channels))
    width.append(len(kept[-1]))

  def sliced(tree: Any, channels: np.ndarray | None) -> Any:
    if channels is None:
      return tree
    return jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.take(a, channels, axis=-2) if str(path[-1].key) == "kernel" else a,
        tree)

  def cell_tree(tree: dict[str, Any], c: int) -> dict[str, Any]:
    cell_filters, reduction, _ = cells[c]
    genotype = genotypes["reduction" if reduction else "normal"]
    out = {}
    # kept[c] is the output of the cell before (h), kept[c - 1] the one before that (p).
    p_factorized = c > 0 and cells[c - 1][1]
    if c > 0 and "adjust" in tree and (p_factorized or width[c - 1] != cell_filters):
      out["adjust"] = sliced(tree["adjust"], kept[c - 1])
    for name, sub in tree.items():  # the 1x1 convolution and norm of h
      if name != "adjust" and not name.startswith("block"):
        out[name] = sliced(sub, kept[c])
    count: dict[str, int] = {}
    on_stem = c == 0 and supernet.stem_features != cell_filters
    for b, pair in enumerate(genotype.blocks):
      for j, (op, i) in enumerate(pair, start=1):
        reads_stem = on_stem and i == 1
        slot = tree.get(f"block{b}_{j}", {}).get(f"{op}_on_stem" if reads_stem else op, {})
        for cls in _op_modules(op, reads_stem, reduction and i < 2):
          n = count.get(cls, 0)
          count[cls] = n + 1
          if f"{cls}_0" in slot:
            out[f"{cls}_{n}"] = slot[f"{cls}_0"]
    return out

  names = {name: c for c, (_, _, name) in enumerate(cells)}
  result = {}
  for col, tree in dict(variables).items():
    new = {}
    for name, sub in dict(tree).items():
      if name in names:
        new[name] = cell_tree(dict(sub), names[name])
      elif name == "head":
        new[name] = sliced(sub, kept[-1])
      else:
        new[name] = sub
    result[col] = new
  return result
