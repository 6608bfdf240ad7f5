"""Tests for jaxcnn.data.datasets: offline digits, tfds via mock_data and real ArrayRecord files,
Grain streams, errors. Nothing here imports TensorFlow."""

import hashlib
import importlib.util
import io
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

tfds = pytest.importorskip("tensorflow_datasets")
requests = pytest.importorskip("requests")

from jaxcnn.data import datasets  # noqa: E402

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def _hashes(data):
  return [hashlib.sha1(im.tobytes() + bytes([lab])).hexdigest()
          for im, lab in zip(data["image"], data["label"])]


def _png(image):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


class JaxcnnTestImages(tfds.core.GeneratorBasedBuilder):
  """Five RGB images of varying size, stored as PNG (encoded by Pillow: no TensorFlow)."""

  VERSION = tfds.core.Version("1.0.0")
  IMAGES = [np.random.default_rng(i).integers(0, 256, (20 + 3 * i, 30 - 2 * i, 3), np.uint8)
            for i in range(5)]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.ClassLabel(num_classes=5)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(range(5)), "validation": self._generate_examples([1])}

  def _generate_examples(self, ids):
    for i in ids:
      yield i, {"image": _png(self.IMAGES[i]), "label": i}


class JaxcnnTestNumpyImages(JaxcnnTestImages):
  """The same, handed to tfds as NumPy arrays: tfds encodes those with TensorFlow."""

  def _generate_examples(self, ids):
    for i in ids:
      yield i, {"image": self.IMAGES[i], "label": i}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
  """Both digits splits, prepared into a fresh data_dir with the network reported absent."""
  data_dir = tmp_path_factory.mktemp("tfds")
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(datasets, "_network_available", lambda: False)
    splits = {s: datasets.load("digits", s, data_dir=data_dir) for s in ("train", "test")}
  return data_dir, splits


def test_digits_prepares_offline_as_array_record_with_the_documented_splits(digits):
  data_dir, splits = digits
  train, test = splits["train"], splits["test"]
  version_dir = data_dir / "jaxcnn_digits" / "1.1.0"
  assert sorted(p.name.split(".")[0] for p in version_dir.glob("*.array_record-*")) == [
      "jaxcnn_digits-test", "jaxcnn_digits-train"]
  assert not list(version_dir.glob("*.tfrecord*"))
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
  source = datasets.data_source("digits", "test", data_dir=data_dir)  # random access
  assert len(source) == 179
  np.testing.assert_array_equal(source[178]["image"], splits["test"]["image"][178])


def test_read_all_threads_equal_one_thread(digits):
  data_dir, splits = digits
  source = datasets.data_source("digits", "train", data_dir=data_dir)
  threaded = datasets.read_all(source, num_threads=3, chunk_size=100)
  for key in ("image", "label"):
    np.testing.assert_array_equal(threaded[key], splits["train"][key])


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


