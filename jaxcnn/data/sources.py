"""Where training batches come from: device-resident splits, or a stream; and named subsets.

A *source* gives the training loop two things, with one interface for both kinds of data:

* ``train_batches(data_keys, epoch, start, stop, batch_size)``: the batches ``start .. stop - 1``
  of an epoch, as device arrays;
* ``eval_batches(split)``: padded evaluation batches with a ``mask`` (1 real, 0 padding).

:class:`InMemory` puts small data sets (digits, MNIST, CIFAR) on the devices once, as uint8,
replicated; every batch is then a jitted gather on device, so no pixels cross the host between
steps, and one source serves any number of runs (a sweep, a search, a study's grid) and any batch
size. Each model of a population draws its own epoch order from its data key (``(M, 2)`` keys
give ``(M, B, ...)`` batches) unless ``shared_order`` is set (one order, ``(B, ...)`` batches
for every model). :class:`Streamed` reads large tfds data sets (imagenette, imagenet2012) batch by
batch from their ArrayRecord files through a Grain pipeline
(:func:`jaxcnn.data.datasets.grain_batches`); all models see the same batches.

:func:`subsets` loads random, disjoint subsets of a named data set by size and seed (what every
study trains on).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

Split = dict[str, np.ndarray]


def check_split(name: str, split: Mapping[str, Any]) -> Split:
  """``{"image": (N, H, W, C), "label": int32 (N,)}``; (N, H, W) grayscale gets a channel axis."""
  images, labels = np.asarray(split["image"]), np.asarray(split["label"])
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
    raise ValueError(f"Split {name!r} must hold images (N, H, W, C) and labels (N,), got "
                     f"{images.shape} and {labels.shape}.")
  return {"image": images, "label": labels.astype(np.int32)}


def put(x: Any, sharding: NamedSharding) -> jax.Array:
  """Places an array as a global array laid out by ``sharding`` (across hosts: every host holds
  all of it); on one process a device array moves device to device, not through the host."""
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def pad(batch: Split, size: int) -> Split:
  """Pads a host batch to ``size`` examples, with ``mask`` 1 for real and 0 for padded ones."""
  n = len(batch["label"])
  fill = lambda a: np.concatenate([a, np.zeros((size - n, *a.shape[1:]), a.dtype)])
  return {"image": fill(batch["image"]), "label": fill(batch["label"]),
          "mask": (np.arange(size) < n).astype(np.float32)}


def default_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """One mesh axis ``"data"`` over ``devices`` (default: every device of every host)."""
  return Mesh(np.array(list(devices) if devices is not None else jax.devices()), ("data",))


def batch_sharding(mesh: Mesh, *, model_axis: bool = False) -> NamedSharding:
  """A batch split along its example axis over the mesh's ``"data"`` axis."""
  return NamedSharding(mesh, P(None, "data") if model_axis else P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  """A value held whole on every device (the state, the metrics, device-resident data)."""
  return NamedSharding(mesh, P())


def steps_per_epoch(num_train: int, batch_size: int) -> int:
  """Whole batches of ``batch_size`` in ``num_train`` examples; an error if there is none."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  steps = num_train // batch_size
  if steps == 0:
    raise ValueError(f"batch_size={batch_size} exceeds the {num_train} training examples.")
  return steps


class InMemory:
  """Splits held on the devices as uint8; batches gathered on device by jitted functions.

  Args:
    splits: ``{"train": {"image", "label"}, "val": ..., "test": ...}`` host arrays.
    eval_batch_size: examples per evaluation batch (the last one is padded and masked).
    mesh: the data-parallel mesh (default: all devices).
    shared_order: every model trains on the same batches (one order from the first data key).
  """

  kind = "in_memory"

  def __init__(self, splits: Mapping[str, Mapping[str, Any]], *, eval_batch_size: int = 500,
               mesh: Mesh | None = None, shared_order: bool = False):
    if "train" not in splits:
      raise ValueError(f"The splits need a 'train' split, got {sorted(splits)}.")
    if eval_batch_size < 1:
      raise ValueError(f"eval_batch_size must be >= 1, got {eval_batch_size}.")
    self.mesh = mesh or default_mesh()
    if eval_batch_size % self.mesh.size:
      raise ValueError(f"eval_batch_size={eval_batch_size} must be divisible by the number of "
                       f"devices ({self.mesh.size}).")
    host = {k: check_split(k, v) for k, v in splits.items()}
    rep = replicated(self.mesh)
    self.splits = {k: {f: put(v, rep) for f, v in s.items()} for k, s in host.items()
                   if len(s["label"])}
    self.eval_splits = [k for k in ("val", "test") if k in self.splits]
    self.num_train = len(host["train"]["label"])
    self.input_shape = tuple(host["train"]["image"].shape[1:])
    labels = np.concatenate([s["label"] for s in host.values()])
    self.max_label = int(labels.max()) if labels.size else -1
    self.eval_batch_size = eval_batch_size
    self.shared_order = shared_order

  def sample(self, num_examples: int | None = None) -> np.ndarray:
    """The training images on the host (the first ``num_examples``), e.g. to fit a transform."""
    return np.asarray(self.splits["train"]["image"][:num_examples])

  @functools.cached_property
  def _order(self):
    n = self.num_train

    def order(keys, epoch):  # keys (M, 2): one permutation per model, from (key, epoch)
      keys = keys[:1] if self.shared_order else keys
      return jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n))(keys)

    return jax.jit(order, out_shardings=replicated(self.mesh))

  @functools.lru_cache(maxsize=None)
  def _take(self, batch_size: int):
    if batch_size % self.mesh.size:
      raise ValueError(f"batch_size={batch_size} must be divisible by the number of devices "
                       f"({self.mesh.size}).")

    def take(images, labels, order, index):
      ids = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size, axis=1)
      if self.shared_order:
        ids = ids[0]
      return {"image": images[ids], "label": labels[ids]}

    sharding = batch_sharding(self.mesh, model_axis=not self.shared_order)
    return jax.jit(take, out_shardings=sharding)

  @functools.cached_property
  def _take_eval(self):
    size = self.eval_batch_size

    def take(images, labels, index):
      ids = index * size + jnp.arange(size)
      n = labels.shape[0]
      safe = jnp.minimum(ids, n - 1)
      return {"image": images[safe], "label": labels[safe], "mask": (ids < n).astype(jnp.float32)}

    return jax.jit(take, out_shardings=batch_sharding(self.mesh))

  def steps_per_epoch(self, batch_size: int) -> int:
    """Whole batches in one pass over the training split (the remainder is dropped)."""
    return steps_per_epoch(self.num_train, batch_size)

  def train_batches(self, data_keys: jax.Array, epoch: int, start: int, stop: int,
                    batch_size: int) -> Iterator[dict[str, jax.Array]]:
    """Batches ``start .. stop - 1`` of ``epoch``: ``(M, B, ...)`` for ``(M, 2)`` data keys."""
    if stop > self.steps_per_epoch(batch_size):
      raise ValueError(f"{stop} steps exceed one pass over the {self.num_train} training "
                       f"examples at batch size {batch_size} ({self.steps_per_epoch(batch_size)}).")
    order = self._order(data_keys, epoch)
    take, train = self._take(batch_size), self.splits["train"]
    for position in range(start, stop):
      yield take(train["image"], train["label"], order, position)

  def eval_batches(self, split: str) -> Iterator[dict[str, jax.Array]]:
    """The split in padded batches of ``eval_batch_size`` with a ``mask``."""
    if split not in self.splits:
      raise ValueError(f"No split {split!r}; this source holds {sorted(self.splits)}.")
    data = self.splits[split]
    for index in range(math.ceil(data["label"].shape[0] / self.eval_batch_size)):
      yield self._take_eval(data["image"], data["label"], index)


def epoch_seed(seed: int, epoch: int) -> int:
  """A 31-bit stream seed for ``(seed, epoch)``."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


class Streamed:
  """A tfds data set streamed through Grain from its ArrayRecord files, prefetched to the devices.

  Every model of a population sees the same batches (``shared_order`` is always True). Epoch
  ``e`` is a Grain pipeline (:func:`jaxcnn.data.datasets.grain_batches`) seeded by
  ``(seed, e)``: a global shuffle and per-example crops that depend only on that seed and the
  example's position, so batch ``i`` of an epoch is computed directly (random access) and a
  resumed run continues at its batch without re-reading the ones before it.

  Args:
    name: a tfds data set with images and labels (``"imagenette"``, ``"imagenet2012"``).
    data_dir: tfds data directory (None: tfds's default).
    image_size: side of the square crops.
    seed: the data order's seed.
    eval_batch_size: examples per evaluation batch (the last one padded and masked).
    mesh: the data-parallel mesh (default: all devices).
    num_workers: Grain worker processes per host (0: reader threads in this process).
    num_threads: reader threads (per worker process, if any).
  """

  kind = "streamed"
  shared_order = True

  def __init__(self, name: str, *, data_dir: str | None, image_size: int, seed: int,
               eval_batch_size: int, mesh: Mesh | None = None, num_workers: int = 0,
               num_threads: int = 16):
    from jaxcnn.data import datasets  # pylint: disable=g-import-not-at-top

    self.datasets = datasets
    self.name, self.data_dir, self.image_size, self.seed = name, data_dir, image_size, seed
    self.num_workers, self.num_threads = num_workers, num_threads
    self.mesh = mesh or default_mesh()
    info = datasets.info(name, data_dir=data_dir)
    self.num_train = info.num_examples["train"]
    self.num_classes = info.num_classes
    self.input_shape = (image_size, image_size, info.image_shape[-1])
    names = {"validation": "val", "test": "test"}
    self.eval_splits = [names[k] for k in names if k in info.num_examples]
    self._tfds_split = {v: k for k, v in names.items()}
    self.processes = jax.process_count()
    self.eval_batch_size = eval_batch_size
    self.sharding = batch_sharding(self.mesh)

  def _batches(self, split: str, **kwargs: Any):
    return self.datasets.grain_batches(self.name, split, data_dir=self.data_dir,
                                       image_size=self.image_size, **kwargs)

  def _iterate(self, ds) -> Any:
    """A checkpointable Grain iterator over a MapDataset of host batches."""
    import grain  # pylint: disable=g-import-not-at-top

    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.num_threads,
                                              prefetch_buffer_size=self.num_threads))
    return iter(self.datasets.prefetch_in_processes(ds, self.num_workers))

  def sample(self, num_examples: int) -> np.ndarray:
    """The first ``num_examples`` training images as center crops (deterministic, unshuffled)."""
    size = min(num_examples, 500)
    ds = self._batches("train", batch_size=size, train=False)
    batches = self._iterate(ds[:math.ceil(num_examples / size)])
    return np.concatenate([b["image"] for b in batches])[:num_examples]

  def steps_per_epoch(self, batch_size: int) -> int:
    """Whole batches in one pass over the training split (the remainder is dropped)."""
    return steps_per_epoch(self.num_train, batch_size)

  def train_iterator(self, epoch: int, batch_size: int, start: int = 0,
                     stop: int | None = None) -> Any:
    """Host batches ``start .. stop - 1`` of ``epoch`` (per process), as a Grain iterator whose
    ``get_state()``/``set_state()`` checkpoint and resume it. An epoch longer than one pass
    (``stop`` beyond :meth:`steps_per_epoch`) continues into a reshuffled next pass."""
    ds = self._batches("train", batch_size=batch_size // self.processes, train=True,
                       seed=epoch_seed(self.seed, epoch), num_epochs=None)
    return self._iterate(ds[start:stop])

  def train_batches(self, data_keys: Any, epoch: int, start: int, stop: int,
                    batch_size: int) -> Iterator[dict[str, jax.Array]]:
    """Batches ``start .. stop - 1`` of ``epoch`` on the devices (one order for every model)."""
    del data_keys  # the stream is seeded by (seed, epoch)
    return self.datasets.prefetch_to_device(self.train_iterator(epoch, batch_size, start, stop),
                                            sharding=self.sharding)

  def eval_batches(self, split: str) -> Iterator[dict[str, jax.Array]]:
    """The split in padded batches of ``eval_batch_size`` with a ``mask``."""
    if split not in self.eval_splits:
      raise ValueError(f"No split {split!r}; this source has {self.eval_splits}.")
    size = self.eval_batch_size // self.processes
    batches = self._iterate(self._batches(self._tfds_split[split], batch_size=size, train=False))
    return self.datasets.prefetch_to_device((pad(b, size) for b in batches),
                                            sharding=self.sharding)


