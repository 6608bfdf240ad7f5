"""Fitted input transforms: scaling, centering, standardization, PCA and ZCA whitening.

Fit on the training split only, then apply the same statistics to every split::

  pre = preprocessing.fit("zca(epsilon=1e-2)", x_train)   # NumPy, float64, not jitted
  x = pre(x_batch)                                       # JAX, float32, works under jit/vmap

Every transform is ``x -> ((x - shift) * scale) [@ matrix]``, reshaped to ``output_shape``.
A :class:`Transform` is a pytree: its arrays (``pre.state``) are leaves, its name and shapes are
static, so ``jax.jit(lambda t, x: t(x))(pre, x)`` retraces only for a new name or shape. Save
it with a run as ``np.savez(path, **pre.to_dict())`` and restore it with
``Transform.from_dict(np.load(path))``; ``pre.state`` alone is an orbax-savable pytree.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxcnn.registry import Registry, parse_spec

REGISTRY = Registry("preprocessing transform", factory=False)
register = REGISTRY.register
names = REGISTRY.names

_CHUNK_ELEMENTS = 1 << 22  # rows per pass are chosen so a float64 chunk is ~32 MiB


@struct.dataclass
class Transform:
  """A fitted transform ``x -> ((x - shift) * scale) [@ matrix]`` on examples of ``input_shape``.

  Attributes:
    name: spec that refits the same transform, e.g. ``"pca(k=10, whiten=True, epsilon=1e-05)"``.
    input_shape: shape of one example at fit time, e.g. ``(32, 32, 3)`` or ``(64,)``.
    output_shape: shape of one transformed example (``(k,)`` for PCA, else ``input_shape``).
    state: float32 arrays ``shift`` and ``scale`` (broadcast against one example) and, for
      PCA/ZCA, ``matrix`` of shape ``(prod(input_shape), prod(output_shape))``.
  """

  name: str = struct.field(pytree_node=False)
  input_shape: tuple[int, ...] = struct.field(pytree_node=False)
  output_shape: tuple[int, ...] = struct.field(pytree_node=False)
  state: dict[str, jax.Array]

  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps ``x`` of shape ``(*batch, *input_shape)`` to float32 ``(*batch, *output_shape)``."""
    x = jnp.asarray(x)
    batch_ndim = x.ndim - len(self.input_shape)
    if batch_ndim < 0 or x.shape[batch_ndim:] != self.input_shape:
      raise ValueError(f"Transform {self.name!r} was fitted on examples of shape "
                       f"{self.input_shape}, got input of shape {x.shape}.")
    batch = x.shape[:batch_ndim]
    x = (x.astype(jnp.float32) - self.state["shift"]) * self.state["scale"]
    if "matrix" in self.state:
      x = jnp.matmul(x.reshape(*batch, -1), self.state["matrix"],
                     precision=jax.lax.Precision.HIGHEST)
    return x.reshape(*batch, *self.output_shape)

  def to_dict(self) -> dict[str, np.ndarray]:
    """Flat dict of NumPy arrays (name and shapes included), ready for ``np.savez``."""
    return {"name": np.asarray(self.name), "input_shape": np.asarray(self.input_shape, np.int64),
            "output_shape": np.asarray(self.output_shape, np.int64),
            **{k: np.asarray(v) for k, v in self.state.items()}}

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> Transform:
    """Inverse of :meth:`to_dict`; accepts the ``NpzFile`` returned by ``np.load``."""
    meta = ("name", "input_shape", "output_shape")
    return cls(name=str(d["name"]), input_shape=tuple(int(s) for s in d["input_shape"]),
               output_shape=tuple(int(s) for s in d["output_shape"]),
               state={k: jnp.asarray(d[k], jnp.float32) for k in d if k not in meta})


def fit(spec: str | Callable[[np.ndarray], Transform], x_train: Any) -> Transform:
  """Fits a transform given by a spec (``"pca(k=50, whiten=True)"``) on training data.

  Args:
    spec: a registered name (see :func:`names`), with keyword arguments, or a callable
      ``fn(x_train) -> Transform``.
    x_train: uint8 or float array of images ``(N, H, W, C)`` or vectors ``(N, D)``; the
      training split only, so validation and test data are transformed with its statistics.
  """
  x = np.asarray(x_train)
  if x.ndim < 2 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.number):
    raise ValueError(f"x_train must be a numeric array of shape (N, ...) with N >= 1, "
                     f"got {x.dtype} array of shape {x.shape}.")
  fit_fn = resolve(spec)
  return fit_fn(x)


