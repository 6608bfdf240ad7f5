"""Synthetic torch-layout weights, the same from NumPy alone as in the fixture script.

``scripts/make_torch_fixtures.py`` loads these weights into torchvision models and records their
logits; the fast tests rebuild the very same arrays here from the recorded key names and shapes
(no torch, nothing but the logits stored), convert them with :mod:`jaxcnn.models.pretrained`
and compare. Each tensor depends only on the seed and its key, so the order of keys is free.
BatchNorm statistics are non-trivial (means ~ N(0, 0.2), variances in [0.5, 2]), so a converter
that swapped or dropped them would be caught.
"""

from __future__ import annotations

import math
import zlib
from typing import Iterable, Sequence

import numpy as np


def synthetic_tensor(key: str, shape: Sequence[int], seed: int) -> np.ndarray:
  """The float32 tensor for one state-dict entry (see the module docstring for the rules)."""
  rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
  shape = tuple(int(d) for d in shape)
  name = key.rsplit(".", 1)[-1]
  if name == "running_var":
    x = rng.uniform(0.5, 2.0, shape)
  elif name == "running_mean":
    x = rng.normal(0.0, 0.2, shape)
  elif name == "bias":
    x = rng.normal(0.0, 0.1, shape)
  elif len(shape) == 1:  # a normalization scale
    x = rng.uniform(0.5, 1.5, shape)
  else:  # He-normal in torch's (out, in, ...) layout: activations stay O(1) without BN
    x = rng.normal(0.0, math.sqrt(2.0 / max(1, math.prod(shape[1:]))), shape)
  return x.astype(np.float32)


def synthetic_state_dict(entries: Iterable[tuple[str, Sequence[int]]],
                         seed: int) -> dict[str, np.ndarray]:
  """``{key: synthetic_tensor(key, shape, seed)}``; ``num_batches_tracked`` entries are skipped."""
  return {k: synthetic_tensor(k, s, seed) for k, s in entries
          if not k.endswith("num_batches_tracked")}


def synthetic_input(shape: Sequence[int], seed: int) -> np.ndarray:
  """A float32 NCHW batch ~ N(0, 1)."""
  return np.random.default_rng([seed, 1]).normal(size=tuple(shape)).astype(np.float32)
