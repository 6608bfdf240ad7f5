"""Datasets: tfds-backed loaders, the offline ``digits`` default, local ``.npz`` data, and streams.

Small datasets load whole into memory as ``{"image": uint8 (N, H, W, C), "label": int32 (N,)}``
(put them on the accelerator once and augment them there with :mod:`jaxcnn.data.augment`)::

  train = datasets.load("cifar10", "train")          # tfds: prepares on first use, then reads
  test = datasets.load("mnist", "test", data_dir="../shared/data/mnist")   # local .npz files
  digits = datasets.load("digits")                    # offline: scikit-learn's digits via tfds

Large ones (``imagenette``, ``imagenet2012``) stream host batches through a parallel tf.data
pipeline (decode, random-resized-crop and flip or center crop, resize), and
:func:`prefetch_to_device` keeps the next batches in flight to the device::

  batches = prefetch_to_device(datasets.stream("imagenette", "train", batch_size=128))

``load`` behaves like ``tfds.load``: the dataset is prepared into ``data_dir`` (default tfds's,
``~/tensorflow_datasets``) on first use where the network allows, and read from there after.
If ``data_dir`` holds ``{split}.npz`` files (or ``{name}/{split}.npz``) in the layout of
:mod:`jaxcnn.data.local`, those are read instead, without tfds. A dataset that is neither
prepared nor downloadable raises :class:`DatasetNotAvailableError`, saying how to provide it.

tensorflow_datasets and tensorflow are imported inside the functions that need them, so this
module, ``.npz`` data and :func:`prefetch_to_device` work on machines without them.

References: https://www.tensorflow.org/datasets/overview (``tfds.load``, ``as_dataset``,
``batch_size=-1``); https://www.tensorflow.org/datasets/performances (tf.data pipelines);
Szegedy et al. 2015, "Going Deeper with Convolutions" (random-resized crop for ImageNet).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import numpy as np

from jaxcnn.data import local


class DatasetNotAvailableError(FileNotFoundError):
  """The dataset is not prepared in ``data_dir`` and cannot be downloaded here."""


class DatasetInfo(NamedTuple):
  """Static facts about a dataset.

  Attributes:
    num_classes: number of label classes.
    image_shape: ``(H, W, C)`` as stored; ``None`` for sizes that vary between images.
    num_examples: split name -> number of examples.
    in_memory: True if :func:`load` serves it whole; False if it is meant for :func:`stream`.
  """

  num_classes: int
  image_shape: tuple[int | None, ...]
  num_examples: Mapping[str, int]
  in_memory: bool = True


# Known datasets; split sizes as published by tfds (and, for digits, as built by digits.py).
KNOWN: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10, (8, 8, 1), {"train": 1618, "test": 179}),
    "mnist": DatasetInfo(10, (28, 28, 1), {"train": 60_000, "test": 10_000}),
    "fashion_mnist": DatasetInfo(10, (28, 28, 1), {"train": 60_000, "test": 10_000}),
    "cifar10": DatasetInfo(10, (32, 32, 3), {"train": 50_000, "test": 10_000}),
    "cifar100": DatasetInfo(100, (32, 32, 3), {"train": 50_000, "test": 10_000}),
    "imagenette": DatasetInfo(10, (None, None, 3), {"train": 9_469, "validation": 3_925},
                              in_memory=False),
    "imagenet2012": DatasetInfo(1000, (None, None, 3),
                                {"train": 1_281_167, "validation": 50_000}, in_memory=False),
}
_TFDS_NAMES = {"digits": "jaxcnn_digits"}
_LOAD_BATCH_SIZE = 10_000
_PROBE_HOST = ("storage.googleapis.com", 443)  # where tfds downloads most datasets from
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_NPZ_LAYOUT = ("a folder of {split}.npz files, each with 'images' uint8 [N, H, W(, C)] and "
               "'labels' [N], or 'jpeg' (encoded bytes back to back), 'offsets' [N + 1] and "
               "'labels' [N] (see jaxcnn.data.local)")


def names() -> list[str]:
  """The datasets jaxcnn knows by name (any other tfds image-classification name works too)."""
  return sorted(KNOWN)


def check_data_dir(name: str, data_dir: str | os.PathLike) -> None:
  """Raises a ValueError unless ``data_dir`` holds ``name``'s data: ``.npz`` splits (in it or in
  ``data_dir/name``) or a prepared tfds copy (``data_dir/<tfds name>/``).

  A mistyped or empty folder would otherwise silently fall back to preparing the data set there.
  """
  path = Path(data_dir).expanduser()
  if not path.is_dir():
    raise ValueError(f"data_dir {str(path)!r} does not exist (or is not a folder); it should hold "
                     f"{name}'s data: {_NPZ_LAYOUT}, or a prepared tfds copy.")
  tfds_name = _TFDS_NAMES.get(_canonical(name), name)
  if not local.npz_splits(path, name) and not (path / tfds_name).is_dir():
    raise ValueError(f"data_dir {str(path)!r} holds no data for {name!r}: expected {_NPZ_LAYOUT} "
                     f"(in it or in {str(path / name)!r}), or a prepared tfds copy in "
                     f"{str(path / tfds_name)!r}.")


def info(name: str, data_dir: str | os.PathLike | None = None) -> DatasetInfo:
  """Number of classes, image shape and split sizes, without loading the pixels.

  Local ``.npz`` splits in ``data_dir`` are described from their files (array headers, one
  decoded image, the labels); known names come from :data:`KNOWN`; other names from tfds.
  """
  npz = local.npz_splits(data_dir, name) if data_dir is not None else {}
  if npz:
    return _npz_info(name, npz)
  if _canonical(name) in KNOWN:
    return KNOWN[_canonical(name)]
  tfds = _import_tfds(name, data_dir)
  builder_info = _builder(tfds, name, data_dir).info
  return DatasetInfo(
      num_classes=builder_info.features["label"].num_classes,
      image_shape=tuple(builder_info.features["image"].shape),
      num_examples={k: v.num_examples for k, v in builder_info.splits.items()},
  )


def load(name: str, split: str = "train", *,
         data_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
  """Loads a whole split into memory: ``{"image": uint8 (N, H, W, C), "label": int32 (N,)}``.

  Args:
    name: ``"digits"``, ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``, or any
      tfds image-classification dataset with fixed-size images.
    split: a split name; through tfds also a slice such as ``"train[:90%]"``. Local ``.npz``
      data takes plain split names (the file names).
    data_dir: a folder of ``.npz`` splits (read directly), or tfds's data directory (default
      ``~/tensorflow_datasets``), where the dataset is prepared on first use.

  Raises:
    DatasetNotAvailableError: not prepared in ``data_dir`` and not downloadable here.
    ValueError: unknown name or split, or a streaming-only dataset.
  """
  if data_dir is not None:
    npz = local.npz_splits(data_dir, name)
    if npz:
      if split not in npz:
        raise ValueError(f"No split {split!r} among the .npz files for {name!r} in {data_dir}; "
                         f"found {sorted(npz)}.")
      return local.load_npz(npz[split])
  canonical = _canonical(name)
  if canonical in KNOWN and not KNOWN[canonical].in_memory:
    raise ValueError(f"{name} is too large to load into memory; use datasets.stream({name!r}, "
                     f"{split!r}, batch_size=...).")
  tfds = _import_tfds(name, data_dir)
  _tensorflow()
  builder = _builder(tfds, name, data_dir)
  _prepare(builder, name, data_dir)
  # Batches, not batch_size=-1: that batches by the split sizes recorded at preparation, which
  # tfds.testing.mock_data does not have.
  ds = builder.as_dataset(split=split, batch_size=_LOAD_BATCH_SIZE, shuffle_files=False)
  batches = list(tfds.as_numpy(ds))
  if not batches:
    image_shape = builder.info.features["image"].shape
    return local.from_arrays(np.zeros((0, *image_shape), np.uint8), np.zeros(0, np.int32))
  return local.from_arrays(np.concatenate([b["image"] for b in batches]),
                           np.concatenate([b["label"] for b in batches]))


def stream(name: str, split: str = "train", *, batch_size: int,
           data_dir: str | os.PathLike | None = None, image_size: int = 224, train: bool = True,
           seed: int = 0, num_workers: int | None = None,
           num_epochs: int | None = 1) -> Iterator[dict[str, np.ndarray]]:
  """Streams host batches ``{"image": uint8 (B, S, S, 3), "label": int32 (B,)}`` via tf.data.

  Training batches are shuffled (files and a 16-batch example buffer), cropped at random
  (random-resized crop: 8-100% of the area, aspect ratio 3/4-4/3), flipped at random, resized
  to ``image_size`` and batched with ``drop_remainder=True``. Evaluation batches are center crops
  (``image_size / (image_size + 32)`` of the shorter side) resized to ``image_size``, and keep
  the last partial batch. Randomness is stateless and seeded by ``seed``, and the element order is
  deterministic, so a stream is reproducible. Under ``jax.process_count() > 1`` every process
  reads its own shard of the split (``tfds.split_for_jax_process``).

  Args:
    name: a tfds dataset with JPEG images and labels (``"imagenette"``, ``"imagenet2012"``, ...).
    split: split name or slice, e.g. ``"train"``, ``"validation[:10%]"``.
    batch_size: examples per batch (per process).
    data_dir: tfds data directory (default tfds's).
    image_size: side of the square output images.
    train: training augmentation, shuffling and dropped remainder, or evaluation crops.
    seed: seed of file order, shuffling and crops.
    num_workers: parallel decode/augment calls and tf.data's thread pool size; None lets
      tf.data tune it (``tf.data.AUTOTUNE``).
    num_epochs: passes over the split; None repeats forever.
  """
  if batch_size < 1 or image_size < 1:
    raise ValueError(f"batch_size and image_size must be >= 1, got {batch_size}, {image_size}.")
  tfds = _import_tfds(name, data_dir)
  import jax  # pylint: disable=g-import-not-at-top

  tf = _tensorflow()
  builder = _builder(tfds, name, data_dir)
  _prepare(builder, name, data_dir)
  if jax.process_count() > 1:
    split = tfds.split_for_jax_process(split)
  parallel = tf.data.AUTOTUNE if num_workers is None else num_workers
  ds = builder.as_dataset(
      split=split, shuffle_files=train, decoders={"image": tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=seed, skip_prefetch=True))
  options = tf.data.Options()
  options.deterministic = True
  if num_workers is not None:
    options.threading.private_threadpool_size = num_workers
  ds = ds.with_options(options)
  if train:
    ds = ds.shuffle(16 * batch_size, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat(num_epochs)
  # One stateless seed pair per example, from a seeded random stream zipped alongside.
  ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))

  def preprocess(example, example_seed):
    if train:
      crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(example_seed, 2))
      image = _random_resized_crop(example["image"], image_size, crop_seed)
      image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    else:
      image = _center_crop(example["image"], image_size)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return {"image": image, "label": tf.cast(example["label"], tf.int32)}

  ds = ds.map(preprocess, num_parallel_calls=parallel)
  ds = ds.batch(batch_size, drop_remainder=train).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(ds))


def _image_shape(image_bytes):
  """``[height, width, channels]`` of an encoded image; JPEG headers are read without decoding."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  return tf.cond(tf.io.is_jpeg(image_bytes),
                 lambda: tf.image.extract_jpeg_shape(image_bytes),
                 lambda: tf.shape(tf.io.decode_image(image_bytes, expand_animations=False)))


