"""Tests for jaxcnn.data.augment against NumPy references (np.pad windows, mirrors, masks)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.data import augment


def _batch(n=16, h=8, w=10, c=3, dtype=np.uint8, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(1, 256, size=(n, h, w, c))  # no zeros, so padding and cutout are visible
  return x.astype(dtype)


def _windows(image, padding, mode):
  """Every (2p+1)^2 crop of the NumPy-padded image, keyed by offset."""
  h, w, _ = image.shape
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode=mode)
  return {(i, j): padded[i:i + h, j:j + w]
          for i in range(2 * padding + 1) for j in range(2 * padding + 1)}


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_pad_and_crop_matches_numpy_windows(mode, dtype):
  x = _batch(n=5, dtype=dtype)
  offsets = np.array([[0, 0], [3, 3], [6, 0], [2, 5], [6, 6]])
  out = np.asarray(augment.pad_and_crop(jnp.asarray(x), jnp.asarray(offsets), padding=3, mode=mode))
  assert out.dtype == dtype and out.shape == x.shape
  for k, (i, j) in enumerate(offsets):
    np.testing.assert_array_equal(out[k], _windows(x[k], 3, mode)[(i, j)])
  np.testing.assert_array_equal(out[1], x[1])  # offset (p, p) is the identity


def test_pad_and_crop_constant_pads_zeros():
  x = np.ones((1, 4, 4, 1), np.float32)
  out = np.asarray(augment.pad_and_crop(x, jnp.array([[0, 0]]), padding=2))
  expected = np.zeros((4, 4))
  expected[2:, 2:] = 1
  np.testing.assert_array_equal(out[0, ..., 0], expected)


def test_random_crop_is_a_window_per_example_with_varied_offsets():
  x = _batch(n=32)
  out = np.asarray(augment.random_crop(jax.random.key(0), jnp.asarray(x), padding=2))
  assert out.shape == x.shape and out.dtype == np.uint8
  used = set()
  for k in range(len(x)):
    matches = [o for o, win in _windows(x[k], 2, "constant").items() if np.array_equal(win, out[k])]
    assert len(matches) == 1, f"example {k} is not a unique window of the padded image"
    used.add(matches[0])
  assert len(used) > 8  # 25 possible offsets, drawn independently per example


def test_random_crop_without_padding_is_identity():
  x = _batch()
  np.testing.assert_array_equal(augment.random_crop(jax.random.key(1), x, padding=0), x)


def test_random_flip_mirrors_exactly_per_example():
  x = _batch(n=64)
  out = np.asarray(augment.random_flip(jax.random.key(0), jnp.asarray(x)))
  flipped = np.array([np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)])
  kept = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
  assert np.all(flipped ^ kept)
  assert 16 < flipped.sum() < 48  # p = 0.5 over 64 examples
  np.testing.assert_array_equal(augment.random_flip(jax.random.key(0), x, prob=1.0),
                                x[:, :, ::-1])
  np.testing.assert_array_equal(augment.random_flip(jax.random.key(0), x, prob=0.0), x)


@pytest.mark.parametrize("size", [4, 5])
def test_cutout_zeroes_one_clipped_square(size):
  x = _batch(n=32, h=12, w=12)
  out = np.asarray(augment.cutout(jax.random.key(3), jnp.asarray(x), size=size))
  assert out.shape == x.shape and out.dtype == x.dtype
  for o, xi in zip(out, x):
    zero = np.all(o == 0, axis=-1)
    np.testing.assert_array_equal(o[~zero], xi[~zero])  # the rest is untouched
    rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
    assert zero.sum() == len(rows) * len(cols)  # a rectangle
    assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
    # The center lies in the image, so at least size - size // 2 rows/columns remain.
    assert size - size // 2 <= len(rows) <= size and size - size // 2 <= len(cols) <= size


def test_make_augment_composes_in_order_and_is_deterministic_under_jit():
  x = jnp.asarray(_batch(n=8))
  fn = augment.make_augment(["crop(padding=4)", "flip", "cutout(size=3)"])
  jitted = jax.jit(fn)
  a = jitted(jax.random.key(0), x)
  np.testing.assert_array_equal(a, jitted(jax.random.key(0), x))
  np.testing.assert_array_equal(a, fn(jax.random.key(0), x))
  assert a.dtype == jnp.uint8 and a.shape == x.shape
  assert not np.array_equal(a, jitted(jax.random.key(1), x))
  # A single always-flip reproduces the mirror; an empty list is the identity.
  np.testing.assert_array_equal(augment.make_augment("flip(prob=1.0)")(jax.random.key(0), x),
                                x[:, :, ::-1])
  np.testing.assert_array_equal(augment.make_augment([])(jax.random.key(0), x), x)


def test_make_augment_vmaps_over_keys():
  x = jnp.asarray(_batch(n=4, dtype=np.float32))
  fn = augment.make_augment(["crop(padding=1, mode='reflect')", "flip"])
  keys = jax.random.split(jax.random.key(0), 3)
  out = jax.jit(jax.vmap(fn, in_axes=(0, None)))(keys, x)
  assert out.shape == (3, *x.shape)
  np.testing.assert_array_equal(out[2], jax.jit(fn)(keys[2], x))
  assert not np.array_equal(out[0], out[1])


def test_get_resolves_specs_and_rejects_bad_input():
  assert augment.get("flip") is augment.random_flip
  assert augment.get("crop(padding=2)").keywords == {"padding": 2}
  assert set(augment.names()) >= {"crop", "flip", "cutout"}
  with pytest.raises(ValueError, match="Known augmentations: .*crop"):
    augment.get("rotate")
  with pytest.raises(ValueError, match="rank 4"):
    augment.random_flip(jax.random.key(0), jnp.zeros((8, 8, 3)))
  with pytest.raises(ValueError, match="pad mode"):
    augment.random_crop(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), mode="wrap")
  with pytest.raises(ValueError, match="offsets"):
    augment.pad_and_crop(jnp.zeros((2, 8, 8, 3)), jnp.zeros((3, 2), jnp.int32), padding=1)
