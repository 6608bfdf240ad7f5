"""Tests for jaxcnn.data.splits: cover, sizes, determinism, stratification, k-fold, errors."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxcnn.data.splits import default_holdout_size, kfold, train_val_test_split

DIGIT_LABELS = load_digits().target  # 1,797 real labels, about 180 per class
IMBALANCED = np.repeat([0, 1, 2, 3], [500, 120, 31, 3])


def assert_partition(parts, n):
  joined = np.concatenate(parts)
  assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))
  assert all(np.array_equal(p, np.sort(p)) for p in parts)


@pytest.mark.parametrize("n, size", [(0, 0), (9, 0), (10, 1), (99, 9), (1797, 179), (60_000, 6000),
                                     (100_000, 10_000), (200_000, 10_000)])
def test_default_holdout_size_is_ten_percent_capped_at_ten_thousand(n, size):
  assert default_holdout_size(n) == size


@pytest.mark.parametrize("n, val, test, sizes", [
    (1797, None, None, (1439, 179, 179)),
    (60_000, None, None, (48_000, 6000, 6000)),
    (1000, 0.2, 0.1, (700, 200, 100)),
    (1000, 0, 0.25, (750, 0, 250)),
    (100, 0.29, 7, (64, 29, 7)),
    (5, None, None, (5, 0, 0)),
])
def test_split_sizes_and_cover(n, val, test, sizes):
  split = train_val_test_split(n, val=val, test=test, seed=3)
  assert tuple(len(p) for p in split) == sizes
  assert_partition(split, n)


def test_split_is_deterministic_for_a_seed():
  a, b, c = (train_val_test_split(1000, seed=s) for s in (1, 1, 2))
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not np.array_equal(a.val, c.val)
  assert not np.array_equal(a.val, np.arange(a.val[0], a.val[0] + len(a.val)))  # shuffled


@pytest.mark.parametrize("labels", [DIGIT_LABELS, IMBALANCED], ids=["digits", "imbalanced"])
@pytest.mark.parametrize("val, test", [(None, None), (0.3, 0.2), (101, 0.05)])
def test_stratified_split_keeps_class_proportions(labels, val, test):
  n = len(labels)
  split = train_val_test_split(n, val=val, test=test, seed=0, labels=labels)
  assert_partition(split, n)
  class_sizes = np.bincount(labels)
  for part in split:
    share = class_sizes * len(part) / n
    assert np.all(np.abs(np.bincount(labels[part], minlength=len(class_sizes)) - share) <= 1)
  unstratified = train_val_test_split(n, val=val, test=test, seed=0)
  assert tuple(map(len, unstratified)) == tuple(map(len, split))


@pytest.mark.parametrize("n, k", [(10, 2), (1797, 5), (101, 10), (7, 7)])
def test_kfold_partitions_into_near_equal_folds(n, k):
  folds = kfold(n, k, seed=1)
  assert len(folds) == k
  assert_partition([val for _, val in folds], n)
  for train, val in folds:
    assert_partition([train, val], n)
  sizes = [len(val) for _, val in folds]
  assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("labels", [DIGIT_LABELS, IMBALANCED], ids=["digits", "imbalanced"])
def test_stratified_kfold_spreads_every_class_evenly(labels):
  folds = kfold(len(labels), 5, seed=0, labels=labels)
  assert_partition([val for _, val in folds], len(labels))
  counts = np.array([np.bincount(labels[val], minlength=labels.max() + 1) for _, val in folds])
  assert np.all(counts.max(0) - counts.min(0) <= 1)
  sizes = counts.sum(1)
  assert sizes.max() - sizes.min() <= 1


def test_kfold_is_deterministic_for_a_seed():
  a, b, c = (kfold(100, 4, seed=s) for s in (0, 0, 1))
  assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
  assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c))


@pytest.mark.parametrize("kwargs, match", [
    (dict(val=0.5, test=0.5), "leaving none"),
    (dict(val=0.7, test=0.4), "leaving none"),
    (dict(val=60, test=40), "leaving none"),
    (dict(val=1.0), "fraction"),
    (dict(test=-1), "count >= 0"),
    (dict(val="10"), "count >= 0"),
    (dict(labels=np.zeros(99)), r"shape \(100,\)"),
])
def test_split_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    train_val_test_split(100, **kwargs)


@pytest.mark.parametrize("k", [0, 1, 11])
def test_kfold_errors(k):
  with pytest.raises(ValueError, match="2 <= k <= num_examples=10"):
    kfold(10, k)
