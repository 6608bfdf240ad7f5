"""DARTS over the NASNet cell space: deriving the cells, the relaxed network against the derived
child, a short search, the exact second-order gradient."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.data import sources
from jaxcnn.models.nasnet import Genotype
from jaxcnn.search import darts, nasnet as ns
from search_checks import darts_gradient_terms, fill

# A cheap op set for the search (the fewest convolutions: a gradient program compiles slowly).
CHEAP = ("none", "max_pool_3x3")
TINY = dict(num_cells=1, penultimate_filters=48, stem_features=8)  # 2, 4, 8 filters


def shapes_of(net, x):
  alpha = {c: jnp.zeros((20, len(net.op_names)), x.dtype) for c in ns.CELLS}
  return jax.eval_shape(lambda k: net.init(k, x, alpha, train=False), jax.random.PRNGKey(0))


def softmax(a):
  e = np.exp(a - a.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def reference_genotype(alpha, op_names):
  """DARTS's rule written out separately: an input is kept when fewer than two inputs of its
  node beat it (larger strength, or equal and earlier); kept inputs by rank."""
  w = softmax(np.asarray(alpha, np.float64))
  real = [k for k, op in enumerate(op_names) if op != "none"]
  blocks, row = [], 0
  for b in range(5):
    strength = [max(w[row + i, k] for k in real) for i in range(2 + b)]
    rank = [sum(s_j > s_i or (s_j == s_i and j < i) for j, s_j in enumerate(strength))
            for i, s_i in enumerate(strength)]
    kept = sorted((r, i) for i, r in enumerate(rank) if r < 2)
    blocks.append(tuple((op_names[max(real, key=lambda k: (w[row + i, k], -k))], i)
                        for _, i in kept))
    row += 2 + b
  return Genotype(tuple(blocks), (2, 3, 4, 5, 6))


def test_derive_keeps_the_two_strongest_non_zero_edges_per_node():
  # Ops none, max_pool_3x3, sep_conv_3x3; rows are the edges node by node (inputs 0 .. b + 1).
  op_names = ("none", "max_pool_3x3", "sep_conv_3x3")
  a = np.zeros((20, 3))
  a[0] = [0, 2, 0]  # node 0 <- h: pool, weight e^2 / (e^2 + 2) = 0.79
  a[1] = [9, 0, 3]  # node 0 <- p: none dominates; sep's weight is 0.0025, the weakest here
  a[2], a[3], a[4] = [0, 0, 1], [10, 8, 0], [0, 0.9, 0]  # node 1: h (sep 0.58), 2 (pool 0.55)
  # a[3] has the largest non-zero logit of node 1, but its softmax weight is only 0.12.
  a[5:9] = [0, 0, 0]  # node 2: all four tie at 1/3: the first two states (h, p), the first op
  a[9:14] = [[0, 0, 0], [0, 0, 0], [0, 0, 5], [0, 6, 0], [0, 0, 0]]  # node 3: states 3, 2
  a[14:20] = -2.0  # node 4: ties again, h and p, pool
  a[19] = [-50, -40, 30]  # ... except block 4 <- state 5: sep, the strongest of all
  expected = Genotype(((("max_pool_3x3", 0), ("sep_conv_3x3", 1)),
                       (("sep_conv_3x3", 0), ("max_pool_3x3", 2)),
                       (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
                       (("max_pool_3x3", 3), ("sep_conv_3x3", 2)),
                       (("sep_conv_3x3", 5), ("max_pool_3x3", 0))), (2, 3, 4, 5, 6))
  assert reference_genotype(a, op_names) == expected
  alpha = {"normal": a, "reduction": a[::-1].copy()}
  arch = darts.derive_nasnet(alpha, op_names)
  assert arch.dtype == np.int32 and arch.shape == (50,)
  normal, reduction = ns.decode(arch)
  assert normal == expected
  assert reduction == reference_genotype(a[::-1], op_names)
  rng = np.random.default_rng(0)
  for _ in range(20):  # random logits, rounded so that ties occur
    alpha = {c: np.round(rng.normal(size=(20, 4)), 1) for c in ns.CELLS}
    normal, reduction = ns.decode(darts.derive_nasnet(alpha, ("sep_conv_3x3", "none", "identity",
                                                              "avg_pool_3x3")))
    names = ("sep_conv_3x3", "none", "identity", "avg_pool_3x3")
    assert normal == reference_genotype(alpha["normal"], names)
    assert reduction == reference_genotype(alpha["reduction"], names)


def planted(genotypes, op_names, scale=1e4):
  """Logits whose softmax is one-hot: the genotype's op on its edges, ``none`` elsewhere."""
  alpha = {}
  for cell, genotype in zip(ns.CELLS, genotypes):
    a = np.zeros((20, len(op_names)))
    a[:, op_names.index("none")] = scale
    for b, pair in enumerate(genotype.blocks):
      for op, i in pair:
        row = darts.NASNET_EDGES.index((b, i))
        a[row] = 0.0
        a[row, op_names.index(op)] = scale
    alpha[cell] = a
  return alpha


