"""Tests for jaxcnn.data.preprocessing: NumPy references on real (digits) and synthetic images."""

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxcnn.data import preprocessing


@pytest.fixture(scope="module")
def digits():
  """scikit-learn's 1,797 real 8x8 digit images, float in [0, 16], as (N, 8, 8, 1)."""
  return load_digits().images.reshape(-1, 8, 8, 1)


@pytest.fixture(scope="module")
def rgb():
  """Synthetic 6x6 RGB images with correlated channels of different means and scales."""
  z = np.random.default_rng(0).normal(size=(400, 6, 6, 3))
  mixing = np.array([[30.0, 0, 0], [20, 10, 0], [10, 5, 3]])
  return z @ mixing + np.array([120.0, 80, 40])


def cov(z):
  z = np.asarray(z, np.float64).reshape(len(z), -1)
  z = z - z.mean(0)
  return z.T @ z / len(z)


def test_scale_maps_range_to_minus_one_one(digits):
  x = np.array([[0, 51, 255]], np.uint8)
  np.testing.assert_allclose(preprocessing.fit("scale", x)(x), [[-1, 51 / 127.5 - 1, 1]], atol=1e-6)
  images = np.array([0.0, 8, 16]).reshape(3, 1, 1, 1) * np.ones((1, 8, 8, 1))
  for spec in ("scale", "scale(low=0.0, high=16.0)"):  # digits' range is [0, 16]
    out = preprocessing.fit(spec, digits)(images)
    np.testing.assert_allclose(out, images / 8 - 1, atol=1e-6)


def test_channel_mean_centers_each_channel(rgb):
  out = np.asarray(preprocessing.fit("channel_mean", rgb)(rgb))
  np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-3)
  np.testing.assert_allclose(out, rgb - rgb.mean(axis=(0, 1, 2)), atol=1e-3)
  assert out.dtype == np.float32


def test_standardize_gives_zero_mean_unit_std_per_channel(rgb, digits):
  out = np.asarray(preprocessing.fit("standardize", rgb)(rgb))
  np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-4)
  np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-4)
  flat = digits.reshape(len(digits), -1)  # per pixel; 3 pixels are constant: centered only
  out = np.asarray(preprocessing.fit("standardize", flat)(flat))
  std = flat.std(0)
  np.testing.assert_allclose(out.std(0), np.where(std > 0, 1, 0), atol=1e-4)
  np.testing.assert_allclose(out[:, std == 0], 0)


def test_mean_image_subtracts_the_mean_example(digits):
  out = np.asarray(preprocessing.fit("mean_image", digits)(digits))
  np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(out, digits - digits.mean(0), atol=1e-5)


@pytest.mark.parametrize("shape", [(8, 8, 1), (64,)])
def test_pca_decorrelates_with_sorted_eigenvalues_as_variances(digits, shape):
  x = digits.reshape(-1, *shape)
  eigvals = np.linalg.eigh(cov(x))[0][::-1]
  out = preprocessing.fit("pca", x)(x)
  assert out.shape == (len(x), 64)
  c = cov(out)
  np.testing.assert_allclose(np.diag(c), eigvals, atol=1e-3 * eigvals[0])
  np.testing.assert_allclose(c - np.diag(np.diag(c)), 0, atol=1e-3 * eigvals[0])
  assert preprocessing.fit("pca(k=10)", x)(x).shape == (len(x), 10)


def test_whitened_pca_has_identity_covariance(digits):
  out = preprocessing.fit("pca(k=20, whiten=True)", digits)(digits)
  assert out.shape == (len(digits), 20)
  np.testing.assert_allclose(cov(out), np.eye(20), atol=1e-3)


def test_zca_whitens_and_keeps_shape(digits, rgb):
  flat = digits.reshape(len(digits), -1)
  for x in (rgb, flat[:, flat.std(0) > 0]):  # full-rank data: drop digits' 3 constant pixels
    out = preprocessing.fit("zca(epsilon=1e-6)", x)(x)
    assert out.shape == x.shape
    np.testing.assert_allclose(cov(out), np.eye(out[0].size), atol=5e-3)


