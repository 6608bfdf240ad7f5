"""Pure train and eval steps, jitted once with donated state buffers.

``train_step(state, batch) -> (state, metrics)``: per-step randomness is
``jax.random.fold_in(state.rng, state.step)`` (split into augmentation and dropout keys); the
batch's uint8 (or float) images go through augmentation (training only), then the fitted
preprocessing transform, then the model; BatchNorm statistics are updated explicitly
(``mutable=["batch_stats"]``); weight decay is in the optax chain, not in the loss.

Mixed precision: ``compute_dtype=jnp.bfloat16`` casts a copy of the float32 parameters and the
inputs to bfloat16 for the forward and backward pass; parameters, optimizer state, batch
statistics, logits and the loss stay float32 (Micikevicius et al. 2018, "Mixed Precision
Training").

The fitted transform (a :class:`jaxcnn.data.preprocessing.Transform` pytree) is an argument of
the compiled step, not a constant baked into it (ZCA on CIFAR is a 3072 x 3072 matrix): the
builders return a :class:`BoundStep` that passes it on every call, so one compilation serves every
transform of the same structure. A plain function (``lambda x: x / 255``) is closed over.

``num_models=M`` trains a stack of ``M`` models (leading axis of size ``M`` on every state leaf,
one batch per model, or one batch shared by all with ``shared_batch=True``) in one compiled step:
``jax.vmap`` for ``M > 1`` on GPU/TPU, a loop over the models inside the step on CPU (see
:func:`over_models`); a stack of one is squeezed and runs the plain step, so a single model pays
nothing for the model axis. ``mesh`` shards the batch over the mesh's ``"data"`` axis and
replicates the state (data parallelism through ``jax.sharding``; XLA inserts the gradient
all-reduce).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxcnn.data.sources import batch_sharding, replicated
from jaxcnn.nn.conv import jit
from jaxcnn.train import lookahead as lookahead_lib
from jaxcnn.train.state import TrainState

Batch = dict[str, jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array, *,
                  label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy against integer ``labels``, with label smoothing.

  The target puts ``1 - label_smoothing + label_smoothing / K`` on the true class and
  ``label_smoothing / K`` on each other class. References: Szegedy et al. 2016, "Rethinking the
  Inception Architecture for Computer Vision", section 7.
  """
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def _cast_floats(tree: Any, dtype: Any) -> Any:
  return jax.tree.map(
      lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _prepare(images: jax.Array, preprocess: Callable[[jax.Array], jax.Array] | None) -> jax.Array:
  return preprocess(images) if preprocess is not None else images.astype(jnp.float32)


def _split_preprocess(preprocess: Any) -> tuple[Any, Any]:
  """``(argument, closed_over)``: a pytree of arrays (a fitted Transform, or None) is passed to
  the compiled step as an argument; anything else (a plain function) is closed over."""
  if all(isinstance(x, (jax.Array, np.ndarray)) for x in jax.tree.leaves(preprocess)):
    return preprocess, None
  return None, preprocess


@dataclasses.dataclass(frozen=True, eq=False)
class BoundStep:
  """``step(state, batch)``: calls the jitted ``fn(state, batch, preprocess)`` with the bound
  ``preprocess`` (the fitted transform's arrays travel as an argument, not as a constant).

  ``dataclasses.replace(step, preprocess=other)`` reuses the compilation for another transform of
  the same structure; ``step.lower(state, batch).compile()`` compiles ahead of time.
  """

  fn: Callable[..., Any]
  preprocess: Any = None

  def __call__(self, state: Any, batch: Batch) -> Any:
    return self.fn(state, batch, self.preprocess)

  def lower(self, state: Any, batch: Batch) -> BoundLowered:
    return BoundLowered(self.fn.lower(state, batch, self.preprocess), self.preprocess)


@dataclasses.dataclass(frozen=True, eq=False)
class BoundLowered:
  """A lowered :class:`BoundStep`; ``compile()`` gives a :class:`BoundStep` of the executable."""

  lowered: Any
  preprocess: Any = None

  def compile(self) -> BoundStep:
    return BoundStep(self.lowered.compile(), self.preprocess)

  def as_text(self) -> str:
    return self.lowered.as_text()


def over_models(fn: Callable[..., Any], num_models: int | None,
                in_axes: tuple[int | None, ...]) -> Callable[..., Any]:
  """``fn`` over a leading model axis of size ``num_models`` on the arguments with in-axis 0.

  For several models: ``jax.vmap`` on GPU/TPU; on CPU a loop over the models inside the program
  (``lax.map``), because a vmapped convolution becomes one grouped convolution, which XLA:CPU
  runs far slower than the models' convolutions one after another (train steps of 2 ResNet-20s
  2.0x and 16 simple_cnns 2.5x faster as a loop, 2 airbench94s 170 against 84 images/s; an MLP
  population 0.95x; BENCHMARKS.md). The loop relies on :mod:`jaxcnn.nn.conv`, whose gradient
  convolutions keep their library kernels inside a loop body (``flax.linen.Conv``'s do not:
  ``conv=nn.Conv`` in a CPU population is slow). For one model the axis is dropped, the plain
  ``fn`` runs and the axis is put back on its outputs; None returns ``fn``.
  """
  if num_models is None:
    return fn
  if num_models < 1:
    raise ValueError(f"num_models must be >= 1, got {num_models}.")
  if any(axis not in (0, None) for axis in in_axes):
    raise ValueError(f"in_axes must be 0 or None, got {in_axes}.")
  if num_models > 1:
    if jax.default_backend() == "cpu":
      return loop_over_models(fn, in_axes)
    return jax.vmap(fn, in_axes=in_axes)

  def single(*args):
    args = [a if axis is None else jax.tree.map(lambda x: x[0], a)
            for a, axis in zip(args, in_axes)]
    return jax.tree.map(lambda x: x[None], fn(*args))

  return single


def loop_over_models(fn: Callable[..., Any], in_axes: tuple[int | None, ...]) -> Callable[..., Any]:
  """``jax.vmap(fn, in_axes)`` computed as a loop over the leading axis (``lax.map``): one model
  at a time inside one program. ``in_axes`` entries are 0 or None (closed over)."""

  def looped(*args):
    def one(mapped):
      it = iter(mapped)
      return fn(*[a if axis is None else next(it) for a, axis in zip(args, in_axes)])

    return jax.lax.map(one, [a for a, axis in zip(args, in_axes) if axis is not None])

  return looped


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, *,
                    label_smoothing: float = 0.0,
                    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                    preprocess: Callable[[jax.Array], jax.Array] | None = None,
                    compute_dtype: Any = jnp.float32, ema_decay: float = 0.0,
                    lookahead: lookahead_lib.Lookahead | None = None,
                    num_models: int | None = None, shared_batch: bool = False,
                    mesh: Mesh | None = None) -> BoundStep:
  """Builds ``train_step(state, batch) -> (state, metrics)``, jitted with ``donate_argnums=0``.

  Args:
    model: flax Module called as ``model(x, train=True)``.
    tx: the optax chain (see :mod:`jaxcnn.train.optim`).
    label_smoothing: see :func:`cross_entropy`.
    augment: ``fn(key, images) -> images`` applied to training batches (jaxcnn.data.augment).
    preprocess: the fitted transform (jaxcnn.data.preprocessing), passed to the compiled step as
      an argument; or a plain function (closed over); None casts to float32.
    compute_dtype: dtype of the forward/backward computation (float32 or bfloat16).
    ema_decay: decay of the parameter EMA kept in ``state.ema_params`` (if that is not None).
    lookahead: take its lookahead steps (:func:`jaxcnn.train.lookahead.step`, the slow weights
      in ``state.slow``) after the updates it names; None: none.
    num_models: the state and the batch carry a leading model axis of this size (None: no model
      axis).
    shared_batch: with ``num_models``, the batch has no model axis: every model trains on it.
    mesh: shard the batch over its ``"data"`` axis and replicate the state; None leaves placement
      to JAX (one device).

  ``batch`` is ``{"image": (B, H, W, C), "label": (B,)}`` (other keys are ignored); ``metrics``
  holds the batch's mean ``loss`` (the training objective), ``accuracy`` and the gradient's
  global norm ``grad_norm``, each of shape ``()`` or ``(num_models,)``.
  """
  compute_dtype = jnp.dtype(compute_dtype)
  transform, fixed = _split_preprocess(preprocess)

  def train_step(state: TrainState, batch: Batch,
                 transform: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    aug_key, dropout_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
    images = batch["image"]
    if augment is not None:
      images = augment(aug_key, images)
    x = _prepare(images, transform if fixed is None else fixed).astype(compute_dtype)
    labels = batch["label"]

    def loss_fn(params):
      variables = {"params": _cast_floats(params, compute_dtype), "batch_stats": state.batch_stats}
      logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
                                    rngs={"dropout": dropout_key})
      logits = logits.astype(jnp.float32)
      loss = cross_entropy(logits, labels, label_smoothing=label_smoothing).mean()
      return loss, (logits, updates.get("batch_stats", {}))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = state.ema_params
    if ema_params is not None:
      ema_params = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p,
                                ema_params, params)
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=_cast_floats(batch_stats, jnp.float32),
                              opt_state=opt_state, ema_params=ema_params)
    if lookahead is not None:
      new_state = lookahead_lib.step(lookahead, new_state)
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
               "grad_norm": optax.global_norm(grads)}
    return new_state, metrics

  fn = over_models(train_step, num_models, in_axes=(0, None if shared_batch else 0, None))
  if mesh is None:
    return BoundStep(jit(fn, donate_argnums=0), transform)
  rep = replicated(mesh)
  data = batch_sharding(mesh, model_axis=num_models is not None and not shared_batch)
  return BoundStep(jit(fn, in_shardings=(rep, data, rep), out_shardings=(rep, rep),
                       donate_argnums=0), transform)


