"""Lookahead-style weight averaging, as airbench94 trains with it.

Every few steps the slow weights move toward the fast (trained) ones and the fast weights restart
from them::

  slow <- decay * slow + (1 - decay) * fast;   fast <- slow

This is the Lookahead optimizer's "k steps forward, 1 step back" (Zhang et al. 2019) with
airbench94's decay, which grows over training (:meth:`Lookahead.decay`): almost no averaging
early, strong averaging at the end (Jordan 2024). It covers the parameters and the float leaves of
``batch_stats`` (BatchNorm's running statistics), as airbench94 averages the whole ``state_dict``;
the optimizer state (momentum) is left alone. Every array may carry a leading model axis (a
:class:`jaxcnn.train.population.Population`): the update is elementwise.

The train step takes the lookahead step itself (``make_train_step(..., lookahead=Lookahead(T))``,
``Population(..., lookahead=...)``, ``config.lookahead`` of ``jaxcnn train``), with the slow
weights in ``TrainState.slow``, so they are checkpointed and a resumed run equals an
uninterrupted one. It steps after every ``every`` updates and after update ``total_steps``, so
training ends on the averaged weights. airbench94 differs in two details: its lookahead starts in
epoch 3 (ours from the first ``every`` steps, where the decay is at most 0.021 before epoch 3), and
at the end of every epoch, the last included, it copies the slow weights back, dropping the 0-4
steps since the last average.

References: Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back";
Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (airbench94).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxcnn.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class Lookahead:
  """A lookahead step after every ``every`` updates and after update ``total_steps``, with
  airbench94's decay ``base ** every * (t / total_steps) ** power`` at update ``t`` (``base`` is a
  per-step rate)."""

  total_steps: int
  every: int = 5
  base: float = 0.95
  power: float = 3.0

  def __post_init__(self):
    if self.total_steps < 1:
      raise ValueError(f"total_steps must be >= 1, got {self.total_steps}.")
    if self.every < 1:
      raise ValueError(f"every must be >= 1, got {self.every}.")
    if not 0.0 <= self.base <= 1.0 or self.power < 0:
      raise ValueError(f"Need 0 <= base <= 1 and power >= 0, got base={self.base}, "
                       f"power={self.power}.")

  def decay(self, step: Any) -> Any:
    """The decay at update ``step`` (held after ``total_steps``); a number or a traced array."""
    fraction = jnp.minimum(step, self.total_steps) / self.total_steps
    return self.base ** self.every * fraction ** self.power

  def due(self, step: Any) -> Any:
    """Whether a lookahead step follows update ``step``."""
    return (step % self.every == 0) | (step == self.total_steps)


def _averaged(state: TrainState) -> dict[str, Any]:
  return {"params": state.params, "batch_stats": state.batch_stats}


def init(state: TrainState) -> dict[str, Any]:
  """The slow weights: a copy of ``state``'s ``params`` and ``batch_stats``."""
  return jax.tree.map(jnp.copy, _averaged(state))


# Jitted, the averaged weights come back as two sets of buffers (jit does not alias outputs), so a
# train step may donate the state's while the slow weights live on.
@jax.jit
def update(state: TrainState, slow: dict[str, Any], decay: Any) -> tuple[TrainState, Any]:
  """``slow <- decay * slow + (1 - decay) * fast`` on the float leaves, then ``fast <- slow``.

  ``decay`` is a scalar (the same for every model of a population); 1 only copies the slow
  weights back, 0 takes the fast ones. Leaves that are not floats (a flag, a counter) keep the
  fast value in both.
  """
  decay = jnp.asarray(decay, jnp.float32)

  def mix(s: jax.Array, f: jax.Array) -> jax.Array:
    if not jnp.issubdtype(f.dtype, jnp.floating):
      return f
    return (decay * s + (1 - decay) * f).astype(f.dtype)

  slow = jax.tree.map(mix, slow, _averaged(state))
  return state.replace(params=slow["params"], batch_stats=slow["batch_stats"]), slow


def step(lookahead: Lookahead, state: TrainState) -> TrainState:
  """The lookahead step of ``state`` (after its update ``state.step``) if one is due, with the
  slow weights in ``state.slow``; else ``state`` unchanged. For use inside a train step."""
  if state.slow is None:
    raise ValueError("The state has no slow weights (TrainState.slow): initialise it with "
                     "lookahead=True (Population(..., lookahead=...) does).")

  def average(s: TrainState) -> TrainState:
    s, slow = update(s, s.slow, lookahead.decay(s.step))
    return s.replace(slow=slow)

  return jax.lax.cond(lookahead.due(state.step), average, lambda s: s, state)
