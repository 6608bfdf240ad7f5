"""The shared-weight supernet of the NAS-Bench-201 space: the architecture is a traced input.

Every edge of every cell holds the weights of all its ops and picks one with ``flax.linen.switch``
on the edge's entry of an int32 architecture vector, so the whole space is one compiled program
and a child is evaluated (or trained) without recompiling. The supernet uses the module names of
:class:`~jaxcnn.search.nasbench201.NASBench201Net`, so a child's variables are a subtree of the
supernet's (:func:`child_variables`), and the child's path through the supernet computes what
the standalone child computes with those weights.

Many children at once: ``jax.vmap`` over architectures turns each switch into a select, so every
branch is computed for every child (on one CPU core that costs the sum of the branches); a
``lax.map`` runs the children one after the other, each computing its own branch only.
:func:`child_logits` offers both (``mode="vmap"``, ``"map"``) and ``"auto"`` picks per backend
(:data:`AUTO_MODE`, from the measurements in ``docs/search.md``).

Trained as a one-shot model (uniform single-path sampling), ``SuperNet(...)(x, train=True)``
without an architecture draws one from the ``"dropout"`` rng at every step, so the population
trainer trains it unchanged: ``Population(SuperNet(...), tx).train(...)``.

The evaluators (:func:`child_logits`, :class:`~jaxcnn.search.evaluators.SharedWeights`,
:class:`~jaxcnn.search.enas.SharedTraining`) take any supernet called as
``supernet(x, arch, train=...)`` that declares the space of its architectures as ``space``
(:func:`arch_space`): this one ``nasbench201.SPACE``, :class:`jaxcnn.search.nasnet.SuperNet`
``nasnet.SPACE`` (with its ops).

References:
  Pham et al. 2018, "Efficient Neural Architecture Search via Parameter Sharing" (ENAS).
  Bender et al. 2018, "Understanding and Simplifying One-Shot Architecture Search".
  Guo et al. 2020, "Single Path One-Shot Neural Architecture Search with Uniform Sampling".
  Dong & Yang 2020, "NAS-Bench-201", Section 5 (weight-sharing searches on this space).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.nn import conv as conv_lib
from jaxcnn.nn.layers import Ops, OpsModule
from jaxcnn.search import nasbench201 as nb
from jaxcnn.search.space import Space

# Best way to evaluate many children per backend (measured; see docs/search.md).
AUTO_MODE = {"cpu": "map", "gpu": "vmap", "tpu": "vmap"}
MODES = ("vmap", "map")


def _branch(module: nn.Module, x: jax.Array, *, op: str, train: bool) -> jax.Array:
  return nb.apply_op(module, op, x, train=train)


class MixedEdge(OpsModule):
  """A cell edge holding every op's weights; ``index`` (traced int32) selects the op."""

  features: int

  def setup(self):
    for op, k in nb.KERNEL.items():
      setattr(self, op, nb.ReLUConvBN(self.features, k, ops=self.get_ops()))

  def __call__(self, x: jax.Array, index: jax.Array, *, train: bool) -> jax.Array:
    branches = [functools.partial(_branch, op=op, train=train) for op in nb.OPS]
    if self.is_mutable_collection("params"):  # create every op's weights at init
      for op in nb.KERNEL:
        getattr(self, op)(x, train=train)
    return nn.switch(index, branches, self, x)