def random_genotype(rng, op_names):
  """Five blocks, each on two distinct states in increasing order, random non-zero ops."""
  real = [op for op in op_names if op != "none"]
  blocks = []
  for b in range(5):
    inputs = sorted(rng.choice(2 + b, 2, replace=False))
    blocks.append(tuple((real[rng.integers(len(real))], int(i)) for i in inputs))
  return Genotype(tuple(blocks), (2, 3, 4, 5, 6))


@pytest.mark.parametrize("op_names", [
    ("none", "identity", "max_pool_3x3", "conv_1x1"),
    pytest.param(darts.NASNET_OPS, marks=pytest.mark.slow),  # DARTS's ops: ~1 min of compiling
])
def test_one_hot_alpha_computes_the_derived_child_with_the_same_weights(op_names):
  # The relaxed network (darts.NASNetDARTSCell) and the child (models.nasnet.Cell of the derived
  # genotype, built by search.nasnet.build) are separate code; with alpha one-hot on the child's
  # edges and `none` on all others they compute the same function of the same weights.
  rng = np.random.default_rng(0)
  net = darts.NASNetDARTS(**TINY, op_names=op_names)
  x = jnp.asarray(rng.uniform(size=(4, 8, 8, 1)), jnp.float32)
  variables = fill(shapes_of(net, x), seed=1)
  genotypes = (random_genotype(rng, op_names), random_genotype(rng, op_names))
  alpha = planted(genotypes, op_names)
  arch = darts.derive_nasnet(alpha, op_names)
  np.testing.assert_array_equal(arch, ns.encode(genotypes))  # the planted cells come back
  child = darts.nasnet_child(net, arch)
  child_vars = darts.nasnet_child_variables(variables, arch)
  expected = jax.eval_shape(lambda k: child.init(k, x, train=False), jax.random.PRNGKey(0))
  assert jax.tree.structure(child_vars) == jax.tree.structure(expected)
  assert jax.tree.map(np.shape, child_vars) == jax.tree.map(lambda a: a.shape, expected)
  alpha = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), alpha)
  # Compiled (3.7 s of CPU, measured) rather than eager (4.9 s: one dispatch per op); the small
  # child runs eagerly (0.4 s, against 1.1 s compiled).
  relaxed = jax.jit(lambda v, x, a: net.apply(v, x, a, train=False))(variables, x, alpha)
  logits = child.apply(child_vars, x, train=False)
  assert logits.shape == (4, 10) and np.abs(np.asarray(logits)).max() > 1e-2
  np.testing.assert_allclose(relaxed, logits, rtol=1e-5, atol=1e-6)


@functools.lru_cache(maxsize=None)
def digits():
  data = sources.subsets("digits", {"train": 64, "val": 32}, seed=0)
  return sources.InMemory(data, eval_batch_size=32)