def test_real_array_record_files_load_and_stream(tmp_path):
  """A tfds builder prepared in a tmp data_dir (PNG in ArrayRecord), read back by name."""
  images = JaxcnnTestImages.IMAGES
  evaluation = list(datasets.stream("jaxcnn_test_images", "train", batch_size=2, image_size=16,
                                    train=False, data_dir=tmp_path))
  assert (tmp_path / "jaxcnn_test_images" / "1.0.0").is_dir()
  assert [len(b["label"]) for b in evaluation] == [2, 2, 1]
  source = datasets.data_source("jaxcnn_test_images", "train", data_dir=tmp_path)
  order = [int(source[i]["label"]) for i in range(5)]  # tfds stores examples in its own order
  assert sorted(order) == list(range(5))
  for i, label in enumerate(order):
    np.testing.assert_array_equal(source[i]["image"], images[label])  # PNG: lossless
    window = datasets.center_crop_window(*images[label].shape[:2], 16)
    expected = datasets.crop_and_resize(images[label], window, 16)
    np.testing.assert_array_equal(evaluation[i // 2]["image"][i % 2], expected)
  train = list(datasets.stream("jaxcnn_test_images", "train", batch_size=2, image_size=16,
                               data_dir=tmp_path))
  labels = np.concatenate([b["label"] for b in train])
  assert len(train) == 2 and len(set(labels.tolist())) == 4 and set(labels.tolist()) <= set(order)
  assert datasets.info("jaxcnn_test_images", tmp_path).num_examples == {"train": 5,
                                                                         "validation": 1}


def _images_source(images):
  """An ``as_data_source_fn`` for ``tfds.testing.mock_data``: ``images`` with labels 0, 1, ..."""

  def as_data_source(self, split=None, **kwargs):
    del self, split, kwargs
    return [{"image": image, "label": np.int64(i)} for i, image in enumerate(images)]

  return as_data_source


def test_stream_batches_through_mock_data():
  with tfds.testing.mock_data(num_examples=10):
    kwargs = dict(batch_size=4, image_size=24)
    train = list(datasets.stream("imagenette", "train", **kwargs))
    again = list(datasets.stream("imagenette", "train", num_threads=3, **kwargs))
    other = list(datasets.stream("imagenette", "train", seed=1, **kwargs))
    evaluation = list(datasets.stream("imagenette", "validation", train=False, **kwargs))
    forever = datasets.stream("imagenette", "train", num_epochs=None, **kwargs)
    assert len([next(forever) for _ in range(5)]) == 5
    two = list(datasets.stream("imagenette", "train", num_epochs=2, **kwargs))
  assert len(train) == 2 and len(two) == 5  # drop_remainder for training, across epochs
  assert [len(b["label"]) for b in evaluation] == [4, 4, 2]
  for batch in train + evaluation:
    assert batch["image"].shape[1:] == (24, 24, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and np.all((0 <= batch["label"]) & (batch["label"] < 10))
  for a, b in zip(train, again):  # a seed makes the stream reproducible, whatever the threads
    np.testing.assert_array_equal(a["image"], b["image"])
  assert not all(np.array_equal(a["image"], b["image"]) for a, b in zip(train, other))


def test_stream_shuffles_each_epoch_and_covers_every_example():
  images = [np.full((8, 8, 3), i, np.uint8) for i in range(12)]
  with tfds.testing.mock_data(as_data_source_fn=_images_source(images)):
    batches = list(datasets.stream("imagenette", "train", batch_size=4, image_size=8,
                                   num_epochs=2, seed=3))
  labels = np.concatenate([b["label"] for b in batches])
  first, second = labels[:12], labels[12:]
  assert sorted(first) == sorted(second) == list(range(12))  # each epoch is a permutation
  assert first.tolist() != list(range(12)) and first.tolist() != second.tolist()
  for batch in batches:  # a constant image stays itself under crops, resizes and flips
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], batch["label"])


def test_stream_iterator_resumes_from_its_state():
  with tfds.testing.mock_data(num_examples=20):
    kwargs = dict(batch_size=3, image_size=16, num_epochs=None, seed=5)
    uninterrupted = datasets.stream("imagenette", "train", **kwargs)
    expected = [next(uninterrupted) for _ in range(9)]
    it = datasets.stream("imagenette", "train", **kwargs)
    for _ in range(4):
      next(it)
    state = it.get_state()
    resumed = datasets.stream("imagenette", "train", **kwargs)
    resumed.set_state(state)
    rest = [next(resumed) for _ in range(5)]
  for a, b in zip(expected[4:], rest):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert not np.array_equal(expected[0]["image"], rest[0]["image"])


def test_stream_worker_processes_give_the_same_batches():
  with tfds.testing.mock_data(num_examples=9):
    kwargs = dict(batch_size=3, image_size=16)
    threads = list(datasets.stream("imagenette", "train", **kwargs))
    it = datasets.stream("imagenette", "train", num_workers=2, **kwargs)
    processes = list(it)
    it.close()
  assert len(processes) == len(threads) == 3
  for a, b in zip(threads, processes):
    np.testing.assert_array_equal(a["image"], b["image"])


def test_each_process_streams_its_own_shard(monkeypatch):
  images = [np.full((8, 8, 3), i, np.uint8) for i in range(10)]
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  shards = {}
  with tfds.testing.mock_data(as_data_source_fn=_images_source(images)):
    for index in (0, 1):
      monkeypatch.setattr(jax, "process_index", lambda index=index: index)
      for train in (False, True):
        batches = datasets.stream("imagenette", "train", batch_size=5, image_size=8, train=train)
        shards[index, train] = np.concatenate([b["label"] for b in batches]).tolist()
  assert shards[0, False] == [0, 2, 4, 6, 8] and shards[1, False] == [1, 3, 5, 7, 9]
  for index in (0, 1):  # training shuffles within the process's shard
    assert sorted(shards[index, True]) == shards[index, False]


def test_stream_eval_is_the_center_crop():
  # 64x64 images at image_size=32: the center crop is 32 / (32 + 32) of 64 = 32 pixels, taken at
  # rows and columns 16..47, and the resize to 32 leaves it unchanged.
  images = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
  with tfds.testing.mock_data(as_data_source_fn=_images_source(images)):
    batch, = datasets.stream("imagenette", "validation", batch_size=3, image_size=32, train=False)
  np.testing.assert_array_equal(batch["image"], images[:, 16:48, 16:48])
  assert batch["label"].tolist() == [0, 1, 2]


def test_stream_train_crops_keep_a_constant_image_constant():
  images = [np.zeros((40 + i, 50, 3), np.uint8) + np.array([10, 120, 250], np.uint8)
            for i in range(4)]
  with tfds.testing.mock_data(as_data_source_fn=_images_source(images)):
    batch, = datasets.stream("imagenette", "train", batch_size=4, image_size=16)
  np.testing.assert_array_equal(batch["image"],
                                np.broadcast_to(images[0][:16, :16], (4, 16, 16, 3)))
  assert sorted(batch["label"].tolist()) == [0, 1, 2, 3]


def test_grayscale_images_stream_as_rgb():
  images = [np.arange(100, dtype=np.uint8).reshape(10, 10, 1)] * 2
  with tfds.testing.mock_data(as_data_source_fn=_images_source(images)):
    batch, = datasets.stream("imagenette", "validation", batch_size=2, image_size=10,
                             train=False)
  assert batch["image"].shape == (2, 10, 10, 3)
  assert all(np.array_equal(batch["image"][..., c], batch["image"][..., 0]) for c in (1, 2))


def test_random_resized_crop_windows_have_the_promised_area_and_shape():
  rng = np.random.default_rng(0)
  areas, ratios = [], []
  for _ in range(500):
    top, left, h, w = datasets.random_resized_crop_window(rng, 300, 400)
    assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 400
    if (h, w) != (300, 400):
      areas.append(h * w / (300 * 400))
      ratios.append(w / h)
  areas, ratios = np.array(areas), np.array(ratios)
  assert len(areas) > 450
  assert areas.min() >= 0.08 - 0.01 and areas.max() <= 1.0
  assert ratios.min() >= 3 / 4 * 0.97 and ratios.max() <= 4 / 3 * 1.03  # rounding to pixels
  # log-uniform ratio: half the crops are wider than tall; area uniform on [0.08, 1] where it fits.
  assert 0.4 < np.mean(ratios > 1) < 0.6 and 0.35 < np.median(areas) < 0.6
  # no crop of 2-3x the image exists: the whole image after the attempts
  assert datasets.random_resized_crop_window(rng, 30, 40, area=(2, 3)) == (0, 0, 30, 40)


def test_center_crop_window_is_the_resnet_eval_crop():
  assert datasets.center_crop_window(256, 256, 224) == (16, 16, 224, 224)
  assert datasets.center_crop_window(375, 500, 224) == (24, 86, 328, 328)  # 224/256 * 375


def test_crop_and_resize_takes_the_window_and_keeps_a_linear_ramp_linear():
  # A horizontal ramp 4 * column, halved in width by a symmetric, normalized (bilinear) filter:
  # output column k covers input columns 2k and 2k + 1, centre 2k + 0.5, so it reads 8k + 2.
  ramp = np.broadcast_to((4 * np.arange(64)).astype(np.uint8)[None, :, None], (64, 64, 3))
  out = datasets.crop_and_resize(ramp, (0, 0, 64, 64), 32)
  assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  np.testing.assert_allclose(out[5, 2:-2, 0], 8 * np.arange(2, 30) + 2, atol=1)
  image = np.random.default_rng(0).integers(0, 256, (30, 40, 1), np.uint8)
  np.testing.assert_array_equal(datasets.crop_and_resize(image, (3, 7, 16, 16), 16),
                                image[3:19, 7:23])  # same size: the window itself


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
  assert f"tfds build {name} --data_dir DIR --file_format array_record" in message
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


def test_builder_needing_tensorflow_names_the_extra(tmp_path, monkeypatch):
  def needs_tf(self, *args, **kwargs):
    try:
      import tensorflow_not_installed_xyz  # noqa: F401
    except ImportError as e:
      raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow") from e

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", needs_tf)
  with pytest.raises(datasets.TensorFlowRequiredError, match=r"pip install 'jaxcnn\[tf\]'") as e:
    datasets.load("mnist", "train", data_dir=tmp_path)
  assert "tfds build mnist --data_dir DIR --file_format array_record" in str(e.value)
  assert isinstance(e.value, ImportError)


@pytest.mark.skipif(HAS_TF, reason="TensorFlow is installed: the builder would succeed")
def test_real_builder_needing_tensorflow_names_the_extra_without_it(tmp_path):
  with pytest.raises(datasets.TensorFlowRequiredError, match=r"jaxcnn\[tf\]"):
    datasets.load("jaxcnn_test_numpy_images", "train", data_dir=tmp_path)


def test_unknown_and_misused_names_raise_value_errors(tmp_path):
  with pytest.raises(ValueError, match="Known datasets: .*cifar10.*digits"):
    datasets.load("no_such_dataset_xyz", data_dir=tmp_path)
  with pytest.raises(ValueError, match="stream"):
    datasets.load("imagenet2012")
  with pytest.raises(ValueError, match="batch_size"):
    datasets.stream("imagenette", batch_size=0)
  with pytest.raises(ValueError, match="seed"):
    datasets.grain_batches("imagenette", batch_size=2, seed=-1)
  with pytest.raises(ValueError, match="num_epochs"):
    datasets.grain_batches("imagenette", batch_size=2, num_epochs=0)
  with pytest.raises(ValueError, match="num_workers"):
    datasets.stream("imagenette", batch_size=2, num_workers=-1)
  assert {"digits", "mnist", "cifar10", "imagenette"} <= set(datasets.names())


def _run(script):
  result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120, env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_main_job_import_path_and_digits_do_not_import_tensorflow(tmp_path):
  """The default run's modules, the digits (prepared and read) and a Grain stream: no TF."""
  _run(f"""
      import sys
      from jaxcnn import cli
      from jaxcnn.train import cli as train_cli, loop
      from jaxcnn.data import datasets, sources
      for _ in range(2):  # prepares, then reads the prepared copy
        data = datasets.load("digits", "train", data_dir={str(tmp_path)!r})
      assert data["image"].shape == (1618, 8, 8, 1), data["image"].shape
      source = sources.InMemory({{"train": data}})
      import tensorflow_datasets as tfds
      with tfds.testing.mock_data(num_examples=4):
        batch = next(datasets.stream("imagenette", "train", batch_size=2, image_size=8))
      loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
      assert not loaded, loaded[:10]
      """)


def test_import_and_local_data_work_without_tensorflow_datasets(tmp_path):
  """A machine may lack tensorflow and tfds: importing and .npz loading must not need them."""
  np.savez(tmp_path / "train.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.arange(3))
  _run(f"""
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


@pytest.mark.skipif(not HAS_TF, reason="needs TensorFlow (the tf extra) to write TFRecord files")
def test_tfrecord_copies_from_older_runs_still_load_with_tensorflow(tmp_path):
  """Data prepared as TFRecord (tfds's default, jaxcnn before ArrayRecord): read through tf.data
  when TensorFlow is installed (in a subprocess: the test process stays TensorFlow-free)."""
  _run(f"""
      from jaxcnn.data import datasets, digits
      builder = digits.JaxcnnDigits(data_dir={str(tmp_path)!r}, file_format="tfrecord")
      builder.download_and_prepare(file_format="tfrecord")
      try:
        datasets.data_source("digits", "test", data_dir={str(tmp_path)!r})
      except datasets.DatasetNotAvailableError as e:
        assert "tfds convert_format" in str(e) and "TFRecord" in str(e), e
      else:
        raise AssertionError("a TFRecord copy gave a data source")
      data = datasets.load("digits", "test", data_dir={str(tmp_path)!r})
      assert data["image"].shape == (179, 8, 8, 1) and data["image"].dtype.name == "uint8"
      """)
