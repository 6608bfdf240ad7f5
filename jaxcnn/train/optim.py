"""Optimizers and learning-rate schedules from a config, as optax chains.

``make_optimizer(config.optimizer, learning_rate, schedule=multiplier)`` builds

  clip_by_global_norm (if grad_clip_norm > 0) -> optimizer with weight decay -> learning rate

inside ``optax.inject_hyperparams``, so the learning rate and the weight decay are arrays in the
optimizer state (a vmapped sweep gives each model its own, see :func:`set_hyperparams`). Weight
decay applies only to parameters of rank >= 2 (conv and dense kernels): biases,
normalization scales and offsets, and per-channel activation parameters are not decayed
(:func:`decay_mask`), unless ``decay_biases`` is set (airbench94 decays every parameter). For SGD
and Adam the decay is the classic L2 term added to the gradient before momentum; for AdamW it
is decoupled (added after the Adam scaling). Weight decay lives here, never in the loss.

Schedules are given in epochs and turned into steps with ``steps_per_epoch``:

* ``"constant"``: the base learning rate.
* ``"cosine"``: ``lr * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1 between the end of the
  warmup and the last step (Loshchilov & Hutter 2017, "SGDR").
* ``"step"``: ``lr * decay_factor ** (number of decay_epochs passed)`` (He et al. 2016).
* ``"linear"``: linearly from ``lr`` at the end of the warmup to ``end_learning_rate`` at the
  last step (with a warmup, the triangle of airbench94 and of the one-cycle policy; Smith 2018).

Each may start with a linear warmup from ``warmup_start * lr`` (default 0) over
``warmup_epochs`` (Goyal et al. 2017, "Accurate, Large Minibatch SGD").
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "linear")


def decay_mask(params: Any) -> Any:
  """True for parameters that get weight decay: those of rank >= 2 (kernels), not biases/scales."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_schedule(config: Mapping[str, Any], *, learning_rate: float, steps_per_epoch: int,
                  num_epochs: int) -> optax.Schedule:
  """Learning rate as a function of the step, from ``config`` (see the module docstring).

  Args:
    config: ``name`` (constant, cosine, step, linear), ``warmup_epochs``, ``warmup_start``
      (the warmup's first rate as a fraction of ``learning_rate``), ``decay_epochs`` and
      ``decay_factor`` (step), ``end_learning_rate`` (cosine, linear).
    learning_rate: the peak (base) learning rate.
    steps_per_epoch: optimizer steps per epoch.
    num_epochs: length of the run, the end of the cosine.
  """
  name = config["name"]
  warmup = int(round(config.get("warmup_epochs", 0) * steps_per_epoch))
  total = num_epochs * steps_per_epoch
  start = config.get("warmup_start", 0.0) * learning_rate
  end = config.get("end_learning_rate", 0.0)
  if name in ("cosine", "linear") and warmup >= total:
    raise ValueError(f"warmup_epochs={config.get('warmup_epochs')} must be shorter than the run "
                     f"({num_epochs} epochs).")
  if name == "cosine":
    return optax.warmup_cosine_decay_schedule(start, learning_rate, warmup, total, end_value=end)
  if name == "linear":
    main = optax.linear_schedule(learning_rate, end, total - warmup)
  elif name == "constant":
    main = optax.constant_schedule(learning_rate)
  elif name == "step":
    boundaries = [int(round(e * steps_per_epoch)) - warmup for e in config.get("decay_epochs", ())]
    if any(b <= 0 for b in boundaries):
      raise ValueError(f"decay_epochs {tuple(config.get('decay_epochs', ()))} must come after the "
                       f"warmup ({config.get('warmup_epochs')} epochs).")
    factor = config.get("decay_factor", 0.1)
    scales: dict[int, float] = {}
    for b in boundaries:  # equal boundaries compound
      scales[b] = scales.get(b, 1.0) * factor
    main = optax.piecewise_constant_schedule(learning_rate, scales)
  else:
    raise ValueError(f"Unknown schedule {name!r}. Known schedules: {', '.join(SCHEDULES)}.")
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(start, learning_rate, warmup), main],
                              [warmup])


def make_optimizer(config: Mapping[str, Any], learning_rate: float, *,
                   schedule: optax.Schedule | None = None,
                   trainable: Any = None) -> optax.GradientTransformation:
  """The optax chain for ``config``: ``name`` (sgd, adam, adamw), ``momentum``, ``nesterov``,
  ``b1``, ``b2``, ``eps``, ``weight_decay``, ``decay_biases`` (default False: only kernels are
  decayed, :func:`decay_mask`), ``grad_clip_norm`` (0 = no clipping).

  The learning rate of step ``t`` is ``learning_rate * schedule(t)``: ``schedule`` is the
  multiplier, e.g. ``make_schedule(config.schedule, learning_rate=1.0, ...)`` (None: constant).
  ``learning_rate`` and ``weight_decay`` are hyperparameters held in the optimizer state
  (``optax.inject_hyperparams``: ``opt_state.hyperparams``), so each model of a stack trained
  under ``jax.vmap`` can carry its own values (:func:`set_hyperparams`). ``trainable`` (module
  names or a predicate, see :func:`freeze_labels`) freezes every other parameter, inside the
  injected hyperparameters, so ``opt_state.hyperparams`` stays where it is.

  References: Sutskever et al. 2013 (momentum, Nesterov); Kingma & Ba 2015, "Adam"; Loshchilov &
  Hutter 2019, "Decoupled Weight Decay Regularization" (AdamW); Pascanu et al. 2013 (clipping).
  """
  name = config["name"]
  if name not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {name!r}. Known optimizers: {', '.join(OPTIMIZERS)}.")
  if callable(learning_rate):
    raise TypeError("learning_rate must be a number (the peak rate); pass the schedule's shape "
                    "as schedule=make_schedule(..., learning_rate=1.0, ...).")
  clip = config.get("grad_clip_norm", 0.0)
  momentum = config.get("momentum", 0.0)
  b1, b2, eps = config.get("b1", 0.9), config.get("b2", 0.999), config.get("eps", 1e-8)
  mask = None if config.get("decay_biases", False) else decay_mask

  def chain(learning_rate, weight_decay):
    rate = learning_rate if schedule is None else (lambda count: learning_rate * schedule(count))
    parts = [optax.clip_by_global_norm(clip)] if clip else []
    if name in ("sgd", "adam"):  # L2 term added to the gradient (times 0 when weight_decay is 0)
      parts.append(optax.add_decayed_weights(weight_decay, mask=mask))
    if name == "sgd":
      parts.append(optax.sgd(rate, momentum=momentum or None,
                             nesterov=bool(config.get("nesterov", False))))
    elif name == "adam":
      parts.append(optax.adam(rate, b1=b1, b2=b2, eps=eps))
    else:
      parts.append(optax.adamw(rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                               mask=mask))
    tx = optax.chain(*parts)
    return tx if trainable is None else freeze(tx, trainable)

  return optax.inject_hyperparams(chain)(learning_rate=float(learning_rate),
                                         weight_decay=float(config.get("weight_decay", 0.0)))