def subsets(name: str, sizes: Mapping[str, int], *, seed: int = 0,
            data_dir: str | os.PathLike | None = None) -> dict[str, Split]:
  """Random subsets of a named data set, by size and seed.

  ``sizes`` maps a split name to a number of examples (0 or None: the whole split). ``"train"``
  and ``"test"`` come from the data set's own splits; ``"val"`` (when the data set has none) is
  carved out of the training split, disjoint from the ``"train"`` subset. Each split's order is
  ``np.random.default_rng(seed).permutation``, so the same seed gives the same subsets.

  Args:
    name: a :mod:`jaxcnn.data.datasets` name (``digits``, ``mnist``, ``cifar10``, ...).
    sizes: e.g. ``{"train": 6000, "val": 1000}`` or ``{"train": 1600, "test": 500}``.
    seed: the subsets' seed.
    data_dir: passed to :func:`jaxcnn.data.datasets.load` (``.npz`` folder or tfds's folder).

  Returns:
    ``{split: {"image": uint8 (n, H, W, C), "label": int32 (n,)}}``.
  """
  from jaxcnn.data import datasets  # pylint: disable=g-import-not-at-top

  data_dir = str(data_dir) if data_dir else None
  unknown = set(sizes) - {"train", "val", "test"}
  if unknown:
    raise ValueError(f"Unknown splits {sorted(unknown)}; subsets takes train, val and test.")
  loaded: dict[str, Split] = {}

  def split_data(split: str) -> Split:
    if split not in loaded:
      loaded[split] = check_split(split, datasets.load(name, split, data_dir=data_dir))
    return loaded[split]

  out = {}
  for split in ("train", "val", "test"):
    if split not in sizes:
      continue
    own_val = split == "val" and _has_split(name, "validation", data_dir)
    source = "validation" if own_val else ("train" if split == "val" else split)
    data = split_data(source)
    order = np.random.default_rng(seed).permutation(len(data["label"]))
    if split == "val" and not own_val:
      order = order[int(sizes.get("train") or 0):]  # disjoint from the train subset
      if not sizes.get("train"):
        raise ValueError("A 'val' subset carved from the training split needs a 'train' size.")
    size = int(sizes[split] or len(order))
    if size > len(order):
      raise ValueError(f"{split} subset of {size} examples exceeds the {len(order)} available in "
                       f"{name}'s {source!r} split" + (" (after the train subset)." if
                                                       source != split else "."))
    ids = order[:size]
    out[split] = {"image": data["image"][ids], "label": data["label"][ids]}
  return out


def _has_split(name: str, split: str, data_dir: str | None) -> bool:
  from jaxcnn.data import datasets  # pylint: disable=g-import-not-at-top

  return split in datasets.info(name, data_dir=data_dir).num_examples
