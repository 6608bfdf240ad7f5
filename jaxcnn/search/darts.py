"""DARTS: a continuous relaxation of a cell space, searched by gradient descent.

Two relaxed networks. :class:`DARTSNet`, over the NAS-Bench-201 cell space: every edge of every
cell computes ``sum_o softmax(alpha[edge])[o] * o(x)`` over its ops, with one ``alpha`` float32
``[6, 5]`` shared by all cells (Liu et al. 2019, Eq. 1-2); an optional ``mask`` bool ``[6, 5]``
(e.g. ``nasbench201.SMALL.mask``) gives the disallowed ops zero weight (they are neither built nor
computed). The network uses the module names of :class:`~jaxcnn.search.nasbench201.NASBench201Net`,
so :func:`supernet.child_variables` reads a derived child's weights out of its variables.
:class:`NASNetDARTS`, over the NASNet cell space (DARTS's own, Sections 2.1 and 2.4): cells of 5
nodes, each node the sum of mixed edges from all its predecessors, one ``alpha`` per cell kind
(``{"normal", "reduction"}``, float32 [20, K]); :func:`derive_nasnet` keeps two edges per node and
gives an architecture of :data:`search.nasnet.SPACE`.

The bilevel search (Section 2.3): ``alpha`` descends the validation loss (Adam), the weights
``w`` the training loss (momentum SGD), alternately. The alpha gradient is the first-order
``grad_alpha L_val(w, alpha)`` (``xi = 0``) or the second-order one

  ``grad_alpha L_val(w', alpha) - xi * H v``,  ``w' = w - xi grad_w L_train(w, alpha)``,
  ``v = grad_w' L_val(w', alpha)``,  ``H = d/dw grad_alpha L_train(w, alpha)``,

where ``H v`` is computed exactly by ``jax.jvp`` of ``grad_alpha L_train`` in ``w`` (the paper's
Eq. 7-8 approximate it by a central finite difference), so the result is the exact gradient of
the one-step unrolled objective ``alpha -> L_val(w - xi grad_w L_train(w, alpha), alpha)``.

::

  net = darts.DARTSNet(num_cells=1, channels=8, mask=nasbench201.SMALL.mask)
  result = darts.search(net, source, num_steps=200, batch_size=64, key=jax.random.PRNGKey(0),
                        xi=0.025)           # source: train and val splits (InMemory)
  result.arch                               # int32 [6], nasbench201.build(result.arch) builds
  darts.edge_weights(result.alpha_history, net.mask)   # [steps + 1, 6, 5], for a plot

  net = darts.NASNetDARTS(num_cells=1, penultimate_filters=96, stem_features=16)  # DARTS's ops
  result = darts.search(net, source, num_steps=200, batch_size=64, key=jax.random.PRNGKey(0))
  # (on CPU the step of 100 mixed edges with separable convolutions compiles for many minutes)
  search.nasnet.decode(result.arch)         # the (normal, reduction) Genotypes
  darts.nasnet_child(net, result.arch)      # search.nasnet.build(arch, stem="cifar", ...)

References:
  Liu, Simonyan & Yang 2019, "DARTS: Differentiable Architecture Search" (ICLR), Sections 2.1-2.4
  and 3.1.1 (the ops and the optimizers).
  Dong & Yang 2020, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture
  Search" (ICLR): DARTS on this space, deriving with ``none`` as a candidate.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Callable, Iterator

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxcnn.data import sources
from jaxcnn.models import nasnet as nasnet_model
from jaxcnn.nn import conv as conv_lib
from jaxcnn.nn.layers import Ops, OpsModule
from jaxcnn.search import nasbench201 as nb
from jaxcnn.search import nasnet as ns
from jaxcnn.search import supernet as sn
from jaxcnn.search.space import Space
from jaxcnn.train.steps import cross_entropy

SHAPE = (len(nb.EDGES), len(nb.OPS))  # alpha: one logit per (edge, op)
Loss = Callable[[Any, jax.Array], jax.Array]  # (weights, alpha) -> scalar


def check_mask(mask: Any) -> np.ndarray:
  """``mask`` (None: every op) as bool [6, 5]; every edge needs an allowed op."""
  if mask is None:
    return np.ones(SHAPE, bool)
  m = np.asarray(mask)
  if m.shape != SHAPE or m.dtype != bool:
    raise ValueError(f"mask must be bool {list(SHAPE)} (edges x ops {nb.OPS}), got "
                     f"{m.dtype}{list(m.shape)}.")
  empty = np.flatnonzero(~m.any(-1))
  if empty.size:
    raise ValueError(f"mask allows no op on edge {nb.SPACE.names[empty[0]]!r}.")
  return m


def edge_weights(alpha: jax.Array, mask: Any = None) -> jax.Array:
  """``softmax(alpha)`` per edge over the allowed ops, exactly 0 elsewhere (Liu et al. 2019,
  Eq. 1); ``alpha`` float [..., 6, 5]."""
  return jax.nn.softmax(jnp.where(check_mask(mask), alpha, -jnp.inf), axis=-1)


def init_alpha(key: jax.Array) -> jax.Array:
  """The paper's initial architecture logits: ``1e-3 * N(0, 1)``, float32 [6, 5]."""
  return 1e-3 * jax.random.normal(key, SHAPE, jnp.float32)