def _decode_window(image_bytes, window):
  """Decodes the ``window = [top, left, height, width]`` of an encoded image as RGB uint8."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def decode_other():
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])

  return tf.cond(tf.io.is_jpeg(image_bytes),
                 lambda: tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3),
                 decode_other)


def _random_resized_crop(image_bytes, size: int, seed):
  """A random crop of 8-100% of the area, aspect ratio in [3/4, 4/3], resized to ``size``.

  Falls back to the whole image when 10 attempts find no such crop.
  References: Szegedy et al. 2015, "Going Deeper with Convolutions", sec. 6.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      _image_shape(image_bytes), tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
      seed=seed, min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
  return tf.image.resize(_decode_window(image_bytes, window), [size, size])


def _center_crop(image_bytes, size: int):
  """The central square of ``size / (size + 32)`` of the shorter side, resized to ``size``."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  shape = _image_shape(image_bytes)
  height, width = shape[0], shape[1]
  side = tf.cast(size / (size + 32) * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
  side = tf.maximum(side, 1)
  window = tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])
  return tf.image.resize(_decode_window(image_bytes, window), [size, size])


def prefetch_to_device(iterator: Iterable[Any], size: int = 2,
                       sharding: Any = None) -> Iterator[Any]:
  """Yields the batches of ``iterator`` as device arrays, keeping ``size`` transfers in flight.

  ``jax.device_put`` is asynchronous, so the next batches copy to the device while the current
  step runs. With a ``sharding`` (e.g. ``NamedSharding(mesh, P("data"))``), each batch is laid out
  by it; on several processes each process passes its local batch and gets the global array
  (``jax.make_array_from_process_local_data``).

  References: the Flax ImageNet example's ``prefetch_to_device`` (same idea, for pmap).
  """
  import jax  # pylint: disable=g-import-not-at-top

  if size < 1:
    raise ValueError(f"prefetch size must be >= 1, got {size}.")
  if sharding is not None and jax.process_count() > 1:
    put = lambda x: jax.make_array_from_process_local_data(sharding, x)
  else:
    put = lambda x: jax.device_put(x, sharding)
  iterator = iter(iterator)
  queue = collections.deque(jax.tree.map(put, b) for b in itertools.islice(iterator, size))
  while queue:
    batch = queue.popleft()
    queue.extend(jax.tree.map(put, b) for b in itertools.islice(iterator, 1))
    yield batch


# ---------------------------------------------------------------------------------------------
# tfds plumbing.


def _canonical(name: str) -> str:
  return "digits" if name == _TFDS_NAMES["digits"] else name


def _import_tfds(name: str, data_dir: Any):
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DatasetNotAvailableError(
        f"Dataset {name!r} needs tensorflow_datasets, which is not installed here "
        f"(pip install tensorflow-datasets tensorflow-cpu), or point data_dir (now "
        f"{data_dir!r}) at {_NPZ_LAYOUT}.") from e
  return tfds


def _tensorflow():
  """TensorFlow with its GPUs hidden, so tf.data leaves the accelerator's memory to JAX."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow already initialised its devices.
    pass
  return tf


