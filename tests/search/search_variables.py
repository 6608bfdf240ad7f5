"""Random variables for the search tests, drawn by NumPy from abstract shapes, so that no init
program has to compile (a supernet's init is a large one)."""

import jax
import numpy as np


def fill(shapes, seed=0, dtype=np.float32):
  """Variables of ``shapes`` (e.g. from ``jax.eval_shape`` of an init): kernels
  ``N(0, 1 / fan_in)``, norm scales and running variances in [1, 1.3), the rest in [0, 0.3)."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = jax.tree_util.keystr(path[-1:])
    if "kernel" in name:
      return rng.normal(0, 1 / np.sqrt(np.prod(x.shape[:-1])), x.shape).astype(dtype)
    base = 1.0 if ("scale" in name or "var" in name) else 0.0
    return (base + 0.3 * rng.uniform(size=x.shape)).astype(dtype)

  return jax.tree_util.tree_map_with_path(leaf, shapes)