# ----------------------------------------------------------------------------------------------
# The relaxed network.


class DARTSEdge(sn.MixedEdge):
  """A mixed edge: the ``weights``-weighted sum of the ``allowed`` ops (Eq. 2)."""

  allowed: tuple[str, ...] = nb.OPS

  def __call__(self, x: jax.Array, weights: jax.Array, *, train: bool) -> jax.Array:
    out = jnp.zeros_like(x)
    for op in self.allowed:
      if op != "none":  # zeros: no term (its weight still enters the softmax)
        out = out + weights[nb.OPS.index(op)] * nb.apply_op(self, op, x, train=train)
    return out


class DARTSCell(OpsModule):
  """A cell of :class:`DARTSEdge` s; ``weights`` [6, 5], ``allowed`` the ops of each edge."""

  features: int
  allowed: tuple[tuple[str, ...], ...]

  @nn.compact
  def __call__(self, x: jax.Array, weights: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    edges = [DARTSEdge(self.features, allowed=a, ops=ops, name=f"edge_{j}_{i}")
             for (j, i), a in zip(nb.EDGES, self.allowed)]
    return nb.cell(lambda k, h: edges[k](h, weights[k], train=train), x)


class DARTSNet(nb.CellNetwork):
  """NAS-Bench-201's network with every edge a :class:`DARTSEdge` over one ``alpha [6, 5]``.

  ``__call__(x, alpha, *, train)``; ``mask``: None (all ops) or bool [6, 5], kept as nested
  tuples so that the module stays hashable.
  """

  mask: Any = None

  def __post_init__(self):
    if self.mask is not None:
      object.__setattr__(self, "mask", tuple(map(tuple, check_mask(self.mask).tolist())))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, alpha: jax.Array, *, train: bool) -> jax.Array:
    self._check(x)
    if alpha.shape != SHAPE:
      raise ValueError(f"alpha must be float {list(SHAPE)} (edges x ops), got {alpha.shape}.")
    mask = check_mask(self.mask)
    allowed = tuple(tuple(op for op, ok in zip(nb.OPS, row) if ok) for row in mask)
    weights = edge_weights(alpha, mask)

    def cell_fn(ops: Ops, features: int, name: str, h: jax.Array) -> jax.Array:
      return DARTSCell(features, allowed, ops=ops, name=name)(h, weights, train=train)

    return self._forward(x, cell_fn, train=train)


# ----------------------------------------------------------------------------------------------
# The relaxed NASNet network: DARTS's own search space.

# The DARTS ops (Liu et al. 2019, Section 3.1.1) that the NASNet set has, in the paper's order:
# zero, 3x3 max and average pooling, identity, 3x3 and 5x5 separable convolutions. Its dilated
# separable convolutions have no counterpart (``dil_conv_3x3`` is a plain dilated convolution).
NASNET_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "identity", "sep_conv_3x3", "sep_conv_5x5")
# The edges of a relaxed NASNet cell, (node, input state): node b reads h (0), p (1) and the
# nodes before it (2 .. b + 1); 2 + 3 + 4 + 5 + 6 = 20.
NASNET_EDGES = tuple((b, i) for b in range(ns.NUM_BLOCKS) for i in range(2 + b))


def check_op_names(op_names: Any) -> tuple[str, ...]:
  """``op_names`` as a tuple of distinct names of ``"none"`` and :data:`nasnet_model.OPS`, with
  at least one op besides ``"none"``."""
  names = tuple(op_names)
  known = ("none", *nasnet_model.OPS)
  bad = [op for op in names if op not in known]
  if bad:
    raise ValueError(f"Unknown op {bad[0]!r} for the relaxed NASNet cell; known: {known}.")
  if len(set(names)) != len(names) or not set(names) - {"none"}:
    raise ValueError(f"op_names must be distinct and hold an op besides 'none', got {names}.")
  return names


