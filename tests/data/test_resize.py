"""Tests of jaxcnn.data.resize against PIL's bilinear resize and a NumPy formula."""

import numpy as np
import pytest
from PIL import Image

from jaxcnn.data import resize


def _pil_resize(images, size):
  """PIL's bilinear (antialiased when shrinking) resize, channel by channel in float mode."""
  h, w = size
  out = np.zeros((len(images), h, w, images.shape[-1]), np.float32)
  for n, image in enumerate(images):
    for c in range(images.shape[-1]):
      plane = Image.fromarray(image[..., c].astype(np.float32), mode="F")
      out[n, ..., c] = np.asarray(plane.resize((w, h), Image.BILINEAR))
  return out


@pytest.mark.parametrize("in_hw,out_hw", [((8, 8), (19, 19)), ((32, 32), (13, 13)),
                                          ((12, 20), (7, 31))])
def test_matches_pil(in_hw, out_hw):
  images = np.random.default_rng(0).integers(0, 256, (2, *in_hw, 3)).astype(np.uint8)
  ours = np.asarray(resize.resize(images, out_hw))
  assert ours.shape == (2, *out_hw, 3) and ours.dtype == np.float32
  np.testing.assert_allclose(ours, _pil_resize(images, out_hw), atol=0.05)


def test_upsample_by_two_formula():
  # Half-pixel centres: output j samples input (j + 0.5) / 2 - 0.5, linearly interpolated and
  # clamped at the borders.
  x = np.random.default_rng(1).normal(size=(1, 1, 6)).astype(np.float32)
  pos = np.clip((np.arange(12) + 0.5) / 2 - 0.5, 0, 5)
  lo = np.floor(pos).astype(int)
  hi = np.minimum(lo + 1, 5)
  expect = x[0, 0, lo] * (1 - (pos - lo)) + x[0, 0, hi] * (pos - lo)
  ours = np.asarray(resize.resize(x, (1, 12)))[0, 0]
  np.testing.assert_allclose(ours, expect, atol=1e-5)


def test_uint8_and_splits():
  images = np.random.default_rng(2).integers(0, 256, (5, 8, 8)).astype(np.uint8)
  splits = resize.resize_splits({"train": {"image": images, "label": np.arange(5)}}, 16)
  out = splits["train"]["image"]
  assert out.shape == (5, 16, 16) and out.dtype == np.uint8
  np.testing.assert_array_equal(splits["train"]["label"], np.arange(5))
  ref = np.clip(np.round(_pil_resize(images[..., None], (16, 16))[..., 0]), 0, 255)
  assert np.abs(out.astype(int) - ref).max() <= 1
  # Mean brightness is preserved by bilinear resampling (up to rounding).
  assert abs(out.mean() - images.mean()) < 2.0


def test_bad_input():
  with pytest.raises(ValueError, match="size"):
    resize.resize(np.zeros((1, 4, 4, 1)), 0)
  with pytest.raises(ValueError, match="shape"):
    resize.resize(np.zeros((4, 4)), 8)
  with pytest.raises(ValueError, match="uint8"):
    resize.resize_uint8(np.zeros((1, 4, 4, 1), np.float32), 8)
