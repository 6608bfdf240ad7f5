"""Helpers of the search tests: random variables drawn by NumPy from abstract shapes (so that no
init program has to compile: a supernet's init is a large one), and DARTS's architecture-gradient
terms with their independent references."""

import jax
import numpy as np

from jaxcnn.search import darts


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


def darts_gradient_terms(net, variables, alpha, batches, xi, eps, direction=None):
  """For a DARTS network on two batches (train, val): the second-order alpha gradient
  (``darts.alpha_grad``), its reference ``jax.grad`` of the one-step unrolled objective, the
  first-order gradient, the mixed Hessian-vector product ``darts.mixed_hvp`` and its central
  finite difference; with a ``direction`` (like ``alpha``), also the central difference of the
  validation loss along it. One jitted program; a dict of NumPy pytrees."""

  def loss(batch):
    return lambda p, a: darts.batch_loss(net, {"params": p, "batch_stats":
                                               variables["batch_stats"]}, a, batch,
                                         lambda x: x)[0]

  train, val = loss(batches[0]), loss(batches[1])

  @jax.jit
  def terms(params, alpha):
    _, second = darts.alpha_grad(train, val, params, alpha, xi)
    unrolled = lambda a: val(jax.tree.map(lambda w, g: w - xi * g, params,
                                          jax.grad(train)(params, a)), a)
    _, first = darts.alpha_grad(train, val, params, alpha, 0.0)
    v = jax.grad(val)(params, alpha)
    hv = darts.mixed_hvp(train, params, alpha, v)
    grad_a = lambda p: jax.grad(train, argnums=1)(p, alpha)
    shift = lambda s: jax.tree.map(lambda w, t: w + s * eps * t, params, v)
    fd_hv = jax.tree.map(lambda a, b: (a - b) / (2 * eps), grad_a(shift(1)), grad_a(shift(-1)))
    out = {"second": second, "reference": jax.grad(unrolled)(alpha), "first": first, "hv": hv,
           "fd_hv": fd_hv}
    if direction is not None:
      along = lambda s: jax.tree.map(lambda a, d: a + s * eps * d, alpha, direction)
      out["fd_first"] = (val(params, along(1)) - val(params, along(-1))) / (2 * eps)
    return out

  return jax.tree.map(np.asarray, terms(variables["params"], alpha))
