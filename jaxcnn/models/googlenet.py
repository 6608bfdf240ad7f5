"""GoogLeNet (Inception v1), with optional auxiliary classifiers.

Nine Inception modules (Szegedy et al. 2014, Table 1): parallel 1x1, 1x1-3x3, 1x1-5x5 and
3x3-max-pool-1x1 branches, concatenated. As in torchvision, every convolution is followed by a
BatchNorm (``norm="batch"``; the 2014 network had none: pass ``norm="none"``) and local response
normalization is left out. The pools use "SAME" padding, which gives the published map sizes
(112, 56, 28, 14, 7 at 224x224). ``padding="torch"`` pads the convolutions ``k // 2`` (the 7x7/2
stem: 3 on both sides instead of SAME's (2, 3)) and the pools as torchvision's ``ceil_mode=True``;
with ``branch5x5_kernel=3`` and ``norm="batch(epsilon=1e-3)"`` it is torchvision's network.

torchvision's GoogLeNet, whose 6,624,904 parameters are often quoted, uses a 3x3 kernel in the
"5x5" branch (a bug kept for its pretrained weights). ``branch5x5_kernel=5`` (the default) is the
paper's network; ``branch5x5_kernel=3`` reproduces torchvision's.

``aux_logits=True`` adds the two auxiliary classifiers after inception 4a and 4d (5x5/3 average
pool, 1x1 conv with 128 filters, 1024-unit dense layer, 70% dropout, classifier); in training mode
the model then returns ``(logits, aux1, aux2)`` and the paper weights the auxiliary losses by 0.3.
``aux_pool="torchvision"`` pools the auxiliary heads' input straight to 4x4 (adaptive average
pooling, as torchvision's ``InceptionAux``) instead of the paper's 5x5/3 average pool.
In evaluation mode it returns the logits only.

References: Szegedy et al. 2014, "Going Deeper with Convolutions".
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models._common import Published, check_nhwc, pooled_head, register_model
from jaxcnn.models.alexnet import adaptive_avg_pool
from jaxcnn.nn.layers import ConvBNAct, OpsModule

# Szegedy et al. 2014, Table 1, "ops" column: millions of multiply-adds per Inception module at
# 224x224. The 5a row is inconsistent with the module's own configuration (54M, against 51M that
# its filter counts give), and the table's stem rows (7x7 conv: 34M ops) undercount, so its 1.5e9
# total sits 5% below the paper network's 1.58e9; torchvision's 3x3 variant happens to match it.
TABLE1_MACS = {"3a": 128e6, "3b": 304e6, "4a": 73e6, "4b": 88e6, "4c": 100e6, "4d": 119e6,
               "4e": 170e6, "5a": 54e6, "5b": 71e6}

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) per module; Szegedy et al. 2014, Table 1.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def _pool(x: jax.Array, k: int, s: int, ops, *, p: int = 0) -> jax.Array:
  """Max-pool: "SAME" under the "same" convention; under "torch", PyTorch's
  ``MaxPool2d(k, s, padding=p, ceil_mode=True)`` (a last window that starts in the right padding
  is dropped)."""
  if ops.padding != "torch":
    return nn.max_pool(x, (k, k), strides=(s, s), padding="SAME")
  pads = []
  for n in x.shape[1:3]:
    out = -(-(n + 2 * p - k) // s) + 1
    if (out - 1) * s >= n + p:
      out -= 1
    pads.append((p, (out - 1) * s + k - n - p))
  return nn.max_pool(x, (k, k), strides=(s, s), padding=tuple(pads))


class Inception(OpsModule):
  """One Inception module: four parallel branches concatenated along channels.

  References: Szegedy et al. 2014, Fig. 2(b).
  """

  branches: tuple[int, int, int, int, int, int]
  branch5x5_kernel: int = 5

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    b1, r3, b3, r5, b5, pool_proj = self.branches
    k5 = self.branch5x5_kernel
    ops = self.get_ops()

    def layer(features, k, name):
      return ConvBNAct(features, (k, k), ops=ops, name=name)

    y1 = layer(b1, 1, "branch1x1")(x, train=train)
    y3 = layer(r3, 1, "branch3x3_reduce")(x, train=train)
    y3 = layer(b3, 3, "branch3x3")(y3, train=train)
    y5 = layer(r5, 1, "branch5x5_reduce")(x, train=train)
    y5 = layer(b5, k5, "branch5x5")(y5, train=train)
    yp = _pool(x, 3, 1, ops, p=1)
    yp = layer(pool_proj, 1, "pool_proj")(yp, train=train)
    return jnp.concatenate([y1, y3, y5, yp], axis=-1)


class AuxHead(OpsModule):
  """Auxiliary classifier: 5x5/3 average pool, 1x1 conv (128), dense 1024, dropout 0.7, dense.

  ``pool="torchvision"`` replaces the 5x5/3 pool by adaptive average pooling to 4x4
  (torchvision's ``InceptionAux``; the bins differ: at 14x14, width 4 at offsets 0, 3, 7, 10
  against width 5 at 0, 3, 6, 9). References: Szegedy et al. 2014, Sec. 5.
  """

  num_classes: int
  pool: str = "paper"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    if self.pool not in ("paper", "torchvision"):
      raise ValueError(f"Unknown auxiliary pool {self.pool!r}; use 'paper' or 'torchvision'.")
    if self.pool == "paper" and min(x.shape[1:3]) >= 5:
      x = nn.avg_pool(x, (5, 5), strides=(3, 3))
    x = adaptive_avg_pool(x, (4, 4))  # a no-op at 224x224 (14 -> 4); fixes the size elsewhere
    x = ConvBNAct(128, (1, 1), ops=ops, name="conv")(x, train=train)
    x = x.reshape(x.shape[0], -1)
    x = ops.activate(ops.dense(1024, name="fc1")(x))
    x = nn.Dropout(0.7, deterministic=not train)(x)
    return ops.dense(self.num_classes, name="fc2")(x)


class GoogLeNet(OpsModule):
  """GoogLeNet / Inception v1 for NHWC images of any size (global average pooling before the
  classifier; dropout 0.4 as in the paper).

  References: Szegedy et al. 2014, Table 1.
  """

  num_classes: int = 1000
  aux_logits: bool = False
  aux_pool: str = "paper"
  branch5x5_kernel: int = 5
  dropout_rate: float = 0.4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool):
    check_nhwc(x, "GoogLeNet")
    common = dict(ops=self.get_ops())
    pool = lambda y: _pool(y, 3, 2, common["ops"])  # noqa: E731
    x = ConvBNAct(64, (7, 7), (2, 2), name="conv1", **common)(x, train=train)
    x = pool(x)
    x = ConvBNAct(64, (1, 1), name="conv2_reduce", **common)(x, train=train)
    x = ConvBNAct(192, (3, 3), name="conv2", **common)(x, train=train)
    x = pool(x)
    # Auxiliary heads are built at init and run in training; evaluation skips them.
    with_aux = self.aux_logits and (train or self.is_initializing())
    aux = []
    for name, branches in INCEPTION.items():
      if name in ("4a", "5a"):
        x = pool(x) if name == "4a" else _pool(x, 2, 2, common["ops"])
      x = Inception(branches, self.branch5x5_kernel, name=f"inception{name}", **common)(
          x, train=train)
      if with_aux and name in ("4a", "4d"):
        aux.append(AuxHead(self.num_classes, self.aux_pool, name=f"aux_{name}", **common)(
            x, train=train))
    logits = pooled_head(x, common["ops"], self.num_classes, dropout_rate=self.dropout_rate,
                         train=train, name="fc")
    return (logits, *aux) if with_aux and train else logits


googlenet = register_model(
    GoogLeNet, name="googlenet",
    published=Published(params=6_624_904, macs=1.5e9, overrides={"branch5x5_kernel": 3},
                        source="torchvision googlenet (3x3 '5x5' branch, no aux heads)"))
