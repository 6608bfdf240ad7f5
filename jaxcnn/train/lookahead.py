"""Lookahead-style weight averaging, as airbench94 trains with it.

Every few steps the slow weights move toward the fast (trained) ones and the fast weights restart
from them::

  slow <- decay * slow + (1 - decay) * fast;   fast <- slow

This is the Lookahead optimizer's "k steps forward, 1 step back" (Zhang et al. 2019) with
airbench94's decay, which grows over training (:func:`decay_schedule`): almost no averaging early,
strong averaging at the end (Jordan 2024). It covers the parameters and the float leaves of
``batch_stats`` (BatchNorm's running statistics), as airbench94 averages the whole ``state_dict``;
the optimizer state (momentum) is left alone. Every array may carry a leading model axis (a
:class:`jaxcnn.train.population.Population`): the update is elementwise.

  slow = lookahead.init(state)
  for step in range(1, total + 1):
    state = train_step(state, batch)
    if step % 5 == 0 or step == total:  # the last step too: training ends on the slow weights
      state, slow = lookahead.update(state, slow, decay(step))

(airbench94 instead copies the slow weights back after its last step, ``decay = 1``, dropping
the steps since the last update: 1 of its 476.)

References: Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back";
Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (airbench94).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxcnn.train.state import TrainState


def _averaged(state: TrainState) -> dict[str, Any]:
  return {"params": state.params, "batch_stats": state.batch_stats}


def init(state: TrainState) -> dict[str, Any]:
  """The slow weights: a copy of ``state``'s ``params`` and ``batch_stats``."""
  return jax.tree.map(jnp.copy, _averaged(state))


@functools.partial(jax.jit, donate_argnums=(0, 1))
def update(state: TrainState, slow: dict[str, Any], decay: Any) -> tuple[TrainState, Any]:
  """``slow <- decay * slow + (1 - decay) * fast`` on the float leaves, then ``fast <- slow``.

  ``decay`` is a scalar (the same for every model of a population); 1 only copies the slow
  weights back, 0 takes the fast ones. Leaves that are not floats (a flag, a counter) keep the
  fast value in both. ``state`` and ``slow`` are donated: use the returned ones.
  """
  decay = jnp.asarray(decay, jnp.float32)

  def mix(s: jax.Array, f: jax.Array) -> jax.Array:
    if not jnp.issubdtype(f.dtype, jnp.floating):
      return f
    return (decay * s + (1 - decay) * f).astype(f.dtype)

  # Returned twice, the slow weights come back as two sets of buffers (jit does not alias outputs).
  slow = jax.tree.map(mix, slow, _averaged(state))
  return state.replace(params=slow["params"], batch_stats=slow["batch_stats"]), slow


def decay_schedule(total_steps: int, *, base: float = 0.95, every: int = 5,
                   power: float = 3.0) -> Callable[[int], float]:
  """airbench94's decay at step ``t`` of ``total_steps``: ``base ** every * (t / total) ** power``
  (``every``: the steps between updates, so ``base`` is a per-step rate)."""
  if total_steps < 1:
    raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
  if every < 1:
    raise ValueError(f"every must be >= 1, got {every}.")
  return lambda step: float(base ** every * (min(step, total_steps) / total_steps) ** power)