def _builder(tfds, name: str, data_dir: Any):
  data_dir = None if data_dir is None else os.fspath(os.path.expanduser(data_dir))
  if _canonical(name) == "digits":
    from jaxcnn.data import digits  # pylint: disable=g-import-not-at-top

    return digits.JaxcnnDigits(data_dir=data_dir)
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f"Unknown dataset {name!r}. Known datasets: {', '.join(names())}; any "
                     f"tfds image-classification dataset name works as well.") from None


def _prepare(builder, name: str, data_dir: Any) -> None:
  """``builder.download_and_prepare()``, failing fast with instructions where it cannot."""
  if builder.is_prepared():
    return
  offline = not _network_available()
  try:
    with _fail_fast_downloads(offline):
      builder.download_and_prepare()
  except (OSError, AssertionError, _download_error()) as e:
    raise DatasetNotAvailableError(_not_available_message(builder, name, data_dir, e,
                                                          offline)) from e


def _network_available() -> bool:
  """Whether tfds's download host is reachable (assumed so when a proxy is configured)."""
  if any(os.environ.get(v) for v in _PROXY_VARS):
    return True
  try:
    socket.create_connection(_PROBE_HOST, timeout=3).close()
    return True
  except OSError:
    return False


@contextlib.contextmanager
def _fail_fast_downloads(offline: bool):
  """Without network, turn off tfds's download retries (minutes of backoff) so it fails at once."""
  if not offline:
    yield
    return
  from unittest import mock  # pylint: disable=g-import-not-at-top

  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top

  if not hasattr(downloader, "MAX_RETRIES"):
    yield
    return
  with mock.patch.object(downloader, "MAX_RETRIES", 0):
    yield


