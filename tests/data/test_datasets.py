"""Tests for jaxcnn.data.datasets: offline digits end to end, tfds via mock_data, streams, errors."""

import hashlib
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

tfds = pytest.importorskip("tensorflow_datasets")
requests = pytest.importorskip("requests")

from jaxcnn.data import datasets  # noqa: E402


def _hashes(data):
  return [hashlib.sha1(im.tobytes() + bytes([lab])).hexdigest()
          for im, lab in zip(data["image"], data["label"])]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
  """Both digits splits, prepared into a fresh data_dir with the network reported absent."""
  data_dir = tmp_path_factory.mktemp("tfds")
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(datasets, "_network_available", lambda: False)
    splits = {s: datasets.load("digits", s, data_dir=data_dir) for s in ("train", "test")}
  return data_dir, splits


def test_digits_prepares_offline_with_the_documented_splits(digits):
  data_dir, splits = digits
  train, test = splits["train"], splits["test"]
  assert (data_dir / "jaxcnn_digits" / "1.0.0").is_dir()
  assert len(train["image"]) + len(test["image"]) == 1797
  assert len(test["image"]) == min(10_000, 1797 // 10)  # the default holdout rule
  for split in (train, test):
    assert split["image"].shape[1:] == (8, 8, 1) and split["image"].dtype == np.uint8
    assert split["label"].dtype == np.int32 and set(split["label"].tolist()) == set(range(10))
  info = datasets.info("digits")
  assert info.num_examples == {"train": len(train["label"]), "test": len(test["label"])}
  assert (info.num_classes, info.image_shape) == (10, (8, 8, 1))


def test_digits_pixels_are_sklearn_scaled_and_splits_disjoint(digits):
  _, splits = digits
  sk = load_digits()
  reference = {"image": np.round(sk.images * 255 / 16).astype(np.uint8)[..., None],
               "label": sk.target}
  train, test = _hashes(splits["train"]), _hashes(splits["test"])
  assert not set(train) & set(test)
  assert sorted(train + test) == sorted(_hashes(reference))
  assert splits["train"]["image"].max() == 255 and splits["train"]["image"].min() == 0


def test_digits_test_split_is_stratified(digits):
  _, splits = digits
  class_sizes = np.bincount(load_digits().target)
  expected = class_sizes * 179 / 1797
  assert np.all(np.abs(np.bincount(splits["test"]["label"]) - expected) < 1)


def test_digits_second_load_reads_the_prepared_data(digits, monkeypatch):
  data_dir, splits = digits

  def fail(*args, **kwargs):
    raise AssertionError("digits was prepared again")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
  again = datasets.load("jaxcnn_digits", "test", data_dir=data_dir)
  np.testing.assert_array_equal(again["image"], splits["test"]["image"])
  sliced = datasets.load("digits", "train[:10%]", data_dir=data_dir)
  assert len(sliced["label"]) == round(0.1 * len(splits["train"]["label"]))


@pytest.mark.parametrize("name, shape, num_classes", [
    ("mnist", (28, 28, 1), 10),
    ("fashion_mnist", (28, 28, 1), 10),
    ("cifar10", (32, 32, 3), 10),
    ("cifar100", (32, 32, 3), 100),
])
def test_tfds_datasets_load_through_mock_data(tmp_path, name, shape, num_classes):
  with tfds.testing.mock_data(num_examples=13):
    data = datasets.load(name, "test", data_dir=tmp_path)
  assert data["image"].shape == (13, *shape) and data["image"].dtype == np.uint8
  assert data["label"].shape == (13,) and data["label"].dtype == np.int32
  assert 0 <= data["label"].min() and data["label"].max() < num_classes
  info = datasets.info(name)
  assert (info.image_shape, info.num_classes) == (shape, num_classes)


def test_stream_batches_through_mock_data():
  with tfds.testing.mock_data(num_examples=10):
    train = list(datasets.stream("imagenette", "train", batch_size=4, image_size=24,
                                 num_workers=2))
    again = list(datasets.stream("imagenette", "train", batch_size=4, image_size=24,
                                 num_workers=2))
    other = list(datasets.stream("imagenette", "train", batch_size=4, image_size=24, seed=1))
    evaluation = list(datasets.stream("imagenette", "validation", batch_size=4, image_size=24,
                                      train=False))
    forever = datasets.stream("imagenette", "train", batch_size=4, image_size=24, num_epochs=None)
    assert len([next(forever) for _ in range(5)]) == 5
  assert len(train) == 2  # drop_remainder for training
  assert [len(b["label"]) for b in evaluation] == [4, 4, 2]
  for batch in train + evaluation:
    assert batch["image"].shape[1:] == (24, 24, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and np.all((0 <= batch["label"]) & (batch["label"] < 10))
  for a, b in zip(train, again):  # a seed makes the stream reproducible
    np.testing.assert_array_equal(a["image"], b["image"])
  assert not all(np.array_equal(a["image"], b["image"]) for a, b in zip(train, other))


def _png_dataset(images):
  """An ``as_dataset_fn`` serving PNG-encoded ``images`` with labels 0, 1, ..."""
  import tensorflow as tf

  encoded = [tf.io.encode_png(image).numpy() for image in images]

  def as_dataset(self, *args, **kwargs):
    del self, args, kwargs
    return tf.data.Dataset.from_tensor_slices(
        {"image": encoded, "label": np.arange(len(images), dtype=np.int64)})

  return as_dataset


def test_stream_eval_is_the_center_crop():
  # 64x64 images at image_size=32: the center crop is 32 / (32 + 32) of 64 = 32 pixels, taken at
  # rows and columns 16..47, and the resize to 32 leaves it unchanged.
  images = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
  with tfds.testing.mock_data(as_dataset_fn=_png_dataset(images)):
    batch, = datasets.stream("imagenette", "validation", batch_size=3, image_size=32, train=False)
  np.testing.assert_array_equal(batch["image"], images[:, 16:48, 16:48])
  assert batch["label"].tolist() == [0, 1, 2]


def test_stream_train_crops_keep_a_constant_image_constant():
  images = np.zeros((4, 40, 50, 3), np.uint8) + np.array([10, 120, 250], np.uint8)
  with tfds.testing.mock_data(as_dataset_fn=_png_dataset(images)):
    batch, = datasets.stream("imagenette", "train", batch_size=4, image_size=16)
  np.testing.assert_array_equal(batch["image"], np.broadcast_to(images[:1, :16, :16], (4, 16, 16, 3)))
  assert sorted(batch["label"].tolist()) == [0, 1, 2, 3]


def test_prefetch_to_device_keeps_order_and_values():
  batches = [{"image": np.full((2, 3), i, np.uint8), "label": np.array([i, i])} for i in range(5)]
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  for size in (1, 2, 7):
    out = list(datasets.prefetch_to_device(iter(batches), size=size, sharding=sharding))
    assert len(out) == 5
    for i, batch in enumerate(out):
      assert isinstance(batch["image"], jax.Array) and batch["image"].sharding == sharding
      np.testing.assert_array_equal(batch["image"], batches[i]["image"])
  with pytest.raises(ValueError, match="size"):
    next(datasets.prefetch_to_device(iter(batches), size=0))


def _check_instructions(message, name):
  assert f"tfds build {name} --data_dir DIR" in message
  assert "npz" in message and "'labels'" in message


def test_download_failure_raises_with_instructions(tmp_path, monkeypatch):
  def no_network(self, *args, **kwargs):
    raise requests.exceptions.ConnectionError("Failed to resolve 'storage.googleapis.com'")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
  monkeypatch.setattr(datasets, "_network_available", lambda: False)
  with pytest.raises(datasets.DatasetNotAvailableError) as error:
    datasets.load("mnist", "train", data_dir=tmp_path)
  _check_instructions(str(error.value), "mnist")
  assert "no network access" in str(error.value)
  assert isinstance(error.value.__cause__, requests.exceptions.ConnectionError)
  assert isinstance(error.value, FileNotFoundError)


def test_real_tfds_download_fails_fast_offline(tmp_path):
  if datasets._network_available():
    pytest.skip("this machine reaches the network; the test would download MNIST")
  start = time.perf_counter()
  with pytest.raises(datasets.DatasetNotAvailableError) as error:
    datasets.load("mnist", "test", data_dir=tmp_path)
  assert time.perf_counter() - start < 30  # tfds alone retries for minutes
  _check_instructions(str(error.value), "mnist")


def test_manual_download_dataset_explains_the_manual_dir(tmp_path, monkeypatch):
  monkeypatch.setattr(datasets, "_network_available", lambda: False)
  with pytest.raises(datasets.DatasetNotAvailableError, match="manual") as error:
    datasets.stream("imagenet2012", "validation", batch_size=2, data_dir=tmp_path)
  _check_instructions(str(error.value), "imagenet2012")


def test_unknown_and_misused_names_raise_value_errors(tmp_path):
  with pytest.raises(ValueError, match="Known datasets: .*cifar10.*digits"):
    datasets.load("no_such_dataset_xyz", data_dir=tmp_path)
  with pytest.raises(ValueError, match="stream"):
    datasets.load("imagenet2012")
  with pytest.raises(ValueError, match="batch_size"):
    datasets.stream("imagenette", batch_size=0)
  assert {"digits", "mnist", "cifar10", "imagenette"} <= set(datasets.names())


def test_import_and_local_data_work_without_tensorflow(tmp_path):
  """A GPU machine may lack tensorflow and tfds: importing and .npz loading must not need them."""
  np.savez(tmp_path / "train.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.arange(3))
  script = textwrap.dedent(f"""
      import sys
      sys.modules["tensorflow"] = sys.modules["tensorflow_datasets"] = None  # import fails
      from jaxcnn.data import augment, datasets, local
      data = datasets.load("mine", "train", data_dir={str(tmp_path)!r})
      assert data["image"].shape == (3, 4, 4, 1), data["image"].shape
      try:
        datasets.load("mnist", data_dir={str(tmp_path / "none")!r})
      except datasets.DatasetNotAvailableError as e:
        assert "pip install tensorflow-datasets" in str(e), e
      else:
        raise AssertionError("no error without tfds")
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
  assert result.returncode == 0, result.stderr[-2000:]
