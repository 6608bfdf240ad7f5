"""NASNet: a stack of normal and reduction cells, each cell a genotype; NASNet-A (mobile, 4 @ 1056).

A cell takes the outputs of the two previous cells, ``h`` (the last) and ``p`` (the one before),
and brings both to the cell's ``filters`` channels (``h`` with a 1x1 convolution, ``p`` with a
factorized reduction when its feature map is twice as large, or a 1x1 convolution). Then each of
its ``B`` blocks applies two operations of :data:`CELL_OPS` to two of the hidden states (``h``,
``p`` or an earlier block) and adds the results; the cell's output concatenates some of the
states (Zoph et al. 2018, Section 3 and Figure 4). Which operations read which states, and what
is concatenated, is the cell's :class:`Genotype`; ``NASNET_A_NORMAL`` and ``NASNET_A_REDUCTION``
are the published cells. In a reduction cell the operations on ``h`` and ``p`` have stride 2,
those on blocks stride 1.

The ImageNet network (``stem="imagenet"``) is: 3x3/2 stem convolution, two reduction cells
("stem cells"), then N normal cells, a reduction cell, N normal cells, a reduction cell, N normal
cells; filters double at each reduction and the last normal cell has ``penultimate_filters`` = 6 x
filters channels (for NASNet-A's six-state normal cell). "4 @ 1056" is N=4 with 1056 penultimate
filters. The CIFAR-10 network (``stem="cifar"``, the paper's Figure 2, left, and the skeleton
that NAS searches train) has a 3x3 stride-1 stem convolution and no stem cells. No auxiliary
head (it is a training aid, not part of the published parameter count).

References: Zoph et al. 2018, "Learning Transferable Architectures for Scalable Image
Recognition" (arXiv 2017), Section 3, Figures 2 and 4, Table 2, Appendix A.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models._common import Published, check_nhwc, pooled_head, register_model
from jaxcnn.nn.layers import Ops, OpsModule


class SeparableConv(OpsModule):
  """act, separable kxk (stride s), norm, act, separable kxk, norm: the NASNet "sep kxk"."""

  features: int
  kernel_size: int
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    k = (self.kernel_size, self.kernel_size)
    conv = functools.partial(ops.conv, use_bias=False, padding=ops.pad(k))
    for strides in (self.strides, 1):
      x = ops.activate(x)
      x = conv(x.shape[-1], k, strides=(strides, strides), feature_group_count=x.shape[-1])(x)
      x = conv(self.features, (1, 1))(x)
      x = ops.normalize(x, train=train)
    return x


class ReLUConvBN(OpsModule):
  """act, convolution, norm: NASNet's plain convolutions.

  ``kernel_size`` k: a k x k convolution with ``dilation`` (stride s), or, ``factorized``, a
  1 x k (stride 1 x s) then a k x 1 convolution (stride s x 1), Zoph et al.'s "1x7 then 7x1".
  """

  features: int
  kernel_size: int
  strides: int = 1
  dilation: int = 1
  factorized: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    k, s, d = self.kernel_size, self.strides, self.dilation
    x = ops.activate(x)
    if self.factorized:
      layers = [((1, k), (1, s)), ((k, 1), (s, 1))]
    else:
      layers = [((k, k), (s, s))]
    for kernel, strides in layers:
      span = tuple(d * (n - 1) + 1 for n in kernel)  # the dilated kernel's extent, for padding
      x = ops.conv(self.features, kernel, strides=strides, kernel_dilation=(d, d),
                   padding=ops.pad(span), use_bias=False)(x)
    return ops.normalize(x, train=train)


class Adjust(OpsModule):
  """Brings the previous-previous cell output ``p`` to ``filters`` channels at ``h``'s size.

  Same size and channels: unchanged. Twice ``h``'s size: factorized reduction (act, then two
  1x1 convolutions of ``filters // 2`` on the even and the one-pixel-shifted odd pixels,
  concatenated, norm). Otherwise: act, 1x1 convolution, norm.
  """

  filters: int

  @nn.compact
  def __call__(self, p: jax.Array, h_shape: tuple[int, ...], *, train: bool) -> jax.Array:
    ops = self.get_ops()
    conv = functools.partial(ops.conv, use_bias=False)
    if p.shape[1] != h_shape[1]:
      if (p.shape[1] + 1) // 2 != h_shape[1]:
        raise ValueError(f"NASNet cell inputs must have equal or halved sizes, got {p.shape} and "
                         f"{h_shape}.")
      p = ops.activate(p)
      even = p[:, ::2, ::2]
      odd = jnp.pad(p[:, 1:, 1:], ((0, 0), (0, 1), (0, 1), (0, 0)))[:, ::2, ::2]
      p = jnp.concatenate([conv(self.filters // 2, (1, 1))(even),
                           conv(self.filters - self.filters // 2, (1, 1))(odd)], axis=-1)
      return ops.normalize(p, train=train)
    if p.shape[-1] != self.filters:
      p = conv(self.filters, (1, 1))(ops.activate(p))
      return ops.normalize(p, train=train)
    return p


# ----------------------------------------------------------------------------------------------
# The cell ops: op(x, filters, strides, ops, train) -> y with ``filters`` channels, called inside
# Cell's compact method (weighted ops are submodules of the cell, auto-named in call order).

CellOp = Callable[[jax.Array, int, int, Ops, bool], jax.Array]


def _to_filters(x: jax.Array, filters: int, strides: int, ops: Ops, train: bool) -> jax.Array:
  """``x`` at ``filters`` channels and ``1 / strides`` of its size: unchanged if it is, else
  :class:`Adjust` (a factorized reduction at stride 2, as DARTS does for a strided skip, Liu et
  al. 2019; a 1x1 convolution at stride 1, needed where the first cell's ``p`` is the stem's
  output)."""
  shape = (x.shape[0], -(-x.shape[1] // strides), -(-x.shape[2] // strides), filters)
  if x.shape == shape:
    return x
  return Adjust(filters, ops=ops)(x, shape, train=train)


def _sep(k: int) -> CellOp:
  def op(x, filters, strides, ops, train):
    return SeparableConv(filters, k, strides, ops=ops)(x, train=train)
  return op


def _conv(k: int, dilation: int = 1, factorized: bool = False) -> CellOp:
  def op(x, filters, strides, ops, train):
    return ReLUConvBN(filters, k, strides, dilation, factorized, ops=ops)(x, train=train)
  return op


def _pool(pool: Callable[..., jax.Array], k: int, **kwargs: Any) -> CellOp:
  def op(x, filters, strides, ops, train):
    x = pool(x, (k, k), (strides, strides), "SAME", **kwargs)
    return _to_filters(x, filters, 1, ops, train)
  return op


# The 13 operations of the NASNet search (Zoph et al. 2018, Section 3), in the paper's order.
CELL_OPS: dict[str, CellOp] = {
    "identity": _to_filters,
    "conv_1x3_3x1": _conv(3, factorized=True),
    "conv_1x7_7x1": _conv(7, factorized=True),
    "dil_conv_3x3": _conv(3, dilation=2),
    "avg_pool_3x3": _pool(nn.avg_pool, 3, count_include_pad=False),
    "max_pool_3x3": _pool(nn.max_pool, 3),
    "max_pool_5x5": _pool(nn.max_pool, 5),
    "max_pool_7x7": _pool(nn.max_pool, 7),
    "conv_1x1": _conv(1),
    "conv_3x3": _conv(3),
    "sep_conv_3x3": _sep(3),
    "sep_conv_5x5": _sep(5),
    "sep_conv_7x7": _sep(7),
}
OPS = tuple(CELL_OPS)


class Genotype(NamedTuple):
  """A NASNet cell: ``blocks[b] = ((op_1, input_1), (op_2, input_2))``, block ``b`` being
  ``op_1(state[input_1]) + op_2(state[input_2])``; the cell outputs the concatenation of
  ``state[i] for i in concat``.

  States: 0 is ``h`` (the previous cell's output), 1 is ``p`` (the one before), ``2 + b`` is
  block ``b``; a block reads ``h``, ``p`` or earlier blocks. Ops are names of :data:`CELL_OPS`.
  """

  blocks: tuple[tuple[tuple[str, int], tuple[str, int]], ...]
  concat: tuple[int, ...]


def check_genotype(genotype: Any, *, reduction: bool = False) -> Genotype:
  """Validates a genotype (tuples or lists); returns it as a :class:`Genotype` of tuples.

  Raises:
    ValueError naming the bad block or state: an unknown op, an input that is not ``h``, ``p``
    or an earlier block, a concat index out of range or repeated, or (``reduction``) a
    concatenated cell input, which is at twice the blocks' size.
  """
  try:
    blocks, concat = genotype
    blocks = tuple(tuple((str(op), i) for op, i in pair) for pair in blocks)
    concat = tuple(concat)
  except (TypeError, ValueError):
    raise ValueError(f"A NASNet genotype is (blocks, concat) with blocks "
                     f"((op, input), (op, input)), ...; got {genotype!r}.") from None
  if not blocks:
    raise ValueError("A NASNet genotype needs at least one block.")
  for b, pair in enumerate(blocks):
    if len(pair) != 2:
      raise ValueError(f"Block {b} must have two (op, input) pairs, got {pair!r}.")
    for op, i in pair:
      if op not in CELL_OPS:
        raise ValueError(f"Unknown NASNet cell op {op!r} in block {b}. Known ops: "
                         f"{', '.join(OPS)}.")
      if not isinstance(i, int) or not 0 <= i < 2 + b:
        known = f"h (0), p (1) and the earlier blocks (2..{b + 1})" if b else "h (0) and p (1)"
        raise ValueError(f"Block {b} reads state {i!r}, but only {known} exist before it.")
  num_states = 2 + len(blocks)
  if not concat or len(set(concat)) != len(concat) or not all(
      isinstance(i, int) and 0 <= i < num_states for i in concat):
    raise ValueError(f"concat must list distinct states in [0, {num_states}), got {concat!r}.")
  if reduction and {0, 1} & set(concat):
    raise ValueError(f"A reduction cell cannot concatenate its inputs h (0) or p (1), which are "
                     f"at twice the blocks' size; got concat {concat!r}.")
  return Genotype(blocks, concat)


# Zoph et al. 2018, Figure 4, left: the normal cell concatenates p and its five blocks.
NASNET_A_NORMAL = Genotype(
    blocks=((("sep_conv_5x5", 0), ("sep_conv_3x3", 1)),
            (("sep_conv_5x5", 1), ("sep_conv_3x3", 1)),
            (("avg_pool_3x3", 0), ("identity", 1)),
            (("avg_pool_3x3", 1), ("avg_pool_3x3", 1)),
            (("sep_conv_3x3", 0), ("identity", 0))),
    concat=(1, 2, 3, 4, 5, 6))
# Figure 4, right: block 0 feeds blocks 3 and 4; the other four are concatenated.
NASNET_A_REDUCTION = Genotype(
    blocks=((("sep_conv_5x5", 0), ("sep_conv_7x7", 1)),
            (("max_pool_3x3", 0), ("sep_conv_7x7", 1)),
            (("avg_pool_3x3", 0), ("sep_conv_5x5", 1)),
            (("avg_pool_3x3", 2), ("identity", 3)),
            (("sep_conv_3x3", 2), ("max_pool_3x3", 0))),
    concat=(3, 4, 5, 6))


def cell_inputs(h: jax.Array, p: jax.Array | None, filters: int, ops: Ops, train: bool
                ) -> tuple[jax.Array, jax.Array]:
  """A cell's states 0 and 1 at ``filters`` channels: ``h`` by act, 1x1 convolution, norm; ``p``
  by :class:`Adjust` (named ``"adjust"``), or ``h`` itself for the first cell (``p`` None).
  Called inside a cell's compact method, so the modules are the cell's."""
  p = h if p is None else Adjust(filters, name="adjust", ops=ops)(p, h.shape, train=train)
  h = ops.conv(filters, (1, 1), use_bias=False)(ops.activate(h))
  return ops.normalize(h, train=train), p


class Cell(OpsModule):
  """A NASNet cell of ``genotype``: ``len(concat) x filters`` channels out, stride 2 if
  ``reduction``.

  ``__call__(h, p)``: ``h`` is the previous cell's output, ``p`` the one before (``None`` for the
  first cell, which then uses ``h`` for both). Returns the cell's output.
  """

  filters: int
  genotype: Genotype
  reduction: bool = False

  @nn.compact
  def __call__(self, h: jax.Array, p: jax.Array | None, *, train: bool) -> jax.Array:
    genotype = check_genotype(self.genotype, reduction=self.reduction)
    ops = self.get_ops()
    states = list(cell_inputs(h, p, self.filters, ops, train))
    for pair in genotype.blocks:
      outs = [CELL_OPS[op](states[i], self.filters, 2 if self.reduction and i < 2 else 1, ops,
                           train) for op, i in pair]
      states.append(outs[0] + outs[1])
    return jnp.concatenate([states[i] for i in genotype.concat], axis=-1)


class NASNetSkeleton(OpsModule):
  """The stack of cells of a NASNet, whatever the cells: :class:`NASNet` and the relaxed
  networks of architecture search (``search.nasnet.SuperNet``, ``search.darts.NASNetDARTS``)
  share it, and so share module names.

  Attributes:
    num_cells: N, normal cells between reductions (4 for mobile, 6 for large).
    penultimate_filters: 24x the first normal cells' filters (the last cell's channels for a
      six-state normal cell like NASNet-A's).
    stem_features: channels of the stem convolution.
    filter_multiplier: the factor on filters at each reduction.
    dropout_rate: dropout before the classifier (needs the ``"dropout"`` rng when training).
    stem: ``"imagenet"`` (3x3/2 convolution and two reduction cells) or ``"cifar"`` (a 3x3
      stride-1 convolution).
  """

  num_cells: int = 4
  penultimate_filters: int = 1056
  stem_features: int = 32
  filter_multiplier: int = 2
  dropout_rate: float = 0.5
  num_classes: int = 1000
  stem: str = "imagenet"

  def cell_plan(self) -> list[tuple[int, bool, str]]:
    """The cells in order, ``(filters, reduction, name)``, after checking the sizes."""
    if self.stem not in ("imagenet", "cifar"):
      raise ValueError(f"Unknown NASNet stem {self.stem!r}; use 'imagenet' or 'cifar'.")
    imagenet = self.stem == "imagenet"
    filters, m = self.penultimate_filters // 24, self.filter_multiplier
    if self.num_cells < 1 or self.penultimate_filters % 24 or filters // (
        m**2 if imagenet else 1) < 2:
      raise ValueError(f"Need num_cells >= 1 and penultimate_filters a multiple of 24 with at "
                       f"least 2 filters in the first cell (penultimate_filters // 24, divided "
                       f"by filter_multiplier**2 for the ImageNet stem cells), got "
                       f"{self.num_cells} and {self.penultimate_filters}.")
    cells = []
    if imagenet:
      cells = [(filters // m**2, True, "stem_cell1"), (filters // m, True, "stem_cell2")]
    for stage in range(3):
      if stage > 0:
        cells.append((filters * m**stage, True, f"reduction{stage}"))
      cells += [(filters * m**stage, False, f"cell{stage * self.num_cells + i}")
                for i in range(self.num_cells)]
    return cells

  def _forward(self, x: jax.Array, cell_fn: Callable[..., jax.Array], *, train: bool
               ) -> jax.Array:
    """Stem, cells, head; ``cell_fn(filters, reduction, name, h, p)`` applies one cell."""
    check_nhwc(x, type(self).__name__)
    cells = self.cell_plan()
    ops = self.get_ops()
    if self.stem == "imagenet":
      x = ops.conv(self.stem_features, (3, 3), strides=(2, 2), padding="VALID", use_bias=False,
                   name="stem")(x)
    else:
      x = ops.conv(self.stem_features, (3, 3), padding=ops.pad((3, 3)), use_bias=False,
                   name="stem")(x)
    x = ops.normalize(x, train=train)
    # Each cell takes the last two outputs (h, p); the first cell has no p. After a reduction
    # cell, p is the reduction cell's input (the reference's skip_reduction=False).
    h, p = x, None
    for cell_filters, reduction, name in cells:
      h, p = cell_fn(cell_filters, reduction, name, h, p), h
    return pooled_head(ops.activate(h), ops, self.num_classes, dropout_rate=self.dropout_rate,
                       train=train)


class NASNet(NASNetSkeleton):
  """NASNet ``num_cells @ penultimate_filters`` of two cell genotypes (default NASNet-A).

  The fields of :class:`NASNetSkeleton`, and ``normal_cell``, ``reduction_cell``: the cells'
  :class:`Genotype` s (tuples, so hashable).
  """

  normal_cell: Genotype = NASNET_A_NORMAL
  reduction_cell: Genotype = NASNET_A_REDUCTION

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()

    def cell_fn(filters, reduction, name, h, p):
      genotype = self.reduction_cell if reduction else self.normal_cell
      return Cell(filters, genotype, reduction, name=name, ops=ops)(h, p, train=train)

    return self._forward(x, cell_fn, train=train)


# Published: the "params" collection (weights, norm scales and offsets; no running statistics)
# for 1000 classes; "macs": multiply-adds per 224x224 image.
nasnet_a_mobile = register_model(
    functools.partial(NASNet, num_cells=4, penultimate_filters=1056, stem_features=32),
    name="nasnet_a_mobile",
    published=Published(
        params=5_289_978, paper_params=5.3e6, macs=564e6,
        source="Keras applications NASNetMobile (5,289,978 trainable of 5,326,716 with the "
               "BatchNorm statistics); Zoph et al. 2018, Table 2 (NASNet-A (4 @ 1056): 5.3M "
               "parameters, 564M multiply-adds)"))