def set_hyperparams(opt_state: Any, **values: Any) -> Any:
  """``opt_state`` of :func:`make_optimizer` with hyperparameters replaced (e.g. a ``(M,)`` array
  of learning rates for a stack of ``M`` models); unknown names raise a ValueError."""
  hyperparams = dict(opt_state.hyperparams)
  for key, value in values.items():
    if key not in hyperparams:
      raise ValueError(f"Unknown hyperparameter {key!r}; the optimizer state holds "
                       f"{sorted(hyperparams)}.")
    old = hyperparams[key]
    value = jnp.asarray(value, old.dtype)
    if value.shape != old.shape:
      raise ValueError(f"Hyperparameter {key!r} needs shape {old.shape}, got {value.shape}.")
    hyperparams[key] = value
  return opt_state._replace(hyperparams=hyperparams)


def freeze_labels(params: Any, trainable: Any) -> Any:
  """``"trainable"``/``"frozen"`` for every leaf of ``params``, the labels of :func:`freeze`.

  Args:
    params: a parameter pytree (nested dicts, as flax makes them).
    trainable: module path prefixes that stay trainable, e.g. ``("head",)`` or
      ``["stage4_block2", "head"]`` (``"a/b"`` names a nested module), as given by
      :func:`jaxcnn.models.pretrained.head_names`; or a predicate on a leaf's path (a tuple of
      names, ``("head", "kernel")``) returning True for trainable leaves.
  """
  if callable(trainable):
    keep = trainable
  else:
    if isinstance(trainable, str):
      trainable = (trainable,)
    prefixes = [tuple(p.split("/")) for p in trainable]
    if not prefixes:
      raise ValueError("freeze needs at least one trainable module (e.g. ('head',)), or a "
                       "predicate on the leaf path.")
    keep = lambda path: any(path[:len(p)] == p for p in prefixes)  # noqa: E731

  def label(key_path, _):
    path = tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                 for k in key_path)
    return "trainable" if keep(path) else "frozen"

  labels = jax.tree_util.tree_map_with_path(label, params)
  if not callable(trainable) and "trainable" not in jax.tree.leaves(labels):
    top = sorted(params) if isinstance(params, Mapping) else []
    raise ValueError(f"No parameter matches the trainable modules {list(trainable)}; the top "
                     f"level holds {top}.")
  return labels


def freeze(optimizer: optax.GradientTransformation, trainable: Any, *,
           from_step: int = 0) -> optax.GradientTransformation:
  """``optimizer`` on the ``trainable`` parameters only; the others get zero updates.

  ``optax.multi_transform({"trainable": optimizer, "frozen": optax.set_to_zero()}, labels)`` with
  the labels of :func:`freeze_labels` (computed from the parameters at ``init``), so frozen
  parameters carry no optimizer state and get neither gradient steps nor weight decay. The
  fine-tuning recipe: convert pretrained weights, ``replace_head``, then
  ``freeze(make_optimizer(...), head_names(model))``.
  The optimizer state is then an ``optax.MultiTransformState``: its hyperparameters are in
  ``state.inner_states["trainable"].inner_state.hyperparams``.

  ``from_step > 0`` freezes them later: every parameter trains with ``optimizer`` for the first
  ``from_step`` updates, then the frozen ones get zero updates (airbench94 trains its whitening
  bias for 3 epochs). The state is then ``(optimizer's state, count)``.
  """
  if from_step < 0:
    raise ValueError(f"from_step must be >= 0, got {from_step}.")
  if from_step == 0:
    return optax.multi_transform({"trainable": optimizer, "frozen": optax.set_to_zero()},
                                 lambda params: freeze_labels(params, trainable))

  def init(params: Any) -> optax.ScaleByScheduleState:
    freeze_labels(params, trainable)  # a name that matches nothing fails here, not in the step
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates: Any, state: optax.ScaleByScheduleState, params: Any = None) -> Any:
    del params
    moving = state.count < from_step
    updates = jax.tree.map(
        lambda u, label: u if label == "trainable" else jnp.where(moving, u, jnp.zeros_like(u)),
        updates, freeze_labels(updates, trainable))
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.chain(optimizer, optax.GradientTransformation(init, update))
