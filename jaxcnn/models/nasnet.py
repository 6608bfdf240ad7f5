"""NASNet-A: a stack of searched normal and reduction cells (mobile setting: 4 @ 1056).

Each cell takes the outputs of the two previous cells, ``h`` (the last) and ``p`` (the one
before), brings both to the cell's ``filters`` channels (``p`` with a factorized reduction when
its feature map is twice as large, or a 1x1 convolution), combines pairs of operations (separable
convolutions applied twice, pooling, identity) by addition, and concatenates the results
(Zoph et al. 2018, Figure 4). The network is: 3x3/2 stem convolution, two reduction cells
("stem cells"), then N normal cells, a reduction cell, N normal cells, a reduction cell,
N normal cells; filters double at each reduction and the last normal cell has
``penultimate_filters`` = 6 x filters channels. "4 @ 1056" is N=4 with 1056 penultimate filters.
No auxiliary head (it is a training aid, not part of the published parameter count).

References: Zoph et al. 2018, "Learning Transferable Architectures for Scalable Image
Recognition" (arXiv 2017), Figure 4, Table 2, Appendix A.
"""

from __future__ import annotations

import functools
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models._common import Published, check_nhwc, pooled_head, register_model
from jaxcnn.nn.layers import OpsModule

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


class Cell(OpsModule):
  """A NASNet-A normal cell (6 x filters channels out) or reduction cell (4 x filters, stride 2).

  ``__call__(h, p)``: ``h`` is the previous cell's output, ``p`` the one before (``None`` for the
  first cell, which then uses ``h`` for both). Returns the cell's output.
  """

  filters: int
  reduction: bool = False

  @nn.compact
  def __call__(self, h: jax.Array, p: jax.Array | None, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    p = h if p is None else Adjust(self.filters, name="adjust", ops=ops)(p, h.shape, train=train)
    h = ops.conv(self.filters, (1, 1), use_bias=False)(ops.activate(h))
    h = ops.normalize(h, train=train)
    s = 2 if self.reduction else 1

    def sep(x, k, strides=s):
      return SeparableConv(self.filters, k, strides, ops=ops)(x, train=train)

    def avg(x, strides=s):
      return nn.avg_pool(x, (3, 3), (strides, strides), "SAME", count_include_pad=False)

    def max_(x):
      return nn.max_pool(x, (3, 3), (s, s), "SAME")

    if not self.reduction:  # Figure 4, left.
      outputs = [p,
                 sep(h, 5) + sep(p, 3),
                 sep(p, 5) + sep(p, 3),
                 avg(h) + p,
                 avg(p) + avg(p),
                 sep(h, 3) + h]
    else:  # Figure 4, right.
      y1 = sep(h, 5) + sep(p, 7)
      y2 = max_(h) + sep(p, 7)
      y3 = avg(h) + sep(p, 5)
      y4 = avg(y1, strides=1) + y2
      y5 = sep(y1, 3, strides=1) + max_(h)
      outputs = [y2, y3, y4, y5]
    return jnp.concatenate(outputs, axis=-1)


class NASNetA(OpsModule):
  """NASNet-A ``num_cells @ penultimate_filters`` for ImageNet-sized inputs.

  Attributes:
    num_cells: N, normal cells between reductions (4 for mobile, 6 for large).
    penultimate_filters: channels of the last cell, 24x the first normal cells' filters.
    stem_features: channels of the 3x3/2 stem convolution.
    dropout_rate: dropout before the classifier (needs the ``"dropout"`` rng when training).
  """

  num_cells: int = 4
  penultimate_filters: int = 1056
  stem_features: int = 32
  filter_multiplier: int = 2
  dropout_rate: float = 0.5
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    check_nhwc(x, "NASNetA")
    filters, m = self.penultimate_filters // 24, self.filter_multiplier
    if self.penultimate_filters % 24 or filters // m**2 < 2:
      raise ValueError(f"penultimate_filters must be a multiple of 24 with at least 2 filters in "
                       f"the first stem cell (penultimate_filters // 24 // filter_multiplier**2), "
                       f"got {self.penultimate_filters}.")
    ops = self.get_ops()
    x = ops.conv(self.stem_features, (3, 3), strides=(2, 2), padding="VALID", use_bias=False,
                 name="stem")(x)
    x = ops.normalize(x, train=train)

    # Each cell takes the last two outputs (h, p); the first stem cell has no p. After a
    # reduction cell, p is the reduction cell's input (the reference's skip_reduction=False).
    h, p = x, None
    cells = [(filters // m**2, True, "stem_cell1"), (filters // m, True, "stem_cell2")]
    for stage in range(3):
      if stage > 0:
        cells.append((filters * m**stage, True, f"reduction{stage}"))
      cells += [(filters * m**stage, False, f"cell{stage * self.num_cells + i}")
                for i in range(self.num_cells)]
    for cell_filters, reduction, name in cells:
      h, p = Cell(cell_filters, reduction, name=name, ops=ops)(h, p, train=train), h
    return pooled_head(ops.activate(h), ops, self.num_classes, dropout_rate=self.dropout_rate,
                       train=train)


# Published: the "params" collection (weights, norm scales and offsets; no running statistics)
# for 1000 classes; "macs": multiply-adds per 224x224 image.
nasnet_a_mobile = register_model(
    functools.partial(NASNetA, num_cells=4, penultimate_filters=1056, stem_features=32),
    name="nasnet_a_mobile",
    published=Published(
        params=5_289_978, paper_params=5.3e6, macs=564e6,
        source="Keras applications NASNetMobile (5,289,978 trainable of 5,326,716 with the "
               "BatchNorm statistics); Zoph et al. 2018, Table 2 (NASNet-A (4 @ 1056): 5.3M "
               "parameters, 564M multiply-adds)"))
