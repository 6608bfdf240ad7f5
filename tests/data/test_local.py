"""Tests for jaxcnn.data.local: arrays and .npz files (raw, PNG, JPEG), plus the real shared data."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxcnn.data import datasets, local

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _images(n, h=6, w=5, c=3, seed=0):
  return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def _encode(images, fmt, **kwargs):
  """Back-to-back encoded files and offsets, written with Pillow directly."""
  files = []
  for image in images:
    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
        buffer, format=fmt, **kwargs)
    files.append(np.frombuffer(buffer.getvalue(), np.uint8))
  offsets = np.concatenate([[0], np.cumsum([len(f) for f in files])]).astype(np.int64)
  return np.concatenate(files), offsets


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXCNN_CACHE_DIR", str(tmp_path / "cache"))


def test_from_arrays_adds_channel_and_casts_labels():
  x = _images(4, c=1)[..., 0]
  data = local.from_arrays(x, np.array([3, 1, 0, 2], np.uint8))
  assert data["image"].shape == (4, 6, 5, 1) and data["image"].dtype == np.uint8
  np.testing.assert_array_equal(data["image"][..., 0], x)
  assert data["label"].dtype == np.int32 and data["label"].tolist() == [3, 1, 0, 2]


@pytest.mark.parametrize("images, labels, match", [
    (np.zeros((2, 4, 4, 3), np.float32), [0, 1], "uint8"),
    (np.zeros((2, 4), np.uint8), [0, 1], "shape"),
    (np.zeros((2, 4, 4, 3), np.uint8), [0, 1, 2], "labels must have shape"),
    (np.zeros((2, 4, 4, 3), np.uint8), [0.0, 1.0], "integers"),
    (np.zeros((2, 4, 4, 3), np.uint8), [0, -1], ">= 0"),
])
def test_from_arrays_rejects_bad_input(images, labels, match):
  with pytest.raises(ValueError, match=match):
    local.from_arrays(images, np.asarray(labels))


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_raw_npz_round_trips(tmp_path, channels):
  x = _images(7, c=channels or 1)
  if channels is None:
    x = x[..., 0]
  y = np.arange(7) % 3
  np.savez(tmp_path / "train.npz", images=x, labels=y.astype(np.uint8))
  data = local.load_npz(tmp_path / "train.npz")
  np.testing.assert_array_equal(data["image"].reshape(x.shape), x)
  assert data["image"].ndim == 4 and data["label"].tolist() == y.tolist()


@pytest.mark.parametrize("channels", [1, 3])
def test_png_npz_decodes_losslessly(tmp_path, channels):
  x = _images(9, c=channels, seed=channels)
  encoded, offsets = _encode(x, "PNG")
  np.savez(tmp_path / "test.npz", encoded=encoded, offsets=offsets, labels=np.arange(9))
  data = local.load_npz(tmp_path / "test.npz")
  np.testing.assert_array_equal(data["image"], x)
  assert data["label"].tolist() == list(range(9))


def test_jpeg_npz_matches_pillow_and_is_close_to_the_source(tmp_path):
  # Smooth images, so JPEG at quality 95 stays within a few levels of the source.
  ramp = np.linspace(0, 255, 16)
  x = np.stack([np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :] * (k / 5),
                                             np.full((16, 16), 40.0 * k)), -1)
                for k in range(5)]).round().astype(np.uint8)
  encoded, offsets = _encode(x, "JPEG", quality=95)
  np.savez(tmp_path / "train.npz", jpeg=encoded, offsets=offsets, labels=np.zeros(5, np.int64))
  data = local.load_npz(tmp_path / "train.npz")
  assert data["image"].shape == (5, 16, 16, 3) and data["image"].dtype == np.uint8
  for k in range(5):
    direct = np.asarray(Image.open(io.BytesIO(encoded[offsets[k]:offsets[k + 1]].tobytes())))
    np.testing.assert_array_equal(data["image"][k], direct)
  assert np.abs(data["image"].astype(int) - x).mean() < 3


def test_decoded_arrays_are_cached_outside_the_data_dir(tmp_path):
  x = _images(20)
  encoded, offsets = _encode(x, "PNG")
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  np.savez(data_dir / "train.npz", jpeg=encoded, offsets=offsets, labels=np.zeros(20, np.int64))
  first = local.load_npz(data_dir / "train.npz")
  cached = list((tmp_path / "cache").rglob("*.npy"))
  assert len(cached) == 1 and sorted(os.listdir(data_dir)) == ["train.npz"]
  np.testing.assert_array_equal(np.load(cached[0]), x)
  # The cache is what the second load reads.
  np.save(cached[0], np.zeros_like(x))
  np.testing.assert_array_equal(local.load_npz(data_dir / "train.npz")["image"], 0)
  np.testing.assert_array_equal(local.load_npz(data_dir / "train.npz", cache=False)["image"], x)
  np.testing.assert_array_equal(first["image"], x)


def test_threaded_decode_equals_serial_decode():
  x = _images(23, seed=5)
  encoded, offsets = _encode(x, "PNG")
  np.testing.assert_array_equal(local.decode_images(encoded, offsets, num_threads=3), x)
  np.testing.assert_array_equal(local.decode_images(encoded, offsets, num_threads=1), x)


def test_decode_rejects_bad_files():
  x = _images(3)
  encoded, offsets = _encode(x, "PNG")
  with pytest.raises(ValueError, match="offsets"):
    local.decode_images(encoded, offsets[:-1])
  with pytest.raises(ValueError, match="Cannot decode image 1"):
    corrupt = encoded.copy()
    corrupt[offsets[1]:offsets[2]] = 7
    local.decode_images(corrupt, offsets)
  mixed, mixed_offsets = _encode([x[0], _images(1, h=3)[0]], "PNG")
  with pytest.raises(ValueError, match="image 0 has"):
    local.decode_images(mixed, mixed_offsets)


def test_npz_without_known_arrays_is_rejected(tmp_path):
  np.savez(tmp_path / "a.npz", pixels=np.zeros((2, 2, 2), np.uint8), labels=np.zeros(2))
  with pytest.raises(ValueError, match="must hold 'images'"):
    local.load_npz(tmp_path / "a.npz")
  np.savez(tmp_path / "b.npz", images=np.zeros((2, 2, 2), np.uint8))
  with pytest.raises(ValueError, match="no 'labels'"):
    local.load_npz(tmp_path / "b.npz")


@pytest.mark.parametrize("nested", [False, True])
def test_datasets_load_and_info_read_npz_folders(tmp_path, nested):
  folder = tmp_path / "mydata" if nested else tmp_path
  folder.mkdir(exist_ok=True)
  train, test = _images(10, h=7, w=7), _images(4, h=7, w=7, seed=1)
  np.savez(folder / "train.npz", images=train, labels=np.arange(10) % 5)
  encoded, offsets = _encode(test, "PNG")
  np.savez(folder / "test.npz", jpeg=encoded, offsets=offsets, labels=np.array([4, 0, 1, 2]))
  data = datasets.load("mydata", "test", data_dir=tmp_path)
  np.testing.assert_array_equal(data["image"], test)
  np.testing.assert_array_equal(datasets.load("mydata", data_dir=tmp_path)["image"], train)
  assert datasets.info("mydata", tmp_path) == datasets.DatasetInfo(
      num_classes=5, image_shape=(7, 7, 3), num_examples={"test": 4, "train": 10})
  assert local.npz_shapes(folder / "train.npz") == {"images": (10, 7, 7, 3), "labels": (10,)}
  with pytest.raises(ValueError, match=r"No split 'validation'.*\['test', 'train'\]"):
    datasets.load("mydata", "validation", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# The real datasets in ../shared/data (never part of the repository).

# Published class counts of MNIST (LeCun et al. 1998), which the shared copy keeps.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _shared(name):
  path = SHARED_DATA / name
  if not (path / "train.npz").is_file():
    pytest.skip(f"{path} is not here")
  return path


@pytest.mark.slow
def test_real_mnist():
  path = _shared("mnist")
  train, test = datasets.load("mnist", "train", data_dir=path), datasets.load("mnist", "test",
                                                                             data_dir=path)
  assert train["image"].shape == (60_000, 28, 28, 1) and test["image"].shape == (10_000, 28, 28, 1)
  assert train["image"].dtype == np.uint8 and train["label"].dtype == np.int32
  assert np.bincount(train["label"]).tolist() == MNIST_TRAIN_COUNTS
  assert np.bincount(test["label"]).tolist() == MNIST_TEST_COUNTS
  assert datasets.info("mnist", SHARED_DATA) == datasets.KNOWN["mnist"]


@pytest.mark.slow
def test_real_cifar10():
  path = _shared("cifar10")
  train, test = datasets.load("cifar10", "train", data_dir=path), datasets.load("cifar10", "test",
                                                                               data_dir=path)
  assert train["image"].shape == (50_000, 32, 32, 3) and test["image"].shape == (10_000, 32, 32, 3)
  assert np.bincount(train["label"]).tolist() == [5000] * 10
  assert np.bincount(test["label"]).tolist() == [1000] * 10
  # Per-channel test statistics of CIFAR-10, as the shared README states for this copy.
  pixels = test["image"].reshape(-1, 3) / 255.0
  np.testing.assert_allclose(pixels.mean(0), [0.494, 0.485, 0.450], atol=2e-3)
  np.testing.assert_allclose(pixels.std(0), [0.245, 0.242, 0.261], atol=3e-3)
  assert datasets.info("cifar10", path) == datasets.KNOWN["cifar10"]