class MixedCell(OpsModule):
  """A cell of :class:`MixedEdge` s; ``arch`` is int32 [6], one op index per edge."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, arch: jax.Array, *, train: bool) -> jax.Array:
    ops = self.get_ops()
    edges = [MixedEdge(self.features, ops=ops, name=f"edge_{j}_{i}") for j, i in nb.EDGES]
    return nb.cell(lambda k, h: edges[k](h, arch[k], train=train), x)


class SuperNet(nb.CellNetwork):
  """NAS-Bench-201's network with every cell a :class:`MixedCell` over one shared ``arch``.

  ``__call__(x, arch=None, *, train)``: ``arch`` int32 [6] (may be traced). Without one, a
  training call draws a uniform architecture from the ``"dropout"`` rng (one-shot training by
  uniform single-path sampling, Guo et al. 2020); an evaluation call needs one.
  """

  space = nb.SPACE  # the architectures it takes (a class attribute, not a field)

  @nn.compact
  def __call__(self, x: jax.Array, arch: jax.Array | None = None, *, train: bool) -> jax.Array:
    self._check(x)
    if arch is None:
      if self.is_initializing():  # every op's weights are created whatever the index
        arch = jnp.zeros((len(nb.EDGES),), jnp.int32)
      elif train:
        arch = jax.random.randint(self.make_rng("dropout"), (len(nb.EDGES),), 0, len(nb.OPS))
      else:
        raise ValueError("SuperNet needs an architecture (int32 [6]) for an evaluation call; "
                         "only a training call draws one from the 'dropout' rng.")
    arch = jnp.asarray(arch, jnp.int32)
    if arch.shape != (len(nb.EDGES),):
      raise ValueError(f"arch must be int32 [{len(nb.EDGES)}] (one op index per edge), got shape "
                       f"{arch.shape}.")

    def cell_fn(ops: Ops, features: int, name: str, h: jax.Array) -> jax.Array:
      return MixedCell(features, ops=ops, name=name)(h, arch, train=train)

    return self._forward(x, cell_fn, train=train)


def child_config(supernet: SuperNet) -> dict[str, Any]:
  """The ``create_model("nasbench201", ...)`` overrides a child of ``supernet`` needs."""
  fields = ("num_cells", "channels", "num_classes", "act", "norm", "conv", "kernel_init", "dtype")
  return {f: getattr(supernet, f) for f in fields}


def child(supernet: SuperNet, arch: Any) -> nn.Module:
  """The standalone :class:`~jaxcnn.search.nasbench201.NASBench201Net` of ``arch``."""
  return nb.build(arch, **child_config(supernet))


def child_variables(variables: Any, arch: Any) -> dict[str, Any]:
  """The supernet variables a standalone child uses: every edge keeps only its op's subtree."""
  ops = nb.arch_ops(arch)
  edge_op = {f"edge_{j}_{i}": op for (j, i), op in zip(nb.EDGES, ops)}

  def prune(tree: Any, in_cell: bool) -> Any:
    out = {}
    for name, sub in tree.items():
      if in_cell and name in edge_op:
        op = edge_op[name]
        if op in nb.KERNEL and op in sub:
          out[name] = {op: sub[op]}
      elif isinstance(sub, dict):
        out[name] = prune(sub, in_cell or name.startswith("cell_"))
      else:
        out[name] = sub
    return out

  return {col: prune(dict(tree), False) for col, tree in dict(variables).items()}


def arch_space(supernet: Any) -> Space:
  """The space of a supernet's architectures: its ``space`` attribute (``nasbench201.SPACE`` for
  a module without one, such as a hand-made miniature of :class:`SuperNet`)."""
  return getattr(supernet, "space", nb.SPACE)


def resolve_mode(mode: str) -> str:
  """``"vmap"`` or ``"map"``; ``"auto"`` is :data:`AUTO_MODE` for the default backend."""
  if mode == "auto":
    return AUTO_MODE.get(jax.default_backend(), "vmap")
  if mode not in MODES:
    raise ValueError(f"Unknown mode {mode!r}; use 'auto', 'vmap' or 'map'.")
  return mode


@functools.lru_cache(maxsize=16)
def _compiled_logits(supernet: Any, mode: str):
  def one(variables, x, arch):
    return supernet.apply(variables, x, arch, train=False)

  if mode == "vmap":
    return conv_lib.jit(jax.vmap(one, in_axes=(None, None, 0)))
  return conv_lib.jit(lambda v, x, archs: jax.lax.map(lambda a: one(v, x, a), archs))


def child_logits(supernet: Any, variables: Any, x: jax.Array, archs: Any,
                 mode: str = "auto") -> jax.Array:
  """Eval-mode logits ``[n, batch, classes]`` of ``n`` children (int [n, L]) on one batch.

  ``archs`` lie in the supernet's :func:`arch_space` (int [n, 6] for :class:`SuperNet`). One
  compiled program per (supernet, mode, shapes); ``mode``: ``"vmap"`` (every branch computed,
  children in parallel), ``"map"`` (children in sequence, one branch each) or ``"auto"``.
  """
  space = arch_space(supernet)
  archs = jnp.asarray(space.validate(archs))
  if archs.ndim != 2:
    raise ValueError(f"archs must be int [n, {len(space)}], got shape {archs.shape}.")
  return _compiled_logits(supernet, resolve_mode(mode))(variables, x, archs)


def sample_archs(key: jax.Array, n: int) -> np.ndarray:
  """``n`` uniform architectures of the space, int32 [n, 6]."""
  return np.asarray(nb.SPACE.sample(key, n))
