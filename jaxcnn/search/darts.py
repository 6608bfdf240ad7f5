"""DARTS over the NAS-Bench-201 cell space: a continuous relaxation searched by gradient descent.

Every edge of every cell computes ``sum_o softmax(alpha[edge])[o] * o(x)`` over its ops, with one
``alpha`` float32 ``[6, 5]`` shared by all cells (Liu et al. 2019, Eq. 1-2); an optional ``mask``
bool ``[6, 5]`` (e.g. ``nasbench201.SMALL.mask``) gives the disallowed ops zero weight (they are
neither built nor computed). The network uses the module names of
:class:`~jaxcnn.search.nasbench201.NASBench201Net`, so :func:`supernet.child_variables` reads a
derived child's weights out of its variables.

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

References:
  Liu, Simonyan & Yang 2019, "DARTS: Differentiable Architecture Search" (ICLR), Sections 2.2-2.4
  and 3.1.1 (the optimizers).
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
from jaxcnn.nn import conv as conv_lib
from jaxcnn.nn.layers import Ops, OpsModule
from jaxcnn.search import nasbench201 as nb
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
  return value, g_alpha - xi * mixed_hvp(train_loss, params, alpha, v)


# ----------------------------------------------------------------------------------------------
# The bilevel search.


@flax.struct.dataclass
class SearchState:
  params: Any  # the weights w
  batch_stats: Any  # BatchNorm running statistics (updated by the weight steps)
  alpha: jax.Array  # float32 [6, 5]
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


def batch_loss(net: DARTSNet, variables: Any, alpha: jax.Array, batch: dict[str, jax.Array],
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
    arch: int32 [6], the derived architecture (:func:`derive` of the final alpha).
    alpha: float32 [6, 5], the final architecture logits.
    alpha_history: float32 [num_steps + 1, 6, 5]: before the first step and after each
      (:func:`edge_weights` turns it into the op weights over the steps).
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


def search(net: DARTSNet, source: sources.InMemory, *, num_steps: int, batch_size: int,
           key: jax.Array, xi: float = 0.0, w_tx: optax.GradientTransformation | None = None,
           alpha_tx: optax.GradientTransformation | None = None,
           preprocess: Callable[[jax.Array], jax.Array] | None = None, val_split: str = "val",
           variables: Any = None, keep_none: bool = True, progress: bool = True) -> SearchResult:
  """Runs DARTS for ``num_steps`` steps; deterministic in ``key``.

  The weights train on batches of the ``"train"`` split, alpha on batches of ``val_split``, each
  drawn in its own shuffled epoch order (DARTS's two halves of the training data).

  Args:
    net: the :class:`DARTSNet` (its ``mask`` restricts the ops).
    source: an :class:`~jaxcnn.data.sources.InMemory` holding ``"train"`` and ``val_split``.
    num_steps: alpha-and-weight steps.
    batch_size: examples per batch, for both splits.
    key: draws the initial weights and alpha and both data orders.
    xi: 0 for first-order DARTS, > 0 (the paper: the weights' learning rate, 0.025) for the
      second-order gradient of :func:`alpha_grad`.
    w_tx, alpha_tx: the optimizers (default :func:`weight_optimizer`, :func:`alpha_optimizer`).
    preprocess: applied to the images (default: uint8 to float32 in [0, 1]).
    val_split: the split alpha is trained on.
    variables: initial ``{"params", "batch_stats"}`` of ``net`` (default: ``net.init``).
    keep_none: passed to :func:`derive`.
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
  alpha = init_alpha(k_alpha)
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
  alpha_history = np.asarray(jnp.stack(history), np.float32)
  return SearchResult(arch=derive(alpha_history[-1], net.mask, keep_none=keep_none),
                      alpha=alpha_history[-1], alpha_history=alpha_history,
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