def check_nasnet_alpha(alpha: Any, op_names: tuple[str, ...]) -> None:
  """Raises a ValueError unless ``alpha`` is ``{"normal", "reduction"}`` of shape [20, K]."""
  shape = (len(NASNET_EDGES), len(op_names))
  if not isinstance(alpha, dict) or set(alpha) != set(ns.CELLS) or any(
      getattr(alpha[c], "shape", None) != shape for c in ns.CELLS):
    got = ({k: getattr(v, "shape", type(v).__name__) for k, v in alpha.items()}
           if isinstance(alpha, dict) else getattr(alpha, "shape", type(alpha).__name__))
    raise ValueError(f"alpha must be {{'normal', 'reduction'}} of float {list(shape)} (edges x "
                     f"ops {op_names}), got {got}.")


def init_nasnet_alpha(key: jax.Array, op_names: tuple[str, ...] = NASNET_OPS
                      ) -> dict[str, jax.Array]:
  """The paper's initial logits, ``1e-3 * N(0, 1)``: ``{"normal", "reduction"}`` float32
  [20, K]."""
  keys = jax.random.split(key, len(ns.CELLS))
  shape = (len(NASNET_EDGES), len(op_names))
  return {c: 1e-3 * jax.random.normal(k, shape, jnp.float32) for c, k in zip(ns.CELLS, keys)}


def nasnet_edge_weights(alpha: Any) -> dict[str, jax.Array]:
  """``softmax(alpha)`` over the ops of every edge, ``"none"`` included (Eq. 1); ``alpha``
  ``{"normal", "reduction"}`` float [..., 20, K]."""
  return {c: jax.nn.softmax(jnp.asarray(alpha[c]), axis=-1) for c in ns.CELLS}


class CellOp(OpsModule):
  """One op of :data:`~jaxcnn.models.nasnet.CELL_OPS` in a scope of its own (the weights of
  each op of a mixed edge apart)."""

  op: str
  filters: int
  strides: int

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return nasnet_model.CELL_OPS[self.op](x, self.filters, self.strides, self.get_ops(), train)


class NASNetMixedOp(OpsModule):
  """The ops of a mixed edge of a NASNet cell: ``o(x)`` for every ``o`` of ``op_names`` but the
  zero op ``"none"``, stacked: float [K', N, H / strides, W / strides, filters]."""

  filters: int
  strides: int
  op_names: tuple[str, ...]

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    return jnp.stack([CellOp(op, self.filters, self.strides, ops=ops, name=op)(x, train=train)
                      for op in self.op_names if op != "none"])


class NASNetDARTSCell(OpsModule):
  """A relaxed NASNet cell (Liu et al. 2019, Section 2.1-2.2): node ``b`` is the sum of mixed
  edges ``sum_o weights[edge, o] * o(x)`` (Eq. 2) from ``h``, ``p`` and every earlier node; the
  output concatenates the 5 nodes. The zero op ``"none"`` adds no term (its weight still enters
  the softmax); a node's terms are one contraction of its edges' stacked ops with their weights.

  ``h`` and ``p`` are brought to ``filters`` channels as in :class:`~jaxcnn.models.nasnet.Cell`
  (the same modules, in the same order, so the names match a derived child's); in a reduction
  cell the edges from ``h`` and ``p`` have stride 2. ``weights`` float [20, K].
  """

  filters: int
  reduction: bool
  op_names: tuple[str, ...]

  @nn.compact
  def __call__(self, h: jax.Array, p: jax.Array | None, weights: jax.Array, *, train: bool
               ) -> jax.Array:
    ops = self.get_ops()
    states = list(nasnet_model.cell_inputs(h, p, self.filters, ops, train))
    real = [k for k, op in enumerate(self.op_names) if op != "none"]
    for b in range(ns.NUM_BLOCKS):
      rows = [k for k, (j, _) in enumerate(NASNET_EDGES) if j == b]
      outs = jnp.stack([NASNetMixedOp(self.filters, 2 if self.reduction and i < 2 else 1,
                                      self.op_names, ops=ops, name=f"edge_{b}_{i}")(
                                          states[i], train=train) for i in range(2 + b)])
      w = weights[np.asarray(rows)[:, None], np.asarray(real)[None, :]]  # [2 + b, K']
      states.append(jnp.tensordot(w.astype(outs.dtype), outs, axes=2))
    return jnp.concatenate(states[2:], axis=-1)


