"""Deterministic train/validation/test splits and k-fold cross-validation, optionally stratified.

All functions return sorted int64 index arrays and depend only on their arguments: the same
``seed`` gives the same split on every machine (``numpy.random.Generator``). With ``labels``,
every class is spread over the parts in proportion to its size (within one example per class).
"""

from __future__ import annotations

import numbers
import operator
from typing import Any, NamedTuple

import numpy as np


class Split(NamedTuple):
  """Disjoint, sorted index arrays that together cover ``range(num_examples)``."""

  train: np.ndarray
  val: np.ndarray
  test: np.ndarray


def default_holdout_size(num_examples: int) -> int:
  """10,000 examples or 10% of them, whichever is less (rounded down: 0 below 10 examples)."""
  if num_examples < 0:
    raise ValueError(f"num_examples must be >= 0, got {num_examples}.")
  return min(10_000, num_examples // 10)


def train_val_test_split(num_examples: int, *, val: int | float | None = None,
                         test: int | float | None = None, seed: Any = 0,
                         labels: Any = None) -> Split:
  """Splits ``range(num_examples)`` at random into train, validation and test indices.

  Args:
    num_examples: size of the data set.
    val, test: size of each held-out part: an int count, a float fraction in ``[0, 1)`` (rounded
      to the nearest count), or None for :func:`default_holdout_size`; 0 leaves the part empty.
    seed: seed (or ``numpy.random.Generator``) of the shuffle.
    labels: optional ``(num_examples,)`` class labels; if given, the split is stratified.
  """
  n = _num_examples(num_examples)
  sizes = [_holdout_size(part, name, n) for part, name in ((val, "val"), (test, "test"))]
  if sum(sizes) >= n or sum(p for p in (val, test) if _is_fraction(p)) >= 1:
    raise ValueError(f"val={val!r} and test={test!r} hold out {sum(sizes)} of {n} examples, "
                     f"leaving none for training.")
  y, class_sizes = _classes(labels, n)
  val_sizes = _apportion(sizes[0], class_sizes, class_sizes)
  test_sizes = _apportion(sizes[1], class_sizes, class_sizes - val_sizes)
  order = _grouped_permutation(y, np.random.default_rng(seed))
  y_sorted = y[order]
  rank = np.arange(n) - (np.cumsum(class_sizes) - class_sizes)[y_sorted]  # position within class
  part = np.where(rank < val_sizes[y_sorted], 1,
                  np.where(rank < (val_sizes + test_sizes)[y_sorted], 2, 0))
  return Split(*(np.sort(order[part == i]) for i in range(3)))


def kfold(num_examples: int, k: int, *, seed: Any = 0,
          labels: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
  """``k`` (train, val) index pairs; every example is in exactly one val fold.

  Fold sizes differ by at most one; with ``labels``, so do each class's counts across folds.
  """
  n = _num_examples(num_examples)
  if not 2 <= operator.index(k) <= n:
    raise ValueError(f"kfold needs 2 <= k <= num_examples={n}, got k={k}.")
  y, _ = _classes(labels, n)
  fold = np.empty(n, np.int64)
  fold[_grouped_permutation(y, np.random.default_rng(seed))] = np.arange(n) % k
  return [(np.flatnonzero(fold != i), np.flatnonzero(fold == i)) for i in range(k)]


def _num_examples(num_examples: int) -> int:
  n = operator.index(num_examples)
  if n < 1:
    raise ValueError(f"num_examples must be >= 1, got {n}.")
  return n


def _holdout_size(part: int | float | None, name: str, n: int) -> int:
  if part is None:
    return default_holdout_size(n)
  if isinstance(part, numbers.Integral) and not isinstance(part, bool) and part >= 0:
    return int(part)
  if _is_fraction(part) and 0 <= part < 1:
    return round(part * n)
  raise ValueError(f"{name} must be a count >= 0, a fraction in [0, 1) or None, got {part!r}.")


def _is_fraction(part: Any) -> bool:
  return isinstance(part, numbers.Real) and not isinstance(part, numbers.Integral)


def _classes(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Class index of every example (all 0 without labels) and the class sizes."""
  if labels is None:
    return np.zeros(n, np.int64), np.array([n])
  labels = np.asarray(labels)
  if labels.shape != (n,):
    raise ValueError(f"labels must have shape ({n},), got {labels.shape}.")
  _, y = np.unique(labels, return_inverse=True)
  return y, np.bincount(y)


def _grouped_permutation(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A random permutation with the examples grouped by class (classes in order)."""
  order = rng.permutation(len(y))
  return order[np.argsort(y[order], kind="stable")]


def _apportion(total: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
  """Splits ``total`` in proportion to ``weights`` (largest remainder method), within ``capacity``.

  Each count is the floor or ceiling of its exact share unless capacity forbids it.
  """
  numerator, denominator = weights * total, weights.sum()
  counts = np.minimum(numerator // denominator, capacity)
  order = np.argsort(-(numerator % denominator), kind="stable")
  while (short := total - counts.sum()) > 0:
    counts[order[counts[order] < capacity[order]][:short]] += 1
  return counts