def make_eval_step(model: nn.Module, *, preprocess: Callable[[jax.Array], jax.Array] | None = None,
                   compute_dtype: Any = jnp.float32, num_models: int | None = None,
                   mesh: Mesh | None = None) -> BoundStep:
  """Builds jitted ``eval_step(state, batch) -> sums`` for one (padded) evaluation batch.

  Uses ``state.ema_params`` when present, the running BatchNorm statistics, and no augmentation.
  ``batch`` may hold a ``"mask"`` (1 for real examples, 0 for padding). Returns the sums over real
  examples: ``loss`` (plain cross-entropy), ``correct`` and ``count``; with ``num_models`` the
  batch is shared and each sum has shape ``(num_models,)``. ``preprocess`` is handled as in
  :func:`make_train_step`.
  """
  compute_dtype = jnp.dtype(compute_dtype)
  transform, fixed = _split_preprocess(preprocess)

  def eval_step(state: TrainState, batch: Batch, transform: Any) -> dict[str, jax.Array]:
    params = state.params if state.ema_params is None else state.ema_params
    variables = {"params": _cast_floats(params, compute_dtype), "batch_stats": state.batch_stats}
    x = _prepare(batch["image"], transform if fixed is None else fixed).astype(compute_dtype)
    logits = model.apply(variables, x, train=False).astype(jnp.float32)
    labels = batch["label"]
    mask = batch.get("mask", jnp.ones(labels.shape, jnp.float32)).astype(jnp.float32)
    return {"loss": jnp.sum(cross_entropy(logits, labels) * mask),
            "correct": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
            "count": jnp.sum(mask)}

  fn = over_models(eval_step, num_models, in_axes=(0, None, None))
  if mesh is None:
    return BoundStep(jit(fn), transform)
  rep = replicated(mesh)
  return BoundStep(jit(fn, in_shardings=(rep, batch_sharding(mesh), rep), out_shardings=rep),
                   transform)