class NASNetDARTS(nasnet_model.NASNetSkeleton):
  """DARTS's search network over the NASNet cell space (Liu et al. 2019, Sections 2.1-2.2).

  The CIFAR skeleton of :class:`~jaxcnn.models.nasnet.NASNet` (``stem="cifar"``: a 3x3 stem
  convolution, N normal cells, a reduction cell, N normal, a reduction, N normal; the same module
  names) with every cell a :class:`NASNetDARTSCell` of B = 5 nodes over ``op_names``.
  ``__call__(x, alpha, *, train)``: ``alpha = {"normal": [20, K], "reduction": [20, K]}``, one
  logit per (edge, op), shared by all cells of a kind. The defaults are DARTS's search network:
  8 cells (``num_cells=2``), 16 initial channels (``penultimate_filters=384``), a 48-channel
  stem. :func:`derive_nasnet` gives the discrete architecture (int32 [50] of
  :data:`search.nasnet.SPACE`), :func:`nasnet_child` builds it on the same skeleton and
  :func:`nasnet_child_variables` reads its weights out of this network's.
  """

  num_cells: int = 2
  penultimate_filters: int = 384
  stem_features: int = 48
  dropout_rate: float = 0.0
  num_classes: int = 10
  stem: str = "cifar"
  op_names: tuple[str, ...] = NASNET_OPS

  def __post_init__(self):
    object.__setattr__(self, "op_names", check_op_names(self.op_names))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, alpha: Any, *, train: bool) -> jax.Array:
    if self.stem != "cifar":
      raise ValueError(f"NASNetDARTS has the CIFAR skeleton only: stem must be 'cifar', got "
                       f"{self.stem!r}.")
    check_nasnet_alpha(alpha, self.op_names)
    weights = nasnet_edge_weights(alpha)
    ops = self.get_ops()

    def cell_fn(filters, reduction, name, h, p):
      cell = NASNetDARTSCell(filters, reduction, self.op_names, name=name, ops=ops)
      return cell(h, p, weights["reduction" if reduction else "normal"].astype(h.dtype),
                  train=train)

    return self._forward(x, cell_fn, train=train)


def nasnet_child(net: NASNetDARTS, arch: Any) -> nn.Module:
  """The derived architecture (int [50] of :data:`search.nasnet.SPACE`) on ``net``'s skeleton:
  :func:`search.nasnet.build` with ``stem="cifar"`` and ``net``'s sizes and choices."""
  return ns.build(arch, **ns.child_config(net))


# ----------------------------------------------------------------------------------------------
# The architecture gradient.


def mixed_hvp(train_loss: Loss, params: Any, alpha: jax.Array, v: Any) -> jax.Array:
  """``H v`` with ``H = d/dw grad_alpha L_train(w, alpha)``: the exact mixed second derivative
  times ``v`` (a pytree like ``params``), by ``jax.jvp`` of ``grad_alpha L_train`` in ``w``
  (forward over reverse; Liu et al. 2019, Eq. 8 use a central finite difference instead)."""
  grad_alpha = lambda w: jax.grad(train_loss, argnums=1)(w, alpha)
  return jax.jvp(grad_alpha, (params,), (v,))[1]


def alpha_grad(train_loss: Loss, val_loss: Loss, params: Any, alpha: jax.Array, xi: float
               ) -> tuple[jax.Array, jax.Array]:
  """``(L_val, its gradient in alpha)`` for DARTS's architecture step (Liu et al. 2019, Eq. 6-7).

  ``xi = 0``: first order, ``L_val(w, alpha)`` and ``grad_alpha L_val(w, alpha)``. ``xi > 0``:
  second order, at the unrolled weights ``w' = w - xi grad_w L_train(w, alpha)``:
  ``grad_alpha L_val(w', alpha) - xi * H v`` with ``v = grad_w' L_val(w', alpha)`` and ``H v``
  from :func:`mixed_hvp`, which is the exact gradient of ``alpha -> L_val(w'(alpha), alpha)``.

  Args:
    train_loss, val_loss: ``(params, alpha) -> scalar`` on a training and a validation batch.
    params: the network weights ``w`` (a pytree).
    alpha: the architecture logits.
    xi: the unrolling step size (a Python float; the paper uses the weights' learning rate).
  """
  if xi < 0:
    raise ValueError(f"xi must be >= 0 (0: first order), got {xi}.")
  if xi == 0:
    return jax.value_and_grad(val_loss, argnums=1)(params, alpha)
  g_w = jax.grad(train_loss)(params, alpha)
  unrolled = jax.tree.map(lambda w, g: w - xi * g, params, g_w)
  value, (g_alpha, v) = jax.value_and_grad(val_loss, argnums=(1, 0))(unrolled, alpha)
  hv = mixed_hvp(train_loss, params, alpha, v)
  return value, jax.tree.map(lambda g, h: g - xi * h, g_alpha, hv)


# ----------------------------------------------------------------------------------------------
# The bilevel search.


@flax.struct.dataclass
class SearchState:
  params: Any  # the weights w
  batch_stats: Any  # BatchNorm running statistics (updated by the weight steps)
  alpha: Any  # float32 [6, 5] (DARTSNet) or {"normal", "reduction"}: [20, K] (NASNetDARTS)
  w_opt_state: Any
  alpha_opt_state: Any
  step: jax.Array  # int32 []