def _download_error() -> type[Exception]:
  from tensorflow_datasets.core.download import util  # pylint: disable=g-import-not-at-top

  return util.DownloadError


def _not_available_message(builder, name: str, data_dir: Any, error: Exception,
                           offline: bool) -> str:
  tfds_name = builder.name
  target = data_dir if data_dir is not None else "~/tensorflow_datasets"
  lines = [f"Dataset {name!r} is not prepared in {builder.data_dir} and tfds could not "
           f"prepare it: {type(error).__name__}: {str(error).splitlines()[0][:300]}"]
  if offline:
    lines.append(f"This machine has no network access ({_PROBE_HOST[0]} is unreachable).")
  if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
    lines.append(f"{tfds_name} needs a manual download into {target}/downloads/manual: "
                 f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
  lines.append("To provide it:")
  lines.append(f"  - on a machine with internet run `tfds build {tfds_name} --data_dir DIR`, "
               f"copy DIR here and pass data_dir=DIR (or copy DIR's contents into {target}); or")
  lines.append(f"  - pass as data_dir {_NPZ_LAYOUT}.")
  return "\n".join(lines)


def _npz_info(name: str, files: Mapping[str, os.PathLike]) -> DatasetInfo:
  """DatasetInfo of local ``.npz`` splits from array headers, the labels and one decoded image."""
  num_examples, max_label, image_shape = {}, -1, None
  for split, path in files.items():
    shapes = local.npz_shapes(path)
    if "labels" not in shapes:
      raise ValueError(f"{path} has no 'labels' array (it has {sorted(shapes)}).")
    num_examples[split] = shapes["labels"][0]
    if image_shape is None and "images" in shapes:
      image_shape = shapes["images"][1:]
    with np.load(path) as f:
      labels = f["labels"]
      max_label = max(max_label, int(labels.max())) if labels.size else max_label
      encoded_key = next((k for k in local.ENCODED_KEYS if k in shapes), None)
      if image_shape is None and encoded_key and labels.size:
        offsets = f["offsets"][:2]
        first = f[encoded_key][offsets[0]:offsets[1]]
        image_shape = local.decode_images(first, offsets - offsets[0], num_threads=1).shape[1:]
  image_shape = tuple(int(d) for d in image_shape or ())
  if len(image_shape) == 2:
    image_shape = (*image_shape, 1)
  known = KNOWN.get(_canonical(name))
  num_classes = known.num_classes if known else max_label + 1
  return DatasetInfo(num_classes, image_shape, num_examples)