def test_zca_is_symmetric_and_closest_to_the_input_among_whitenings(digits):
  x = digits.reshape(len(digits), -1)
  x = x[:, x.std(0) > 0]
  pre = preprocessing.fit("zca(epsilon=1e-3)", x)
  matrix = np.asarray(pre.state["matrix"])
  np.testing.assert_allclose(matrix, matrix.T, atol=1e-6 * np.abs(matrix).max())
  centered = x - x.mean(0)
  zca = np.asarray(pre(x), np.float64)
  pca = np.asarray(preprocessing.fit("pca(whiten=True, epsilon=1e-3)", x)(x), np.float64)
  # Other whitenings with the same covariance: PCA whitening (= zca @ U) and random rotations.
  distance = lambda z: np.mean(np.sum((z - centered) ** 2, axis=1))
  rng = np.random.default_rng(0)
  rotations = [np.linalg.qr(rng.normal(size=(x.shape[1],) * 2))[0] for _ in range(5)]
  assert all(distance(zca) < distance(z) for z in [pca] + [zca @ q.T for q in rotations])


def test_statistics_come_from_the_training_split_only(digits):
  train, test = digits[:1200], digits[1200:]
  for spec, mean in (("mean_image", train.mean(0)), ("channel_mean", train.mean())):
    out = np.asarray(preprocessing.fit(spec, train)(test))
    np.testing.assert_allclose(out, test - mean, atol=1e-5)
    assert np.abs(out.mean()) > 1e-3


@pytest.mark.parametrize("spec", preprocessing.names())
def test_jit_vmap_and_dtype(digits, spec):
  x = digits[:64].astype(np.uint8)
  pre = preprocessing.fit(spec, x)
  expected = pre(x)
  assert expected.dtype == np.float32
  np.testing.assert_allclose(jax.jit(lambda t, x: t(x))(pre, x), expected, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(jax.vmap(pre)(x), expected, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(pre(x[0]), expected[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("spec", ["standardize", "pca(k=5, whiten=True)", "zca"])
def test_pytree_and_savez_round_trip(digits, tmp_path, spec):
  pre = preprocessing.fit(spec, digits)
  leaves, treedef = jax.tree.flatten(pre)
  assert all(isinstance(leaf, jax.Array) for leaf in leaves)
  rebuilt = jax.tree.unflatten(treedef, [leaf + 0 for leaf in leaves])
  np.savez(tmp_path / "pre.npz", **pre.to_dict())
  loaded = preprocessing.Transform.from_dict(np.load(tmp_path / "pre.npz"))
  refit = preprocessing.fit(pre.name, digits)
  for other in (rebuilt, loaded, refit):
    meta = lambda t: (t.name, t.input_shape, t.output_shape)
    assert meta(other) == meta(pre)
    np.testing.assert_allclose(other(digits), pre(digits), atol=1e-5)


def test_errors(digits):
  with pytest.raises(ValueError, match="Known.*standardize.*zca"):
    preprocessing.fit("whiten", digits)
  for spec in ("pca(3)", "zca(eps=1.0)", "none(k=1)"):
    with pytest.raises(ValueError, match="keyword arguments"):
      preprocessing.fit(spec, digits)
  with pytest.raises(ValueError, match="k <= 64"):
    preprocessing.fit("pca(k=65)", digits)
  with pytest.raises(ValueError, match="N, ..."):
    preprocessing.fit("standardize", digits[0, 0, :, 0])
  pre = preprocessing.fit("zca", digits)
  with pytest.raises(ValueError, match=r"\(8, 8, 1\).*\(5, 64\)"):
    pre(digits[:5].reshape(5, 64))


def test_normalize_is_torchvisions_fixed_imagenet_normalization():
  x = np.random.default_rng(0).integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  t = preprocessing.fit("normalize", x)
  np.testing.assert_allclose(np.asarray(t(x)), (x / 255.0 - mean) / std, atol=1e-6)
  assert np.asarray(t(x[:1])).shape == (1, 5, 5, 3)
  again = preprocessing.fit(t.name, x[::-1])  # the name refits the same (data-free) transform
  np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(t(x)))
  gray = preprocessing.fit("normalize(mean=0.5, std=0.25)", x[..., :1])
  np.testing.assert_allclose(np.asarray(gray(x[..., :1])), (x[..., :1] / 255 - 0.5) / 0.25,
                             atol=1e-6)
  with pytest.raises(ValueError, match="mean and a positive std per channel"):
    preprocessing.fit("normalize(mean=(0.5, 0.5), std=(1.0, 1.0))", x)