def weight_optimizer(num_steps: int, learning_rate: float = 0.025, momentum: float = 0.9,
                     weight_decay: float = 3e-4, min_learning_rate: float = 0.001,
                     clip_norm: float = 5.0) -> optax.GradientTransformation:
  """The paper's optimizer of ``w`` (Section 3.1.1): momentum SGD, weight decay, a cosine
  schedule from ``learning_rate`` to ``min_learning_rate`` and gradients clipped to norm 5."""
  schedule = optax.cosine_decay_schedule(learning_rate, max(num_steps, 1),
                                         alpha=min_learning_rate / learning_rate)
  return optax.chain(optax.clip_by_global_norm(clip_norm), optax.add_decayed_weights(weight_decay),
                     optax.sgd(schedule, momentum=momentum))


def alpha_optimizer(learning_rate: float = 3e-4, weight_decay: float = 1e-3
                    ) -> optax.GradientTransformation:
  """The paper's optimizer of ``alpha`` (Section 3.1.1): Adam, betas (0.5, 0.999), decay 1e-3."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.adam(learning_rate, b1=0.5, b2=0.999))


def batch_loss(net: nn.Module, variables: Any, alpha: Any, batch: dict[str, jax.Array],
               preprocess: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array, Any]:
  """Mean cross-entropy of a train-mode pass (batch statistics) and the new ``batch_stats``."""
  logits, updates = net.apply(variables, preprocess(batch["image"]), alpha, train=True,
                              mutable=["batch_stats"])
  return cross_entropy(logits, batch["label"]).mean(), updates["batch_stats"]


def to_unit(images: jax.Array) -> jax.Array:
  """uint8 images to float32 in [0, 1] (the default preprocessing)."""
  return images.astype(jnp.float32) / 255.0


@functools.lru_cache(maxsize=8)
def make_step(net: DARTSNet, w_tx: optax.GradientTransformation,
              alpha_tx: optax.GradientTransformation, xi: float,
              preprocess: Callable[[jax.Array], jax.Array]):
  """One jitted DARTS step (Liu et al. 2019, Algorithm 1): an alpha step on the validation
  batch, then a weight step on the training batch with the new alpha.

  Every forward pass runs in train mode (BatchNorm normalizes with the batch's statistics); only
  the weight step's pass updates the running statistics, those of the alpha step (and of the
  unrolled weights) are discarded.
  """

  def step(state: SearchState, train_batch: Any, val_batch: Any):
    def loss_on(batch):
      return lambda p, a: batch_loss(net, {"params": p, "batch_stats": state.batch_stats}, a,
                                     batch, preprocess)[0]

    val_loss, g_alpha = alpha_grad(loss_on(train_batch), loss_on(val_batch), state.params,
                                   state.alpha, xi)
    updates, alpha_opt_state = alpha_tx.update(g_alpha, state.alpha_opt_state, state.alpha)
    alpha = optax.apply_updates(state.alpha, updates)

    def w_loss(p):
      return batch_loss(net, {"params": p, "batch_stats": state.batch_stats}, alpha, train_batch,
                        preprocess)

    (train_loss, batch_stats), g_w = jax.value_and_grad(w_loss, has_aux=True)(state.params)
    updates, w_opt_state = w_tx.update(g_w, state.w_opt_state, state.params)
    new = state.replace(params=optax.apply_updates(state.params, updates),
                        batch_stats=batch_stats, alpha=alpha, w_opt_state=w_opt_state,
                        alpha_opt_state=alpha_opt_state, step=state.step + 1)
    return new, {"train_loss": train_loss, "val_loss": val_loss}

  return conv_lib.jit(step)


@dataclasses.dataclass
class SearchResult:
  """What :func:`search` returns.

  Attributes:
    arch: the derived architecture: int32 [6] (:func:`derive` of the final alpha) for a
      :class:`DARTSNet`, int32 [50] of ``search.nasnet.SPACE`` (:func:`derive_nasnet`) for a
      :class:`NASNetDARTS`.
    alpha: the final architecture logits, float32 [6, 5], or ``{"normal", "reduction"}`` of
      float32 [20, K].
    alpha_history: alpha before the first step and after each, float32 [num_steps + 1, ...]
      (per cell kind for NASNet; :func:`edge_weights`, :func:`nasnet_edge_weights` turn it into
      the op weights over the steps).
    train_loss, val_loss: float32 [num_steps], each step's losses (``val_loss`` at the unrolled
      weights for ``xi > 0``).
    variables: the DARTS network's final ``{"params", "batch_stats"}``.
  """

  arch: np.ndarray
  alpha: np.ndarray
  alpha_history: np.ndarray
  train_loss: np.ndarray
  val_loss: np.ndarray
  variables: dict[str, Any]


def _batches(source: Any, key: jax.Array, batch_size: int) -> Iterator[dict[str, jax.Array]]:
  """Endless training batches of ``source``, one epoch order after another, from ``key``."""
  per_epoch = source.steps_per_epoch(batch_size)
  for epoch in itertools.count():
    for batch in source.train_batches(key[None], epoch, 0, per_epoch, batch_size):
      yield jax.tree.map(lambda a: a[0], batch) if batch["label"].ndim == 2 else batch


def search(net: DARTSNet | NASNetDARTS, source: sources.InMemory, *, num_steps: int, batch_size: int,
           key: jax.Array, xi: float = 0.0, w_tx: optax.GradientTransformation | None = None,
           alpha_tx: optax.GradientTransformation | None = None,
           preprocess: Callable[[jax.Array], jax.Array] | None = None, val_split: str = "val",
           variables: Any = None, keep_none: bool = True, progress: bool = True) -> SearchResult:
  """Runs DARTS for ``num_steps`` steps; deterministic in ``key``.

  The weights train on batches of the ``"train"`` split, alpha on batches of ``val_split``, each
  drawn in its own shuffled epoch order (DARTS's two halves of the training data).

  Args:
    net: a :class:`DARTSNet` (its ``mask`` restricts the ops) or a :class:`NASNetDARTS`.
    source: an :class:`~jaxcnn.data.sources.InMemory` holding ``"train"`` and ``val_split``.
    num_steps: alpha-and-weight steps.
    batch_size: examples per batch, for both splits.
    key: draws the initial weights and alpha (:func:`init_alpha`, :func:`init_nasnet_alpha`)
      and both data orders.
    xi: 0 for first-order DARTS, > 0 (the paper: the weights' learning rate, 0.025) for the
      second-order gradient of :func:`alpha_grad`.
    w_tx, alpha_tx: the optimizers (default :func:`weight_optimizer`, :func:`alpha_optimizer`).
    preprocess: applied to the images (default: uint8 to float32 in [0, 1]).
    val_split: the split alpha is trained on.
    variables: initial ``{"params", "batch_stats"}`` of ``net`` (default: ``net.init``).
    keep_none: passed to :func:`derive` (a :class:`DARTSNet`'s; :func:`derive_nasnet` always
      excludes the zero op).
    progress: show a tqdm progress bar.
  """
  if num_steps < 1 or batch_size < 1:
    raise ValueError(f"Need num_steps >= 1 and batch_size >= 1, got {num_steps} and "
                     f"{batch_size}.")
  if val_split not in source.splits:
    raise ValueError(f"DARTS trains alpha on split {val_split!r}; the source holds "
                     f"{sorted(source.splits)}.")
  preprocess = preprocess or to_unit
  w_tx = w_tx or weight_optimizer(num_steps)
  alpha_tx = alpha_tx or alpha_optimizer()
  k_init, k_alpha, k_train, k_val = jax.random.split(key, 4)
  nasnet = isinstance(net, NASNetDARTS)
  alpha = init_nasnet_alpha(k_alpha, net.op_names) if nasnet else init_alpha(k_alpha)
  if variables is None:
    x = preprocess(jnp.zeros((1, *source.input_shape), jnp.uint8))
    variables = jax.jit(lambda k: net.init(k, x, alpha, train=False))(k_init)
  val = source.splits[val_split]
  val_source = sources.InMemory({"train": {"image": np.asarray(val["image"]),
                                           "label": np.asarray(val["label"])}},
                                eval_batch_size=batch_size, mesh=source.mesh)
  state = SearchState(params=variables["params"], batch_stats=variables["batch_stats"],
                      alpha=alpha, w_opt_state=w_tx.init(variables["params"]),
                      alpha_opt_state=alpha_tx.init(alpha), step=jnp.zeros((), jnp.int32))
  rep = sources.replicated(source.mesh)  # where the step's outputs live: one compilation
  state = jax.tree.map(lambda x: sources.put(x, rep), state)
  step = make_step(net, w_tx, alpha_tx, xi, preprocess)
  history, losses = [alpha], []
  train_batches, val_batches = _batches(source, k_train, batch_size), _batches(
      val_source, k_val, batch_size)
  for _ in tqdm(range(num_steps), desc="darts", disable=not progress):
    state, metrics = step(state, next(train_batches), next(val_batches))
    history.append(state.alpha)
    losses.append(metrics)
  losses = jax.device_get(losses)
  alpha_history = jax.tree.map(lambda *a: np.asarray(np.stack(a), np.float32), *history)
  final = jax.tree.map(lambda a: a[-1], alpha_history)
  arch = (derive_nasnet(final, net.op_names) if nasnet else
          derive(final, net.mask, keep_none=keep_none))
  return SearchResult(arch=arch, alpha=final, alpha_history=alpha_history,
                      train_loss=np.asarray([m["train_loss"] for m in losses], np.float32),
                      val_loss=np.asarray([m["val_loss"] for m in losses], np.float32),
                      variables={"params": state.params, "batch_stats": state.batch_stats})


# ----------------------------------------------------------------------------------------------
# Deriving the architecture.


def _argmax(scores: jax.Array, allowed: jax.Array, is_none: jax.Array, keep_none: bool
            ) -> jax.Array:
  """Per row, the allowed column of largest score; ``keep_none=False`` skips the ``none``
  column wherever the row allows another one."""
  if not keep_none:
    allowed = allowed & ~(is_none & (allowed & ~is_none).any(-1, keepdims=True))
  return jnp.argmax(jnp.where(allowed, scores, -jnp.inf), axis=-1).astype(jnp.int32)


def derive(alpha: Any, mask: Any = None, *, keep_none: bool = True) -> np.ndarray:
  """The discrete cell: the strongest allowed op of every edge, int32 [6] for
  :func:`nasbench201.build`.

  ``keep_none=True`` (the default) is NAS-Bench-201's rule, the argmax over all candidates, so
  an edge may be removed; ``keep_none=False`` is the original DARTS rule (Liu et al. 2019,
  Section 2.4), the strongest non-zero op (``none`` only on an edge that allows nothing else).
  """
  alpha = np.asarray(alpha)
  if alpha.shape != SHAPE:
    raise ValueError(f"alpha must be float {list(SHAPE)} (edges x ops), got {alpha.shape}.")
  is_none = np.arange(len(nb.OPS)) == nb.OPS.index("none")
  return np.asarray(_argmax(jnp.asarray(alpha), jnp.asarray(check_mask(mask)),
                            jnp.asarray(is_none), keep_none))


def derive_nasnet(alpha: Any, op_names: tuple[str, ...] = NASNET_OPS) -> np.ndarray:
  """The discrete NASNet cells of a relaxed one (Liu et al. 2019, Section 2.4), as int32 [50] of
  :data:`search.nasnet.SPACE` (``search.nasnet.decode`` gives the two genotypes).

  In each cell, node ``b`` keeps its two strongest incoming edges, an edge's strength being its
  strongest op's weight ``softmax(alpha[edge])[o]`` with the zero op excluded (ties: the earlier
  state), each with that op (ties: the earlier op); a block lists its edges strongest first, and
  the cell concatenates all five nodes.
  """
  op_names = check_op_names(op_names)
  if isinstance(alpha, dict):
    alpha = {k: np.asarray(v, np.float64) for k, v in alpha.items()}
  check_nasnet_alpha(alpha, op_names)
  real = np.asarray([op != "none" for op in op_names])
  genotypes = []
  for cell in ns.CELLS:
    logits = alpha[cell] - alpha[cell].max(-1, keepdims=True)
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    weights = np.where(real, weights, -np.inf)  # the zero op never counts
    blocks = []
    for b in range(ns.NUM_BLOCKS):
      rows = [k for k, (j, _) in enumerate(NASNET_EDGES) if j == b]  # inputs 0 .. b + 1
      keep = np.argsort(-weights[rows].max(-1), kind="stable")[:2]
      blocks.append(tuple((op_names[int(weights[rows[i]].argmax())], int(i)) for i in keep))
    genotypes.append(nasnet_model.Genotype(tuple(blocks), tuple(range(2, 2 + ns.NUM_BLOCKS))))
  return ns.encode(tuple(genotypes)).astype(np.int32)


def _auto_index(name: str) -> tuple[str, int] | None:
  """``("Cls", n)`` for flax's automatic module name ``Cls_n``, else None."""
  cls, _, n = name.rpartition("_")
  return (cls, int(n)) if cls and n.isdigit() else None


def nasnet_child_variables(variables: Any, arch: Any) -> dict[str, Any]:
  """The variables of ``nasnet_child(net, arch)`` read out of a :class:`NASNetDARTS`'s.

  The stem, the head and each cell's preprocessing are kept as they are. The op ``o`` of a block
  on state ``i`` takes the relaxed edge's ``edge_{b}_{i}/{o}/Cls_0``, renamed ``Cls_n``: the name
  flax gives the child's n-th automatically named ``Cls`` in the cell, counted in the genotype's
  call order after the preprocessing's.
  """
  genotypes = dict(zip(ns.CELLS, ns.decode(arch)))
  variables = flax.core.unfreeze(variables)
  cells = sorted({n for tree in variables.values() for n in tree
                  if n.startswith(("cell", "reduction"))})
  out = {col: {n: v for n, v in tree.items() if n not in cells} for col, tree in variables.items()}
  for name in cells:
    genotype = genotypes["reduction" if name.startswith("reduction") else "normal"]
    count: dict[str, int] = {}
    for col, tree in variables.items():
      kept = {k: v for k, v in tree.get(name, {}).items() if not k.startswith("edge_")}
      if name in tree:
        out[col][name] = kept
      for cls, n in filter(None, map(_auto_index, kept)):
        count[cls] = max(count.get(cls, 0), n + 1)
    for b, pair in enumerate(genotype.blocks):
      for op, i in pair:
        scopes = {col: tree.get(name, {}).get(f"edge_{b}_{i}", {}).get(op, {})
                  for col, tree in variables.items()}
        for key in sorted(set().union(*scopes.values()), key=lambda k: _auto_index(k)[1]):
          cls = _auto_index(key)[0]
          n, count[cls] = count.get(cls, 0), count.get(cls, 0) + 1
          for col, scope in scopes.items():
            if key in scope:
              out[col].setdefault(name, {})[f"{cls}_{n}"] = scope[key]
  return out


def to_subspace(arch: Any, subspace: nb.Subspace) -> np.ndarray:
  """A NAS-Bench-201 architecture (int [6]) as the free-edge indices of ``subspace`` (int32
  [k]), so that ``subspace.to_full(result) == arch``.

  Raises:
    ValueError naming the edge whose op the subspace does not allow.
  """
  ops = dict(zip(nb.SPACE.names, nb.arch_ops(np.asarray(arch))))
  free = subspace.space.choices
  for name, op in ops.items():
    allowed = free.get(name, (subspace.fixed,))
    if op not in allowed:
      raise ValueError(f"Edge {name!r} has op {op!r}; the subspace allows {allowed}.")
  return np.asarray([free[name].index(ops[name]) for name in free], np.int32)


# ----------------------------------------------------------------------------------------------
# The strategy registry's view of DARTS.


@flax.struct.dataclass
class DARTSState:
  alpha: jax.Array  # float32 [6, 5], the architecture logits (search(...).alpha once searched)
  edge: jax.Array  # int32 [L]: the NAS-Bench-201 edge of each choice of the space
  op: jax.Array  # int32 [L, K]: the NAS-Bench-201 op of each option (0 where padding)
  allowed: jax.Array  # bool [L, K]: real options


@dataclasses.dataclass(frozen=True)
class DARTS:
  """DARTS under the ``init/ask/tell`` names (``strategies.get("darts")``), as far as it fits.

  DARTS learns ``alpha`` by gradient descent on the validation loss, not from rewards, so there
  is no ``tell``: it raises and points to :func:`search`, the gradient driver. ``init(key,
  space)`` takes a space of NAS-Bench-201 cells (``nasbench201.SPACE`` or a
  :class:`~jaxcnn.search.nasbench201.Subspace`'s ``space``) and holds the paper's initial
  ``alpha``; ``ask`` returns the derived architecture (:func:`derive`) in that space's indices,
  ``num`` times. With a searched ``alpha``::

    state = strategy.init(key, nasbench201.SMALL.space).replace(alpha=result.alpha)
    archs, _ = strategy.ask(key, state, 1)        # SMALL's indices of result.arch

  Args:
    keep_none: as in :func:`derive`.
  """

  keep_none: bool = True

  def init(self, key: jax.Array, space: Space) -> DARTSState:
    bad = [n for n in space.names if n not in nb.SPACE.names] or [
        o for n in space.names for o in space.options(n) if o not in nb.OPS]
    if bad:
      raise ValueError(f"DARTS relaxes the NAS-Bench-201 cell space: choices are edges "
                       f"{nb.SPACE.names} with ops {nb.OPS}; got {bad[0]!r} in {space}.")
    k = max(len(space.options(n)) for n in space.names)
    op = np.zeros((len(space), k), np.int32)
    allowed = np.zeros((len(space), k), bool)
    for l, name in enumerate(space.names):
      ops = [nb.OPS.index(o) for o in space.options(name)]
      op[l, :len(ops)], allowed[l, :len(ops)] = ops, True
    edge = np.asarray([nb.SPACE.names.index(n) for n in space.names], np.int32)
    return DARTSState(alpha=init_alpha(key), edge=jnp.asarray(edge), op=jnp.asarray(op),
                      allowed=jnp.asarray(allowed))

  def ask(self, key: jax.Array, state: DARTSState, num: int):
    del key  # the derived architecture is deterministic
    scores = state.alpha[state.edge[:, None], state.op]
    is_none = state.op == nb.OPS.index("none")
    arch = _argmax(scores, state.allowed, is_none, self.keep_none)
    return jnp.broadcast_to(arch, (num, arch.shape[0])), state

  def tell(self, state: DARTSState, archs: Any, rewards: Any) -> DARTSState:
    raise NotImplementedError(
        "DARTS learns alpha from gradients of the validation loss, not from rewards: run "
        "jaxcnn.search.darts.search(net, source, ...) and ask with "
        "state.replace(alpha=result.alpha).")
