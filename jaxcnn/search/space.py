"""A search space: an ordered mapping of named categorical choices.

An architecture is an int32 vector of option indices, one per choice, in the space's order.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class Space:
  """Ordered named categorical choices.

  Args:
    choices: ordered mapping ``choice name -> sequence of options``; each choice needs at least
      one option and its options must be distinct.

  Example:
    >>> space = Space({"op": ("conv_1x1", "conv_3x3"), "width": (16, 32, 64)})
    >>> space.decode(space.encode({"op": "conv_3x3", "width": 32}))
    {'op': 'conv_3x3', 'width': 32}
  """

  def __init__(self, choices: Mapping[str, Sequence[Any]]):
    if not isinstance(choices, Mapping):
      raise TypeError(f"Space needs a mapping choice name -> options, got {type(choices).__name__}.")
    if not choices:
      raise ValueError("A Space needs at least one choice.")
    self._choices: dict[str, tuple[Any, ...]] = {}
    for name, options in choices.items():
      if not isinstance(name, str):
        raise TypeError(f"Choice names must be strings, got {name!r}.")
      if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
        raise TypeError(f"Options of choice {name!r} must be a sequence (tuple or list), got {options!r}.")
      options = tuple(options)
      if not options:
        raise ValueError(f"Choice {name!r} has no options.")
      for i, o in enumerate(options):
        if o in options[:i]:
          raise ValueError(f"Choice {name!r} lists option {o!r} twice.")
      self._choices[name] = options

  @property
  def names(self) -> tuple[str, ...]:
    """Choice names, in order."""
    return tuple(self._choices)

  @property
  def choices(self) -> dict[str, tuple[Any, ...]]:
    """A copy of the mapping choice name -> options."""
    return dict(self._choices)

  def options(self, name: str) -> tuple[Any, ...]:
    """The options of one choice."""
    self._check_name(name)
    return self._choices[name]

  @property
  def num_options(self) -> jax.Array:
    """int32 [len(space)]: number of options of each choice."""
    return jnp.asarray([len(o) for o in self._choices.values()], dtype=jnp.int32)

  @property
  def size(self) -> int:
    """Number of architectures in the space (a Python int, exact)."""
    return math.prod(len(o) for o in self._choices.values())

  def __len__(self) -> int:
    return len(self._choices)

  def __repr__(self) -> str:
    inner = ", ".join(f"{k!r}: {v!r}" for k, v in self._choices.items())
    return f"Space({{{inner}}})"

  def __eq__(self, other) -> bool:
    return isinstance(other, Space) and list(self._choices.items()) == list(other._choices.items())

  def __hash__(self) -> int:
    return hash(tuple((k, v) for k, v in self._choices.items()))

  def _check_name(self, name: str) -> None:
    if name not in self._choices:
      raise ValueError(f"Unknown choice {name!r}. Known choices: {', '.join(self._choices)}.")

  def validate(self, archs) -> np.ndarray:
    """Checks ``archs`` (int [len] or [n, len]) lies in the space; returns it as int32 numpy."""
    a = np.asarray(archs)
    if a.ndim not in (1, 2) or a.shape[-1] != len(self):
      raise ValueError(f"An architecture has shape [{len(self)}] (or [n, {len(self)}]), got {a.shape}.")
    if not np.issubdtype(a.dtype, np.integer):
      raise ValueError(f"Architectures are integer option indices, got dtype {a.dtype}.")
    n = np.asarray(self.num_options)
    bad = (a < 0) | (a >= n)
    if bad.any():
      idx = np.argwhere(bad)[0]
      j = int(idx[-1])
      raise ValueError(
          f"Option index {int(a[tuple(idx)])} of choice {self.names[j]!r} is out of range "
          f"[0, {int(n[j])}).")
    return a.astype(np.int32)

  def decode(self, arch) -> dict[str, Any]:
    """int [len(space)] option indices -> ``{choice name: option}``."""
    a = self.validate(arch)
    if a.ndim != 1:
      raise ValueError(f"decode takes one architecture of shape [{len(self)}], got {a.shape}.")
    return {name: opts[int(i)] for (name, opts), i in zip(self._choices.items(), a)}

  def encode(self, arch: Mapping[str, Any]) -> jax.Array:
    """``{choice name: option}`` (every choice, nothing else) -> int32 [len(space)]."""
    unknown = [k for k in arch if k not in self._choices]
    if unknown:
      raise ValueError(f"Unknown choice {unknown[0]!r}. Known choices: {', '.join(self._choices)}.")
    out = []
    for name, opts in self._choices.items():
      if name not in arch:
        raise ValueError(f"Missing choice {name!r}.")
      try:
        out.append(opts.index(arch[name]))
      except ValueError:
        raise ValueError(
            f"Option {arch[name]!r} is not one of choice {name!r}'s options: {opts!r}.") from None
    return jnp.asarray(out, dtype=jnp.int32)

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """``n`` architectures drawn uniformly: int32 [n, len(space)]."""
    return uniform(key, self.num_options, n)


def uniform(key: jax.Array, num_options: jax.Array, n: int) -> jax.Array:
  """int32 [n, len(num_options)] with column ``j`` uniform in ``[0, num_options[j])``."""
  u = jax.random.uniform(key, (n, num_options.shape[0]))
  return jnp.minimum((u * num_options).astype(jnp.int32), num_options - 1)
