"""Optimizers and learning-rate schedules from a config, as optax chains.

``make_optimizer(config.optimizer, schedule)`` builds

  clip_by_global_norm (if grad_clip_norm > 0) -> optimizer with weight decay -> learning rate

where weight decay applies only to parameters of rank >= 2 (conv and dense kernels): biases,
normalization scales and offsets, and per-channel activation parameters are not decayed
(:func:`decay_mask`). For SGD and Adam the decay is the classic L2 term added to the gradient
before momentum; for AdamW it is decoupled (added after the Adam scaling). Weight decay lives here,
never in the loss.

Schedules are given in epochs and turned into steps with ``steps_per_epoch``:

* ``"constant"``: the base learning rate.
* ``"cosine"``: ``lr * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1 between the end of the
  warmup and the last step (Loshchilov & Hutter 2017, "SGDR").
* ``"step"``: ``lr * decay_factor ** (number of decay_epochs passed)`` (He et al. 2016).

Each may start with a linear warmup from 0 over ``warmup_epochs`` (Goyal et al. 2017,
"Accurate, Large Minibatch SGD").
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


def decay_mask(params: Any) -> Any:
  """True for parameters that get weight decay: those of rank >= 2 (kernels), not biases/scales."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_schedule(config: Mapping[str, Any], *, learning_rate: float, steps_per_epoch: int,
                  num_epochs: int) -> optax.Schedule:
  """Learning rate as a function of the step, from ``config`` (see the module docstring).

  Args:
    config: ``name`` (constant, cosine, step), ``warmup_epochs``, ``decay_epochs`` and
      ``decay_factor`` (step), ``end_learning_rate`` (cosine).
    learning_rate: the peak (base) learning rate.
    steps_per_epoch: optimizer steps per epoch.
    num_epochs: length of the run, the end of the cosine.
  """
  name = config["name"]
  warmup = int(round(config.get("warmup_epochs", 0) * steps_per_epoch))
  total = num_epochs * steps_per_epoch
  if name == "cosine":
    if warmup >= total:
      raise ValueError(f"warmup_epochs={config.get('warmup_epochs')} must be shorter than the run "
                       f"({num_epochs} epochs).")
    return optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup, total, end_value=config.get("end_learning_rate", 0.0))
  if name == "constant":
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
  return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup), main], [warmup])


def make_optimizer(config: Mapping[str, Any],
                   schedule: optax.Schedule | float) -> optax.GradientTransformation:
  """The optax chain for ``config``: ``name`` (sgd, adam, adamw), ``momentum``, ``nesterov``,
  ``b1``, ``b2``, ``eps``, ``weight_decay``, ``grad_clip_norm`` (0 = no clipping).

  References: Sutskever et al. 2013 (momentum, Nesterov); Kingma & Ba 2015, "Adam"; Loshchilov &
  Hutter 2019, "Decoupled Weight Decay Regularization" (AdamW); Pascanu et al. 2013 (clipping).
  """
  name = config["name"]
  weight_decay = config.get("weight_decay", 0.0)
  chain = []
  if config.get("grad_clip_norm", 0.0):
    chain.append(optax.clip_by_global_norm(config["grad_clip_norm"]))
  if name in ("sgd", "adam") and weight_decay:
    chain.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
  if name == "sgd":
    momentum = config.get("momentum", 0.0)
    chain.append(optax.sgd(schedule, momentum=momentum or None,
                           nesterov=bool(config.get("nesterov", False))))
  elif name == "adam":
    chain.append(optax.adam(schedule, b1=config.get("b1", 0.9), b2=config.get("b2", 0.999),
                            eps=config.get("eps", 1e-8)))
  elif name == "adamw":
    chain.append(optax.adamw(schedule, b1=config.get("b1", 0.9), b2=config.get("b2", 0.999),
                             eps=config.get("eps", 1e-8), weight_decay=weight_decay,
                             mask=decay_mask))
  else:
    raise ValueError(f"Unknown optimizer {name!r}. Known optimizers: {', '.join(OPTIMIZERS)}.")
  return optax.chain(*chain)
