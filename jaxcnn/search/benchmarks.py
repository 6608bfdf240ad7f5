"""Synthetic objectives for testing search strategies, and a compiled many-seed simulator.

Any callable ``evaluate(archs int32 [n, L]) -> rewards [n]`` is an evaluator; these are cheap
ones with a known optimum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.search.space import Space


def onemax(space: Space, target=None):
  """Reward = fraction of choices equal to ``target`` (default: option 0 of every choice)."""
  t = jnp.zeros((len(space),), jnp.int32) if target is None else jnp.asarray(target, jnp.int32)
  if target is not None:
    space.validate(np.asarray(t))

  def evaluate(archs):
    return (jnp.asarray(archs) == t).mean(-1).astype(jnp.float32)

  return evaluate


def lookup(table):
  """An evaluator reading ``table[arch]`` from a dense table of shape ``num_options``."""
  table = jnp.asarray(table, jnp.float32)

  def evaluate(archs):
    archs = jnp.asarray(archs, jnp.int32)
    return table[tuple(archs[:, j] for j in range(table.ndim))]

  return evaluate


def planted(space: Space, seed: int = 0, tiebreak: float = 0.01):
  """A table with one planted optimum: reward = matches with a random arch + a fixed tiebreak.

  The tiebreak is a deterministic uniform value in ``[0, tiebreak)`` per architecture
  (``tiebreak < 1`` keeps the planted arch the unique best), so all rewards are distinct.

  Returns:
    ``(table float32 of shape num_options, optimum int32 [L])``.
  """
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  optimum = space.sample(k1, 1)[0]
  shape = tuple(int(n) for n in space.num_options)
  grids = jnp.meshgrid(*[jnp.arange(n) for n in shape], indexing="ij")
  matches = sum((g == optimum[j]).astype(jnp.float32) for j, g in enumerate(grids))
  return matches + tiebreak * jax.random.uniform(k2, shape), optimum


def planted_matches(space: Space, seed: int = 0, tiebreak: float = 0.01):
  """:func:`planted` as a function, for spaces too large for a table (NASNet's, MBConv's).

  The optimum is ``planted(space, seed)``'s; reward = matches with it + ``tiebreak`` times the
  mean of fixed uniform values drawn per (choice, option), so the optimum stays the unique best
  (unlike the table's, two architectures can tie).

  Returns:
    ``(reward: arch int [L] -> float32, optimum int32 [L])``.
  """
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))  # planted's keys: the same optimum
  optimum = np.asarray(space.sample(k1, 1)[0], np.int32)
  n = np.asarray(space.num_options)
  per_option = np.asarray(jax.random.uniform(k2, (len(n), int(n.max()))), np.float64)
  choices = np.arange(len(n))

  def reward(arch):
    arch = np.asarray(arch)
    return np.float32((arch == optimum).sum() + tiebreak * per_option[choices, arch].mean())

  return reward, optimum


def simulate(strategy, space: Space, evaluate, budget: int, keys: jax.Array, batch_size: int = 1):
  """Whole searches compiled as one program, vmapped over ``keys`` [m, ...].

  Uses the key scheme of :func:`jaxcnn.search.run`, so for a pure-JAX ``evaluate`` it returns what
  ``run`` would (``budget`` must be a multiple of ``batch_size``).

  Returns:
    ``(states, archs int32 [m, budget, L], rewards float32 [m, budget])``.
  """
  if budget % batch_size:
    raise ValueError(f"budget={budget} must be a multiple of batch_size={batch_size}.")

  def one(key):
    init_key, loop_key = jax.random.split(key)
    state = strategy.init(init_key, space)

    def body(state, step):
      archs, state = strategy.ask(jax.random.fold_in(loop_key, step), state, batch_size)
      rewards = jnp.asarray(evaluate(archs), jnp.float32).reshape(batch_size)
      return strategy.tell(state, archs, rewards), (archs, rewards)

    state, (archs, rewards) = jax.lax.scan(body, state, jnp.arange(budget // batch_size))
    return state, archs.reshape(budget, -1), rewards.reshape(budget)

  return jax.jit(jax.vmap(one))(keys)
