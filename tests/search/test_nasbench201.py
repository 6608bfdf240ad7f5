"""The NAS-Bench-201 cell space: strings, cell semantics, parameter and MAC counts by formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import count_params, create_model, flops, model_info
from jaxcnn.search import nasbench201 as nb
from search_checks import fill

EXAMPLE = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
           "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
TINY = {"num_cells": 1, "channels": 8}


def formula(ops, num_cells=5, channels=16, num_classes=10, size=32, in_ch=3):
  """Parameters and MACs of the network, by hand from Dong & Yang 2020, Figure 1."""
  k2 = sum({"nor_conv_1x1": 1, "nor_conv_3x3": 9}.get(op, 0) for op in ops)
  nconv = sum(op in nb.KERNEL for op in ops)
  params = 9 * in_ch * channels + 2 * channels
  macs = size * size * 9 * in_ch * channels
  for s in range(3):
    c, hw = channels * 2 ** s, (size // 2 ** s) ** 2
    if s:
      cin = c // 2
      params += 9 * cin * c + 9 * c * c + cin * c + 4 * c
      macs += (9 * cin * c + 9 * c * c + cin * c) * hw
    params += num_cells * (k2 * c * c + 2 * c * nconv)
    macs += num_cells * k2 * c * c * hw
  c = 4 * channels
  params += 2 * c + c * num_classes + num_classes
  macs += c * num_classes
  return params, macs


def test_space_and_strings():
  assert nb.SPACE.size == 15_625 and nb.SPACE.names == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1",
                                                        "3<-2")
  ops = nb.from_string(EXAMPLE)
  assert ops == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3",
                 "skip_connect")
  assert nb.to_string(ops) == EXAMPLE
  assert list(nb.encode(EXAMPLE)) == [3, 3, 4, 1, 3, 1]
  assert nb.arch_ops(nb.encode(EXAMPLE)) == ops == nb.arch_ops(list(ops))
  for arch in np.asarray(nb.SPACE.sample(jax.random.PRNGKey(0), 20)):
    assert (nb.encode(nb.to_string(nb.arch_ops(arch))) == arch).all()


@pytest.mark.parametrize("bad, match", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "3 nodes"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "Unknown NAS-Bench-201 op 'conv'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "expected 'op~0'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "Node 2"),
])
def test_bad_strings(bad, match):
  with pytest.raises(ValueError, match=match):
    nb.from_string(bad)


def test_registered_and_counts_match_the_formula():
  assert model_info("nasbench201").input_size == (32, 32, 3)
  full = create_model("nasbench201")  # the all-3x3 cell, N=5, C=16: the largest network
  assert count_params(full, (1, 32, 32, 3)) == formula(["nor_conv_3x3"] * 6)[0] == 1_531_546
  assert flops(full, (1, 32, 32, 3)) == formula(["nor_conv_3x3"] * 6)[1] == 220_119_680
  for arch in np.asarray(nb.SPACE.sample(jax.random.PRNGKey(1), 3)):
    ops = nb.arch_ops(arch)
    model = nb.build(arch, **TINY, num_classes=7)
    p, m = formula(ops, 1, 8, 7, size=16)
    assert count_params(model, (1, 16, 16, 3)) == p and flops(model, (1, 16, 16, 3)) == m, ops


def test_builds_valid_models_under_jit():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
  for arch in [np.asarray([0, 2, 4, 1, 3, 2], np.int32)]:  # all five ops
    model = nb.build(arch, **TINY, num_classes=5)
    # Variables of init's shapes filled by NumPy: a jitted init compiles for longer than the
    # train-mode forward (the values of an init are not what this checks).
    shapes = jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.PRNGKey(0))
    v = jax.tree.map(jnp.asarray, fill(shapes))
    out, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    assert out.shape == (2, 5) and bool(jnp.isfinite(out).all())
    assert jax.tree.structure(upd["batch_stats"]) == jax.tree.structure(v["batch_stats"])


def avg_pool_reference(x):
  """NumPy 3x3 mean over the in-bounds neighbours (count_include_pad=False)."""
  n, h, w, c = x.shape
  out = np.zeros_like(x)
  for i in range(h):
    for j in range(w):
      out[:, i, j] = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean(axis=(1, 2))
  return out


@pytest.mark.parametrize("ops", [
    ("skip_connect",) * 6,
    ("avg_pool_3x3", "skip_connect", "none", "none", "avg_pool_3x3", "skip_connect"),
    ("none",) * 6,
])
def test_cell_dag_against_numpy(ops):
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (2, 5, 6, 3)))
  cell = nb.Cell(3, ops)
  out = cell.apply({}, jnp.asarray(x), train=False)
  apply = {"none": np.zeros_like, "skip_connect": lambda h: h, "avg_pool_3x3": avg_pool_reference}
  nodes, k = [x], 0
  for j in range(1, 4):
    nodes.append(sum(apply[ops[k + i]](nodes[i]) for i in range(j)))
    k += j
  np.testing.assert_allclose(out, nodes[3], rtol=1e-6, atol=1e-6)


def test_bad_input():
  with pytest.raises(ValueError, match="6 edges"):
    nb.build(["none"] * 5)
  with pytest.raises(ValueError, match="NHWC"):
    nb.build(EXAMPLE, **TINY).init(jax.random.PRNGKey(0), jnp.ones((8, 8, 3)), train=False)


def test_small_subspace():
  """SMALL: 4 free edges x 4 ops; the fixed edges are none; mask and to_full agree."""
  sub = nb.SMALL
  assert sub.space.size == 256 and len(set(map(tuple, sub.all()))) == 256
  full = sub.to_full(sub.all())
  assert full.shape == (256, 6) and (full[:, [1, 4]] == nb.OPS.index("none")).all()
  assert nb.to_string(nb.arch_ops(sub.to_full([3, 3, 3, 1]))) == (
      "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
  assert all(sub.mask[e, a] for row in full for e, a in enumerate(row))  # every cell allowed
  assert sub.mask.sum() == 4 * 4 + 2  # and nothing else
  with pytest.raises(ValueError, match="Unknown edge"):
    nb.Subspace({"4<-0": ("none",)})
  with pytest.raises(ValueError, match="out of range"):
    sub.to_full([4, 0, 0, 0])