@pytest.mark.slow  # ~30 s of CPU: the step's gradient programs over 100 mixed edges compile
def test_short_search_is_deterministic_moves_alpha_and_derives_a_child_that_runs():
  source = digits()
  net = darts.NASNetDARTS(**TINY, op_names=CHEAP)
  variables = fill(shapes_of(net, jnp.zeros((1, 8, 8, 1))))
  w_tx, alpha_tx = optax.sgd(0.05, momentum=0.9), optax.adam(0.05, b1=0.5, b2=0.999)
  run = functools.partial(darts.search, net, source, num_steps=3, batch_size=16, w_tx=w_tx,
                          alpha_tx=alpha_tx, variables=variables, progress=False)
  result = run(key=jax.random.PRNGKey(0))
  again = run(key=jax.random.PRNGKey(0))
  other = run(key=jax.random.PRNGKey(1))
  for cell in ns.CELLS:
    np.testing.assert_array_equal(result.alpha_history[cell], again.alpha_history[cell])
    assert not np.array_equal(result.alpha_history[cell], other.alpha_history[cell])
    assert result.alpha_history[cell].shape == (4, 20, 2)
    first = np.abs(result.alpha_history[cell][1] - result.alpha_history[cell][0])
    assert first.min() > 0.04  # Adam's first step moves every logit by its learning rate, 0.05
  np.testing.assert_array_equal(result.train_loss, again.train_loss)
  assert np.isfinite(result.train_loss).all() and np.isfinite(result.val_loss).all()
  np.testing.assert_array_equal(result.arch, darts.derive_nasnet(result.alpha, CHEAP))
  child = darts.nasnet_child(net, result.arch)
  x = jnp.asarray(source.sample(16)) / 255.0
  logits = jax.jit(lambda v, x: child.apply(v, x, train=False))(
      darts.nasnet_child_variables(result.variables, result.arch), x)
  assert logits.shape == (16, 10) and np.isfinite(np.asarray(logits)).all()


def test_bad_ops_and_alpha_shapes_raise():
  with pytest.raises(ValueError, match="Unknown op 'dil_conv_5x5'"):
    darts.NASNetDARTS(op_names=("none", "dil_conv_5x5"))
  with pytest.raises(ValueError, match="an op besides 'none'"):
    darts.NASNetDARTS(op_names=("none",))
  with pytest.raises(ValueError, match="distinct"):
    darts.derive_nasnet({c: np.zeros((20, 2)) for c in ns.CELLS}, ("identity", "identity"))
  net = darts.NASNetDARTS(**TINY, op_names=CHEAP)
  x = jnp.zeros((1, 8, 8, 1))
  for bad in ({"normal": jnp.zeros((20, 2))}, {c: jnp.zeros((14, 2)) for c in ns.CELLS},
              jnp.zeros((20, 2))):
    with pytest.raises(ValueError, match=r"alpha must be \{'normal', 'reduction'\} of float "
                                         r"\[20, 2\]"):
      jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x, bad, train=False))
    with pytest.raises(ValueError, match=r"alpha must be"):
      darts.derive_nasnet(bad, CHEAP)
  with pytest.raises(ValueError, match="multiple of 24"):
    jax.eval_shape(lambda: darts.NASNetDARTS(penultimate_filters=40, op_names=CHEAP).init(
        jax.random.PRNGKey(0), x, darts.init_nasnet_alpha(jax.random.PRNGKey(0), CHEAP),
        train=False))


@pytest.mark.slow  # grad-of-grad programs over the network compile slowly
def test_second_order_gradient_is_the_unrolled_gradient_in_float64():
  xi, eps = 0.05, 1e-5
  with jax.enable_x64():
    net = darts.NASNetDARTS(**TINY, num_classes=3, op_names=CHEAP)
    rng = np.random.default_rng(1)
    batches = [{"image": jnp.asarray(rng.normal(size=(4, 8, 8, 2))),
                "label": jnp.asarray(rng.integers(0, 3, 4))} for _ in range(2)]
    variables = jax.tree.map(jnp.asarray, fill(shapes_of(net, batches[0]["image"]), 1,
                                               np.float64))
    alpha = {c: jnp.asarray(rng.normal(size=(20, 2))) for c in ns.CELLS}

    t = darts_gradient_terms(net, variables, alpha, batches, xi, eps)
  second, reference, first, hv, fd_hv = (
      t[k] for k in ("second", "reference", "first", "hv", "fd_hv"))
  for cell in ns.CELLS:
    assert second[cell].dtype == np.float64
    np.testing.assert_allclose(second[cell], reference[cell], rtol=1e-9, atol=1e-12)
    assert np.abs(second[cell] - first[cell]).max() > 1e-5  # the second-order term matters
    # The central difference's own error (curvature of a 2-filter network with batch-statistics
    # BatchNorm) is up to 6e-6 relative here; the exact product is the one above.
    np.testing.assert_allclose(hv[cell], fd_hv[cell], rtol=1e-4, atol=1e-9)
    assert np.abs(hv[cell]).max() > 1e-3