def resolve(spec: str | Callable[[np.ndarray], Transform]) -> Callable[[np.ndarray], Transform]:
  """The fitting function ``fn(x_train) -> Transform`` of a spec; raises on an unknown name or
  argument (so a config can be checked before any data is loaded)."""
  if callable(spec) and not isinstance(spec, str):
    return spec
  name, args, kwargs = parse_spec(spec)
  fit_fn = REGISTRY.lookup(name)
  params = list(inspect.signature(fit_fn).parameters)[1:]
  if args or set(kwargs) - set(params):
    raise ValueError(f"Bad arguments in preprocessing spec {spec!r}: {name!r} takes keyword "
                     f"arguments {params or 'none'}.")
  return functools.partial(fit_fn, **kwargs)


def _make(name: str, x: np.ndarray, shift, scale, matrix=None, output_shape=None) -> Transform:
  state = {"shift": shift, "scale": scale} | ({} if matrix is None else {"matrix": matrix})
  return Transform(name=name, input_shape=x.shape[1:], output_shape=output_shape or x.shape[1:],
                   state={k: jnp.asarray(v, jnp.float32) for k, v in state.items()})


def _mean_cov(x2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean ``(D,)`` and covariance ``(D, D)`` (divided by N) of the rows, in float64, in chunks."""
  mean = x2d.mean(axis=0, dtype=np.float64)
  cov = np.zeros((x2d.shape[1],) * 2)
  rows = max(1, _CHUNK_ELEMENTS // x2d.shape[1])
  for start in range(0, x2d.shape[0], rows):
    c = x2d[start:start + rows].astype(np.float64) - mean
    cov += c.T @ c
  return mean, cov / x2d.shape[0]


def _eigh_descending(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Eigenvalues (descending, clipped at 0) and eigenvectors with a deterministic sign."""
  eigvals, eigvecs = np.linalg.eigh(cov)
  eigvals, eigvecs = np.clip(eigvals[::-1], 0.0, None), eigvecs[:, ::-1]
  signs = np.sign(eigvecs[np.abs(eigvecs).argmax(axis=0), np.arange(eigvecs.shape[1])])
  return eigvals, eigvecs * signs


@register(name="none")
def none(x: np.ndarray) -> Transform:
  """Identity (cast to float32)."""
  return _make("none", x, 0.0, 1.0)


@register
def scale(x: np.ndarray, low: float | None = None, high: float | None = None) -> Transform:
  """Maps ``[low, high]`` linearly to ``[-1, 1]``.

  The range defaults to the dtype's range for integer data (``[0, 255]`` for uint8) and to the
  training data's min and max for float data.
  """
  if low is None or high is None:
    info = np.iinfo(x.dtype) if np.issubdtype(x.dtype, np.integer) else None
    low = float(info.min if info else x.min()) if low is None else low
    high = float(info.max if info else x.max()) if high is None else high
  if not high > low:
    raise ValueError(f"scale needs high > low, got low={low}, high={high}.")
  return _make(f"scale(low={low!r}, high={high!r})", x, (low + high) / 2, 2 / (high - low))


@register
def mean_image(x: np.ndarray) -> Transform:
  """Subtracts the mean training example (per pixel and channel).

  References: Krizhevsky et al. 2012, "ImageNet classification with deep convolutional neural
  networks", Sec. 2; CS231n notes, "Data preprocessing".
  """
  return _make("mean_image", x, x.mean(axis=0, dtype=np.float64), 1.0)


@register
def channel_mean(x: np.ndarray) -> Transform:
  """Subtracts the per-channel (last axis) mean over examples and positions.

  References: Simonyan & Zisserman 2014, "Very deep convolutional networks for large-scale image
  recognition", Sec. 2.1.
  """
  mean, _ = _mean_cov(x.reshape(-1, x.shape[-1]))
  return _make("channel_mean", x, mean, 1.0)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@register
def normalize(x: np.ndarray, mean: Any = None, std: Any = None) -> Transform:
  """Fixed per-channel ``(x / 255 - mean) / std``, not fitted: the input normalization that
  pretrained weights expect. The defaults are ImageNet's (as torchvision and timm use); for
  images with other than 3 channels, their averages (0.449, 0.226).

  References: torchvision's ``transforms.Normalize`` and its ImageNet weights' documented
  mean/std.
  """
  channels = x.shape[-1]
  default = lambda v: v if channels == 3 else (float(np.mean(v)),) * channels  # noqa: E731
  mean = np.atleast_1d(np.asarray(default(IMAGENET_MEAN) if mean is None else mean, np.float64))
  std = np.atleast_1d(np.asarray(default(IMAGENET_STD) if std is None else std, np.float64))
  mean, std = np.broadcast_to(mean, std.shape) if mean.size == 1 else mean, std
  if mean.shape not in ((1,), (channels,)) or std.shape not in ((1,), (channels,)) or \
      not np.all(std > 0):
    raise ValueError(f"normalize needs a mean and a positive std per channel ({channels}), "
                     f"got mean={mean.tolist()}, std={std.tolist()}.")
  return _make(f"normalize(mean={tuple(mean.tolist())!r}, std={tuple(std.tolist())!r})", x,
               255.0 * mean, 1.0 / (255.0 * std))


@register
def standardize(x: np.ndarray) -> Transform:
  """Per-channel (last axis) zero mean and unit standard deviation; constant channels only centered.

  References: He et al. 2015, "Deep residual learning for image recognition" (ResNet; its common
  training pipelines standardize each channel); CS231n notes, "Data preprocessing".
  """
  mean, cov = _mean_cov(x.reshape(-1, x.shape[-1]))
  std = np.sqrt(np.diag(cov))
  return _make("standardize", x, mean, 1 / np.where(std > 0, std, 1.0))


@register
def pca(x: np.ndarray, k: int | None = None, whiten: bool = False,
        epsilon: float = 1e-5) -> Transform:
  """Projects centered, flattened examples on the top ``k`` principal components: ``(N, k)`` output.

  Output features are decorrelated with variances equal to the covariance's eigenvalues in
  descending order, or ``eigval / (eigval + epsilon)`` (about 1) with ``whiten=True``. The
  covariance is divided by N.

  References: CS231n notes, "Data preprocessing: PCA and whitening".
  """
  flat = x.reshape(len(x), -1)
  dim = flat.shape[1]
  k = dim if k is None else k
  if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= dim):
    raise ValueError(f"pca needs an integer 1 <= k <= {dim} (the example size), got k={k!r}.")
  mean, cov = _mean_cov(flat)
  eigvals, eigvecs = _eigh_descending(cov)
  matrix = eigvecs[:, :k] / np.sqrt(eigvals[:k] + epsilon) if whiten else eigvecs[:, :k]
  return _make(f"pca(k={k}, whiten={whiten}, epsilon={epsilon!r})", x, mean.reshape(x.shape[1:]),
               1.0, matrix, output_shape=(k,))


@register
def zca(x: np.ndarray, epsilon: float = 1e-2) -> Transform:
  """ZCA whitening ``W = U diag(1 / sqrt(eigval + epsilon)) U^T``; keeps the input shape.

  ``W`` is symmetric, and among whitening matrices ``Q W`` (``Q`` orthogonal) its output stays
  closest to the centered input. ``epsilon`` is in the data's variance units: it damps the
  low-variance (noisy) directions, so pick it for the data's scale (e.g. after ``scale``).

  References: Bell & Sejnowski 1997, "The 'independent components' of natural scenes are edge
  filters"; Krizhevsky 2009, "Learning multiple layers of features from tiny images", App. A.
  """
  flat = x.reshape(len(x), -1)
  mean, cov = _mean_cov(flat)
  eigvals, eigvecs = _eigh_descending(cov)
  matrix = (eigvecs / np.sqrt(eigvals + epsilon)) @ eigvecs.T
  matrix = (matrix + matrix.T) / 2  # exactly symmetric
  return _make(f"zca(epsilon={epsilon!r})", x, mean.reshape(x.shape[1:]), 1.0, matrix)
