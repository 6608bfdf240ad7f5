"""Local image data without tfds: in-memory arrays and ``.npz`` files.

Every source returns the same in-memory form as :func:`jaxcnn.data.datasets.load`: a dict with
``"image"``, uint8 ``(N, H, W, C)``, and ``"label"``, int32 ``(N,)``.

An ``.npz`` file holds one split in one of two layouts (the layout of ``../shared/data``):

* raw: ``images`` uint8 ``(N, H, W)`` or ``(N, H, W, C)`` and ``labels`` integer ``(N,)``;
* encoded: ``jpeg`` (or ``encoded``) uint8 ``(total_bytes,)``, the JPEG or PNG files back to back,
  ``offsets`` integer ``(N + 1,)`` (image ``i`` is ``jpeg[offsets[i]:offsets[i + 1]]``), and
  ``labels`` integer ``(N,)``. Any format Pillow reads works; all images must have one shape.

A dataset directory holds one file per split: ``train.npz``, ``test.npz``, ... Decoding an
encoded split (CIFAR-10's 60,000 JPEGs take about 10-15 s on one core) runs on a thread pool,
and the decoded array is cached under ``$JAXCNN_CACHE_DIR`` (default ``~/.cache/jaxcnn``),
keyed by the file's path, size and modification time; the data directory is never written to.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ENCODED_KEYS = ("jpeg", "encoded")


def from_arrays(images: Any, labels: Any) -> dict[str, np.ndarray]:
  """Validates in-memory arrays and returns ``{"image": uint8 NHWC, "label": int32}``.

  Args:
    images: uint8 ``(N, H, W)`` (a channel axis is added) or ``(N, H, W, C)``.
    labels: integer ``(N,)``, non-negative.
  """
  images = np.asarray(images)
  labels = np.asarray(labels)
  if images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 (0..255), got dtype {images.dtype}; scale and cast "
                     f"them first, e.g. np.round(x * 255).astype(np.uint8).")
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4:
    raise ValueError(f"images must have shape (N, H, W) or (N, H, W, C), got {images.shape}.")
  if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
    raise ValueError(f"labels must have shape ({images.shape[0]},) to match images, "
                     f"got {labels.shape}.")
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {labels.dtype}.")
  if labels.size and labels.min() < 0:
    raise ValueError(f"labels must be >= 0, got minimum {labels.min()}.")
  return {"image": images, "label": labels.astype(np.int32)}


def npz_splits(data_dir: str | os.PathLike, name: str) -> dict[str, Path]:
  """Split name -> file of every ``.npz`` split in ``data_dir`` or ``data_dir/name``."""
  data_dir = Path(data_dir).expanduser()
  for folder in (data_dir, data_dir / name):
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if files:
      return {f.stem: f for f in files}
  return {}


def npz_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
  """Array name -> shape of every array in an ``.npz`` file, read from headers only."""
  shapes = {}
  with zipfile.ZipFile(Path(path).expanduser()) as archive:
    for member in archive.namelist():
      if member.endswith(".npy"):
        with archive.open(member) as fp:
          version = np.lib.format.read_magic(fp)
          read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                         else np.lib.format.read_array_header_2_0)
          shapes[member[:-4]] = tuple(read_header(fp)[0])
  return shapes


def load_npz(path: str | os.PathLike, *, cache: bool = True) -> dict[str, np.ndarray]:
  """Reads one split from an ``.npz`` file in the raw or encoded layout (module docstring).

  Args:
    path: the ``.npz`` file.
    cache: keep decoded images of an encoded file under the cache directory and reuse them.
  """
  path = Path(path).expanduser()
  with np.load(path) as f:
    keys = set(f.files)
    if "labels" not in keys:
      raise ValueError(f"{path} has no 'labels' array (it has {sorted(keys)}).")
    labels = f["labels"]
    if "images" in keys:
      return from_arrays(f["images"], labels)
    encoded_key = next((k for k in ENCODED_KEYS if k in keys), None)
    if encoded_key is None or "offsets" not in keys:
      raise ValueError(f"{path} must hold 'images' and 'labels', or 'jpeg' (or 'encoded'), "
                       f"'offsets' and 'labels'; it has {sorted(keys)}.")
    cache_file = _cache_file(path) if cache else None
    if cache_file is not None and cache_file.is_file():
      images = np.load(cache_file)
    else:
      images = decode_images(f[encoded_key], f["offsets"])
      if cache_file is not None:
        _save_atomic(cache_file, images)
  return from_arrays(images, labels)


def decode_images(encoded: np.ndarray, offsets: np.ndarray, *,
                  num_threads: int | None = None) -> np.ndarray:
  """Decodes back-to-back JPEG/PNG files into one uint8 ``(N, H, W, C)`` array with Pillow.

  Grayscale images get ``C = 1``, colour ones ``C = 3`` (palette and alpha images are converted
  to RGB). Images are decoded in chunks on ``num_threads`` threads (default: the CPU count,
  at most 16); Pillow releases the GIL while decoding.
  """
  encoded = np.asarray(encoded)
  offsets = np.asarray(offsets)
  if encoded.dtype != np.uint8 or encoded.ndim != 1:
    raise ValueError(f"encoded bytes must be a uint8 vector, got {encoded.dtype} {encoded.shape}.")
  if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != encoded.size \
      or np.any(np.diff(offsets) <= 0):
    raise ValueError(f"offsets must rise strictly from 0 to len(encoded)={encoded.size} "
                     f"(N + 1 entries); got {offsets.size} entries ending at "
                     f"{offsets[-1] if offsets.size else None}.")
  n = offsets.size - 1
  buffer = memoryview(encoded)
  decode = lambda i: _decode_one(buffer[offsets[i]:offsets[i + 1]], i)
  if n == 0:
    return np.zeros((0, 0, 0, 0), np.uint8)
  first = decode(0)
  images = np.empty((n, *first.shape), np.uint8)
  images[0] = first

  def decode_range(lo: int, hi: int) -> None:
    for i in range(lo, hi):
      image = decode(i)
      if image.shape != first.shape:
        raise ValueError(f"Image {i} has shape {image.shape}, image 0 has {first.shape}; "
                         f"all images of a split must have one shape.")
      images[i] = image

  num_threads = num_threads or min(os.cpu_count() or 1, 16)
  bounds = np.linspace(1, n, 4 * num_threads + 1).astype(int)
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    for future in [pool.submit(decode_range, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]:
      future.result()
  return images


def _decode_one(data: memoryview, index: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    image = Image.open(io.BytesIO(data))
    if image.mode not in ("L", "RGB"):
      image = image.convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
  except Exception as e:  # Pillow raises several types for corrupt data.
    raise ValueError(f"Cannot decode image {index}: {e}") from e
  return array[..., None] if array.ndim == 2 else array


def cache_dir() -> Path:
  """Where decoded arrays are cached: ``$JAXCNN_CACHE_DIR`` or ``~/.cache/jaxcnn``."""
  return Path(os.environ.get("JAXCNN_CACHE_DIR", "~/.cache/jaxcnn")).expanduser()


def _cache_file(path: Path) -> Path:
  stat = path.stat()
  key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|decoded-v1"
  return cache_dir() / "decoded" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"


def _save_atomic(file: Path, array: np.ndarray) -> None:
  """Writes ``array`` to ``file`` via a temporary file; silently skips unwritable locations."""
  tmp_name = None
  try:
    file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=file.parent, suffix=".tmp", delete=False) as tmp:
      tmp_name = tmp.name
      np.save(tmp, array)
    os.replace(tmp_name, file)
  except OSError:
    if tmp_name is not None and os.path.exists(tmp_name):
      os.unlink(tmp_name)
