"""Datasets: tfds read through ArrayRecord and Grain, the offline ``digits``, local ``.npz`` data.

Small datasets load whole into memory as ``{"image": uint8 (N, H, W, C), "label": int32 (N,)}``
(put them on the accelerator once and augment them there with :mod:`jaxcnn.data.augment`)::

  train = datasets.load("cifar10", "train")          # tfds: prepares on first use, then reads
  test = datasets.load("mnist", "test", data_dir="../shared/data/mnist")   # local .npz files
  digits = datasets.load("digits")                    # offline: scikit-learn's digits via tfds

Large ones (``imagenette``, ``imagenet2012``) stream host batches through a Grain pipeline over
the random-access ArrayRecord files (global shuffling from a seed, random-resized crop and flip
or center crop, resize; reader threads or worker processes), whose iterator state checkpoints,
and :func:`prefetch_to_device` keeps the next batches in flight to the device::

  it = datasets.stream("imagenette", "train", batch_size=128, num_workers=8)
  batches = prefetch_to_device(it)
  state = it.get_state()                               # later: it.set_state(state)

``load`` behaves like ``tfds.load``: the dataset is prepared into ``data_dir`` (default tfds's,
``~/tensorflow_datasets``) on first use where the network allows, here in tfds's ArrayRecord
format, and read from there after through ``as_data_source`` (:func:`data_source`). Nothing here
imports TensorFlow: it is the optional ``tf`` extra (``pip install 'jaxcnn[tf]'``), needed only
by the tfds builders that use it to prepare their data (a :class:`TensorFlowRequiredError` says
so) and to read copies prepared earlier as TFRecord files. If ``data_dir`` holds
``{split}.npz`` files (or ``{name}/{split}.npz``) in the layout of :mod:`jaxcnn.data.local`,
those are read instead, without tfds. A dataset that is neither prepared nor downloadable
raises :class:`DatasetNotAvailableError`, saying how to provide it.

References: https://www.tensorflow.org/datasets/overview (``tfds.load``, ``tfds.data_source``);
https://google-grain.readthedocs.io (Grain); Szegedy et al. 2015, "Going Deeper with
Convolutions" (random-resized crop for ImageNet).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import importlib.util
import itertools
import os
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from jaxcnn.data import local


class DatasetNotAvailableError(FileNotFoundError):
  """The dataset is not prepared in ``data_dir`` and cannot be downloaded here."""


class TensorFlowRequiredError(ImportError):
  """A tfds builder needs TensorFlow to prepare its data, and TensorFlow (the ``tf`` extra) is
  not installed."""


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
_FILE_FORMAT = "array_record"  # random access, read without TensorFlow
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

  Reads the split's ArrayRecord files through :func:`data_source`, decoding on a thread pool.

  Args:
    name: ``"digits"``, ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``, or any
      tfds image-classification dataset with fixed-size images.
    split: a split name; through tfds also a slice such as ``"train[:90%]"``. Local ``.npz``
      data takes plain split names (the file names).
    data_dir: a folder of ``.npz`` splits (read directly), or tfds's data directory (default
      ``~/tensorflow_datasets``), where the dataset is prepared on first use.

  Raises:
    DatasetNotAvailableError: not prepared in ``data_dir`` and not downloadable here.
    TensorFlowRequiredError: preparing the dataset needs TensorFlow, which is not installed.
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
  try:
    source = data_source(name, split, data_dir=data_dir)
  except _TFRecordOnly:  # prepared by an older tfds run as TFRecord: only tf.data reads it
    if importlib.util.find_spec("tensorflow") is None:
      raise
    return _load_tfrecord(name, split, data_dir)
  return read_all(source)


def data_source(name: str, split: str = "train", *,
                data_dir: str | os.PathLike | None = None) -> Sequence[dict[str, Any]]:
  """A random-access view of a split: ``source[i]`` is example ``i`` as NumPy (decoded image).

  The dataset is prepared in tfds's ArrayRecord format on first use (``download_and_prepare``)
  and read with ``tfds`` ``as_data_source`` (what ``tfds.data_source`` does), without
  TensorFlow. This is the source of :func:`load` and :func:`stream` (and any Grain pipeline).

  Args:
    name: a tfds dataset name, or ``"digits"``.
    split: split name or slice, e.g. ``"train"``, ``"validation[:10%]"``.
    data_dir: tfds data directory (default tfds's).

  Raises:
    DatasetNotAvailableError: not prepared in ``data_dir`` and not downloadable here.
    TensorFlowRequiredError: preparing the dataset needs TensorFlow, which is not installed.
    ValueError: unknown name or split.
  """
  tfds = _import_tfds(name, data_dir)
  builder = _builder(tfds, name, data_dir)
  _prepare(builder, name, data_dir)
  try:
    return builder.as_data_source(split=split)
  except NotImplementedError as e:  # prepared as TFRecord only: no random access
    raise _tfrecord_only(builder, name, data_dir) from e


def read_all(source: Sequence[Mapping[str, Any]], *, num_threads: int | None = None,
             chunk_size: int = 1024) -> dict[str, np.ndarray]:
  """Every example of a random-access source as ``{"image": uint8 NHWC, "label": int32}``.

  Chunks of ``chunk_size`` examples are read and decoded on ``num_threads`` threads (default: the
  CPU count, at most 8); decoding (Pillow or OpenCV) releases the GIL.
  """
  n = len(source)
  if n == 0:
    return local.from_arrays(np.zeros((0, 1, 1, 1), np.uint8), np.zeros(0, np.int32))
  get = lambda keys: [source[k] for k in keys]
  bounds = list(range(0, n, chunk_size)) + [n]
  chunks = [range(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
  num_threads = num_threads or min(os.cpu_count() or 1, 8)
  if len(chunks) == 1 or num_threads == 1:
    examples = [e for chunk in chunks for e in get(list(chunk))]
  else:
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
      examples = [e for part in pool.map(lambda c: get(list(c)), chunks) for e in part]
  return local.from_arrays(np.stack([np.asarray(e["image"]) for e in examples]),
                           np.array([e["label"] for e in examples]))


def stream(name: str, split: str = "train", *, batch_size: int,
           data_dir: str | os.PathLike | None = None, image_size: int = 224, train: bool = True,
           seed: int = 0, num_workers: int | None = 0, num_threads: int = 16,
           num_epochs: int | None = 1) -> Any:
  """Streams host batches ``{"image": uint8 (B, S, S, 3), "label": int32 (B,)}`` through Grain.

  The iterator of :func:`grain_batches` (see there for crops, shuffling and sharding): a
  ``grain.DatasetIterator``, so ``it.get_state()`` is a small JSON-able dict that
  ``it.set_state(state)`` resumes from exactly (checkpoint it beside the model).

  Args:
    name, split, batch_size, data_dir, image_size, train, seed, num_epochs: as for
      :func:`grain_batches`.
    num_workers: worker processes reading and augmenting (Grain's ``mp_prefetch``); 0 or None
      reads in this process on ``num_threads`` threads.
    num_threads: reader threads (per worker process, if any).
  """
  import grain  # pylint: disable=g-import-not-at-top

  num_workers = num_workers or 0
  if num_workers < 0 or num_threads < 1:
    raise ValueError(f"num_workers must be >= 0 and num_threads >= 1, got {num_workers}, "
                     f"{num_threads}.")
  ds = grain_batches(name, split, batch_size=batch_size, data_dir=data_dir,
                     image_size=image_size, train=train, seed=seed, num_epochs=num_epochs)
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                            prefetch_buffer_size=num_threads))
  return iter(prefetch_in_processes(ds, num_workers))


def prefetch_in_processes(ds: Any, num_workers: int) -> Any:
  """``ds.mp_prefetch`` on ``num_workers`` processes (0: ``ds`` itself).

  Grain reads absl flags in its workers; a program that has not parsed its flags (a script, a
  notebook; ``absl.app.run`` does) gets their defaults.
  """
  if not num_workers:
    return ds
  import grain  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))


def grain_batches(name: str, split: str = "train", *, batch_size: int,
                  data_dir: str | os.PathLike | None = None, image_size: int = 224,
                  train: bool = True, seed: int = 0, num_epochs: int | None = 1) -> Any:
  """A ``grain.MapDataset`` of batches: ``ds[i]`` is batch ``i``, computed on demand.

  Training batches are globally shuffled (a fresh permutation each epoch, from ``seed``),
  cropped at random (:func:`random_resized_crop_window`), flipped at random, resized to ``image_size``
  and batched with the remainder dropped; each example's randomness is seeded by ``seed`` and its
  position, so a pipeline is reproducible and can start at any batch. Evaluation batches are
  center crops (:func:`center_crop_window`) in the split's order and keep the last partial batch. Under
  ``jax.process_count() > 1`` every process reads its own shard of the examples.

  Args:
    name: a tfds dataset with images and labels (``"imagenette"``, ``"imagenet2012"``, ...).
    split: split name or slice, e.g. ``"train"``, ``"validation[:10%]"``.
    batch_size: examples per batch (per process).
    data_dir: tfds data directory (default tfds's).
    image_size: side of the square output images.
    train: training augmentation, shuffling and dropped remainder, or evaluation crops.
    seed: seed of the order and the crops (0 .. 2**32 - 1).
    num_epochs: passes over the split; None repeats forever.

  References: https://google-grain.readthedocs.io (MapDataset: shuffle, random_map, batch).
  """
  import grain  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  if batch_size < 1 or image_size < 1:
    raise ValueError(f"batch_size and image_size must be >= 1, got {batch_size}, {image_size}.")
  if not 0 <= seed < 2**32:
    raise ValueError(f"seed must be in [0, 2**32), got {seed}.")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be >= 1 or None (forever), got {num_epochs}.")
  ds = grain.MapDataset.source(data_source(name, split, data_dir=data_dir))
  if jax.process_count() > 1:
    ds = ds[jax.process_index()::jax.process_count()]
  if train:
    ds = ds.shuffle(seed=seed)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  if train:
    ds = ds.random_map(functools.partial(_train_example, size=image_size), seed=seed)
  else:
    ds = ds.map(functools.partial(_eval_example, size=image_size))
  return ds.batch(batch_size, drop_remainder=train)


def random_resized_crop_window(rng: np.random.Generator, height: int, width: int, *,
                               area: tuple[float, float] = (0.08, 1.0),
                               aspect_ratio: tuple[float, float] = (3 / 4, 4 / 3),
                               attempts: int = 10) -> tuple[int, int, int, int]:
  """``(top, left, height, width)`` of a random crop of ``area`` of the image's area whose
  aspect ratio (width / height) is log-uniform in ``aspect_ratio``.

  Falls back to the whole image when ``attempts`` draws find no crop that fits.
  References: Szegedy et al. 2015, "Going Deeper with Convolutions", sec. 6.
  """
  log_ratio = np.log(aspect_ratio)
  for _ in range(attempts):
    target = height * width * rng.uniform(*area)
    ratio = np.exp(rng.uniform(*log_ratio))
    w, h = int(round(np.sqrt(target * ratio))), int(round(np.sqrt(target / ratio)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  return 0, 0, height, width


def center_crop_window(height: int, width: int, size: int) -> tuple[int, int, int, int]:
  """``(top, left, side, side)``: the central square of ``size / (size + 32)`` of the shorter
  side (224 of 256 for ``size=224``, as in the ResNet evaluation)."""
  side = max(1, int(size / (size + 32) * min(height, width)))
  return (height - side + 1) // 2, (width - side + 1) // 2, side, side


def crop_and_resize(image: np.ndarray, window: tuple[int, int, int, int],
                    size: int) -> np.ndarray:
  """The ``(top, left, height, width)`` window of a uint8 ``(H, W, C)`` image, resized to
  ``(size, size, C)`` with Pillow's bilinear filter (antialiased when shrinking)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  image = np.asarray(image)
  top, left, h, w = window
  crop = image[top:top + h, left:left + w]
  if crop.shape[:2] == (size, size):
    return np.ascontiguousarray(crop)
  channels = crop.shape[-1]
  pil = Image.fromarray(crop[..., 0] if channels == 1 else crop)
  out = np.asarray(pil.resize((size, size), Image.BILINEAR))
  return out[..., None] if channels == 1 else out


def _train_example(example: Mapping[str, Any], rng: np.random.Generator, *,
                   size: int) -> dict[str, np.ndarray]:
  image = _rgb(example["image"])
  image = crop_and_resize(image, random_resized_crop_window(rng, *image.shape[:2]), size)
  if rng.random() < 0.5:
    image = image[:, ::-1]
  return {"image": np.ascontiguousarray(image), "label": np.int32(example["label"])}


def _eval_example(example: Mapping[str, Any], *, size: int) -> dict[str, np.ndarray]:
  image = _rgb(example["image"])
  image = crop_and_resize(image, center_crop_window(*image.shape[:2], size), size)
  return {"image": image, "label": np.int32(example["label"])}


def _rgb(image: Any) -> np.ndarray:
  image = np.asarray(image, np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


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
        f"(pip install tensorflow-datasets), or point data_dir (now {data_dir!r}) at "
        f"{_NPZ_LAYOUT}.") from e
  return tfds


def _tensorflow(name: str, purpose: str):
  """TensorFlow with its GPUs hidden (tf.data leaves the accelerator's memory to JAX), or a
  :class:`TensorFlowRequiredError` saying which extra to install."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise TensorFlowRequiredError(
        f"{purpose} {name!r} needs TensorFlow, which is not installed: pip install "
        f"'jaxcnn[tf]' (TensorFlow is an optional extra of jaxcnn).") from e
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow already initialised its devices.
    pass
  return tf


def _builder(tfds, name: str, data_dir: Any):
  """The tfds builder of ``name``; a prepared copy keeps the file format it was written in."""
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
  """``builder.download_and_prepare`` into ArrayRecord files, failing fast with instructions
  where it cannot (no network, no TensorFlow for a builder that needs it)."""
  if builder.is_prepared():
    return
  offline = not _network_available()
  try:
    with _fail_fast_downloads(offline):
      builder.download_and_prepare(file_format=_FILE_FORMAT)
  except ImportError as e:
    if not _missing_tensorflow(e):
      raise
    raise TensorFlowRequiredError(
        f"Preparing {name!r} with tfds needs TensorFlow (its builder uses it to decode or encode "
        f"the downloaded files), which is not installed: pip install 'jaxcnn[tf]'. Reading it "
        f"once prepared does not: prepare it on any machine with `tfds build "
        f"{builder.name} --data_dir DIR --file_format array_record` and pass data_dir=DIR.") from e
  except (OSError, AssertionError, _download_error()) as e:
    raise DatasetNotAvailableError(_not_available_message(builder, name, data_dir, e,
                                                          offline)) from e


def _missing_tensorflow(error: BaseException) -> bool:
  """Whether an ImportError (or one it was raised from) is TensorFlow's absence."""
  while error is not None:
    if isinstance(error, ImportError) and (
        (error.name or "").split(".")[0] == "tensorflow" or "'tensorflow'" in str(error)):
      return True
    error = error.__cause__ or error.__context__
  return False


class _TFRecordOnly(DatasetNotAvailableError):
  """Prepared by an earlier tfds run as TFRecord files, which only TensorFlow reads."""


def _tfrecord_only(builder, name: str, data_dir: Any) -> _TFRecordOnly:
  return _TFRecordOnly(
      f"Dataset {name!r} is prepared in {builder.data_dir} as TFRecord files, which only "
      f"TensorFlow reads (jaxcnn reads ArrayRecord, without TensorFlow). Convert it once: "
      f"`tfds convert_format --dataset_dir {builder.data_dir} --out_file_format array_record` "
      f"(with TensorFlow: pip install 'jaxcnn[tf]'), or delete that folder to prepare it again; "
      f"datasets.load() reads it as it is when TensorFlow is installed.")


def _load_tfrecord(name: str, split: str, data_dir: Any) -> dict[str, np.ndarray]:
  """The old reader of TFRecord copies, through tf.data (needs the ``tf`` extra)."""
  tfds = _import_tfds(name, data_dir)
  _tensorflow(name, "Reading the TFRecord copy of")
  builder = _builder(tfds, name, data_dir)
  # Batches, not batch_size=-1: that batches by the split sizes recorded at preparation.
  ds = builder.as_dataset(split=split, batch_size=_LOAD_BATCH_SIZE, shuffle_files=False)
  batches = list(tfds.as_numpy(ds))
  if not batches:
    return local.from_arrays(np.zeros((0, *builder.info.features["image"].shape), np.uint8),
                             np.zeros(0, np.int32))
  return local.from_arrays(np.concatenate([b["image"] for b in batches]),
                           np.concatenate([b["label"] for b in batches]))


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
  lines.append(f"  - on a machine with internet run `tfds build {tfds_name} --data_dir DIR "
               f"--file_format array_record` (with TensorFlow where its builder needs it: "
               f"pip install 'jaxcnn[tf]'), "
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
